"""Event-stream pulls (siemconn.service.pulling) against the fake tenant over real HTTP, into the in-memory
page store (siemconn.service.mempagestore, held to the queue's contract by test_pagestore.py): a page is
committed with its checkpoint before the next is asked for, a pull stops between pages when the store
pauses fetching or the service halts, and a commit the store refuses ends the pull quietly without moving
the checkpoint. The snapshot streams' pulls are in test_pulling.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from support.e2e import CLIENT_ID, SECRET, connector_config, serve_fake

from siemconn.config import load_settings
from siemconn.devtools.fake_rux import FakeRux
from siemconn.errors import QueueError, QueueNoRoomError
from siemconn.ops.metrics import NO_METRICS
from siemconn.rux.client import RuxClient
from siemconn.rux.streams import StreamSpec, stream_specs
from siemconn.service.mempagestore import MemPageStore
from siemconn.service.pulling import Pull, StreamRunner, pull_events, pull_stream

PAGE = 5


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_detections=12, seed_entity=6)


@asynccontextmanager
async def _pull(
    tmp_path: Path, fake: FakeRux, store: MemPageStore, halted: Callable[[], bool] = lambda: False
) -> AsyncIterator[Pull]:
    servers = [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(connector_config(tmp_path, servers, page_size=PAGE)))
    s = load_settings(p, {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET})
    async with RuxClient(s.credentials, s.configuration) as client:
        yield Pull(store, client, NO_METRICS, s.configuration.api_version, asyncio.Lock(), halted)


def _ids(store: MemPageStore, key: str | None = None) -> list[Any]:
    return [e["id"] for _, e in store.events(key)]


def _asked_from(fake: FakeRux) -> list[str | None]:
    """The `from` of each detections request (a first run asks from 0 within its lookback)."""
    return [r.params.get("from") for r in fake.requests if r.path.endswith("/events/detections")]


async def test_each_page_is_committed_with_its_checkpoint(tmp_path: Path, fake: FakeRux) -> None:
    store = MemPageStore()
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_events(StreamSpec("detections"), pull) == 12
        assert [len(p.payloads) for p in store.pages] == [5, 5, 2]
        assert [p.checkpoint for p in store.pages] == [6, 11, 13]  # the page's largest id + 1
        assert _ids(store) == list(range(1, 13)) and await store.checkpoint("detections") == 13
        assert "detections" in store.polls
        # the next pull starts at the stored checkpoint and finds nothing new
        assert await pull_events(StreamSpec("detections"), pull) == 0
        assert _asked_from(fake)[-1] == "13" and len(store.pages) == 3


async def test_a_refetched_event_is_counted_as_a_duplicate(tmp_path: Path, fake: FakeRux) -> None:
    """A server whose next_checkpoint is the last id repeats that event on the next run (within a run the
    client drops it): the store counts it as a duplicate and queues nothing."""
    fake.configure(overlap=True)
    store = MemPageStore()
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_events(StreamSpec("detections"), pull) == 12
        assert await store.checkpoint("detections") == 12
        assert await pull_events(StreamSpec("detections"), pull) == 0
    assert _ids(store) == list(range(1, 13)) and store.duplicates == {"detections": 1}


async def test_each_entity_type_has_its_own_checkpoint(tmp_path: Path, fake: FakeRux) -> None:
    store = MemPageStore()
    specs = stream_specs("entity_scoring")
    async with _pull(tmp_path, fake, store) as pull:
        await pull_stream(StreamRunner("entity_scoring", specs), pull)
    keys = [s.key for s in specs]
    assert keys == ["entity_scoring.account", "entity_scoring.host"]
    assert all(store.events(k) for k in keys)
    assert len(store.events()) == sum(len(store.events(k)) for k in keys)
    for k in keys:
        assert await store.checkpoint(k) == max(_ids(store, k)) + 1


async def test_a_pull_stops_between_pages_while_the_store_pauses(tmp_path: Path, fake: FakeRux) -> None:
    store = MemPageStore(max_events=PAGE)  # full after one page
    runner = StreamRunner("detections", stream_specs("detections"))
    async with _pull(tmp_path, fake, store) as pull:
        await pull_stream(runner, pull)
        assert _ids(store) == [1, 2, 3, 4, 5] and await store.checkpoint("detections") == 6
        with capture_logs() as logs:
            await pull_stream(runner, pull)  # still full: nothing is fetched
        assert [e["event"] for e in logs] == ["pull_paused"] and len(_asked_from(fake)) == 1
        delivered = store.drain()
        await pull_stream(runner, pull)  # room again: resumes from the checkpoint
        delivered += store.drain()
        await pull_stream(runner, pull)
        delivered += store.drain()
    assert [i for p in delivered for i in p.ids] == list(range(1, 13))
    assert _asked_from(fake)[:3] == ["0", "6", "11"]


async def test_a_halt_stops_the_pull_after_the_page_in_hand(tmp_path: Path, fake: FakeRux) -> None:
    store = MemPageStore()
    async with _pull(tmp_path, fake, store, halted=lambda: bool(store.pages)) as pull:
        assert await pull_events(StreamSpec("detections"), pull) == PAGE
    assert await store.checkpoint("detections") == 6


@pytest.mark.parametrize(
    ("failure", "event"),
    [
        (QueueNoRoomError("the next page does not fit"), "pull_paused_no_room"),
        (QueueError("queue.db: disk I/O error"), "pull_stopped_queue_error"),
    ],
)
async def test_a_refused_commit_ends_the_pull_and_keeps_the_checkpoint(
    tmp_path: Path, fake: FakeRux, failure: QueueError, event: str
) -> None:
    store = MemPageStore()
    runner = StreamRunner("detections", stream_specs("detections"))
    async with _pull(tmp_path, fake, store) as pull:
        store.fail_next_commit = failure
        with capture_logs() as logs:
            await pull_stream(runner, pull)  # logged, never raised
        assert event in [e["event"] for e in logs]
        assert store.pages == [] and await store.checkpoint("detections") is None
        assert "detections" not in store.polls
        await pull_stream(runner, pull)  # the next tick fetches the same page again
    assert _ids(store) == list(range(1, 13))
    assert _asked_from(fake)[:2] == ["0", "0"]  # a first run both times
