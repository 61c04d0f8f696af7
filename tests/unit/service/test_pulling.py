"""siemconn.service.pulling: the snapshot pulls (health, lockdown) from the fake tenant over real HTTP into
the in-memory page store (service/mempagestore.py): the health object once per poll, lockdown changes
only, the last-seen list committed with them (kept on a bad answer and across a failed commit); and,
through the service's runners into a real queue, a 403 on one stream leaving the others flowing. The
event-stream pulls are tests/unit/service/test_pulling_events.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from support.e2e import CLIENT_ID, SECRET, connector_config, serve_fake
from support.snapshots import HEALTH_SECTIONS

from siemconn.config import load_settings
from siemconn.devtools.fake_rux import FakeRux, Fault
from siemconn.errors import RuxResponseError
from siemconn.ops.metrics import NO_METRICS
from siemconn.queue import DurableQueue
from siemconn.rux.client import RuxClient
from siemconn.rux.lockdown import MARKER, UNLOCKED
from siemconn.rux.streams import StreamSpec
from siemconn.service import Service
from siemconn.service.mempagestore import MemPageStore
from siemconn.service.pulling import Pull, pull_snapshot


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=5, seed_detections=7, seed_lockdown=2)


def _settings(
    tmp_path: Path, fake: FakeRux, servers: list[dict[str, Any]] | None = None, **extra: Any
) -> Any:
    p = tmp_path / "config.json"
    servers = servers or [
        {"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}
    ]
    p.write_text(json.dumps(connector_config(tmp_path, servers, **extra)))
    return load_settings(p, {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET})


async def _service(tmp_path: Path, fake: FakeRux, **extra: Any) -> Service:
    s = _settings(tmp_path, fake, **extra)
    svc = Service(s)
    svc.queue = await DurableQueue.open(s.data_dir, ["u"])
    # a 503 answer is retried as in production, with a backoff of milliseconds instead of seconds
    svc.client = RuxClient(s.credentials, s.configuration, backoff_base=0.01, backoff_cap=0.05)
    return svc


async def _payloads(q: DurableQueue) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    while (b := await q.read_batch("u", 100)) is not None:
        out.extend((e.stream, json.loads(e.payload)) for e in b.events)
        await q.ack(b)
    return out


@asynccontextmanager
async def _pull(tmp_path: Path, fake: FakeRux, store: MemPageStore) -> AsyncIterator[Pull]:
    """A pull into the in-memory store (the queue's page contract, tests/unit/service/test_pagestore.py),
    with a client of its own, as the service builds one for each tick."""
    s = _settings(tmp_path, fake)
    async with RuxClient(s.credentials, s.configuration) as client:
        yield Pull(store, client, NO_METRICS, s.configuration.api_version, asyncio.Lock(), lambda: False)


async def test_health_pull_forwards_the_object_once_per_poll(tmp_path: Path, fake: FakeRux) -> None:
    store = MemPageStore()
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_snapshot(StreamSpec("health"), pull) == 1
        assert await pull_snapshot(StreamSpec("health"), pull) == 1
        got = store.events()
        assert [s for s, _ in got] == ["health", "health"]
        assert all(set(p) == HEALTH_SECTIONS for _, p in got)
        assert await store.checkpoint("health") == 2  # the polls that queued events
        fake.add_fault(Fault(path="health", body="[1, 2]", status=200))
        with pytest.raises(RuxResponseError, match="expected a JSON object"):
            await pull_snapshot(StreamSpec("health"), pull)
        assert len(store.events()) == 2 and await store.checkpoint("health") == 2


async def test_lockdown_pull_forwards_changes_only_and_keeps_state_on_bad_answers(
    tmp_path: Path, fake: FakeRux
) -> None:
    store = MemPageStore()
    spec = StreamSpec("lockdown")
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_snapshot(spec, pull) == 2  # the two seeded entries appear
        assert await pull_snapshot(spec, pull) == 0  # same list: nothing
        first = fake.lockdowns.entries()
        fake.lockdowns.unlock(first[0]["type"], first[0]["entity_id"])
        # an error or a non-array answer is never read as "everything left"
        fake.add_fault(
            Fault(path="lockdown", body='{"detail": "x"}', status=200),
            Fault(path="lockdown", status=503, count=5),
        )
        with pytest.raises(RuxResponseError, match="expected a JSON array"):
            await pull_snapshot(spec, pull)
        with pytest.raises(Exception, match="503"):
            await pull_snapshot(spec, pull)
        assert await pull_snapshot(spec, pull) == 1
        got = [p for _, p in store.events()]
        assert got[:2] == first
        assert got[2] == {
            **first[0],
            MARKER: UNLOCKED,
            "siemconn_observed_at": got[2]["siemconn_observed_at"],
        }
    # the last-seen list lives in the store, not in the pull: a new process's first poll (a new client,
    # the same store) of the same list is no change (that the queue keeps the state across a restart is
    # tests/unit/queue/test_routing.py's)
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_snapshot(spec, pull) == 0


async def test_403_on_one_stream_leaves_the_others_flowing(tmp_path: Path, fake: FakeRux) -> None:
    """The service's pulls into a real queue: its runners, per stream."""
    fake.configure(roles=["Read-Only"])  # audit and health 403; detections and lockdown allowed
    svc = await _service(tmp_path, fake)
    assert svc.queue is not None and svc.client is not None
    try:
        for stream in ("audit", "detections", "health", "lockdown"):
            await svc.pull(svc.runners[stream])
        got = await _payloads(svc.queue)
        streams = {s for s, _ in got}
        assert streams == {"detections", "lockdown"}
        assert sum(1 for s, _ in got if s == "detections") == 7
    finally:
        await svc.client.aclose()
        await svc.queue.close()


async def test_lockdown_change_survives_a_failed_commit(tmp_path: Path, fake: FakeRux) -> None:
    """A poll whose commit failed leaves the state as it was: the next poll produces the same changes."""
    store = MemPageStore()
    async with _pull(tmp_path, fake, store) as pull:
        assert await pull_snapshot(StreamSpec("lockdown"), pull) == 2
        fake.lockdowns.lock("host", 4242, name="new-host")
        store.fail_next_commit = asyncio.CancelledError()  # as if the process died before the commit
        with pytest.raises(asyncio.CancelledError):
            await pull_snapshot(StreamSpec("lockdown"), pull)
        assert await pull_snapshot(StreamSpec("lockdown"), pull) == 1
        assert [p["entity_id"] for _, p in store.events()].count(4242) == 1
