"""The source side's contract with the queue (siemconn.service.pagestore.PageStore), run against both of
its implementations: the in-memory `MemPageStore` and a real `DurableQueue`. Every case gives both the
same inputs and asserts the same outcome (what a page commit queues, its checkpoint, the duplicates, the
quarantine rows with their reason, the stream state and the pull decision), so the fake the pull tests use
cannot drift from the queue. The cases the fake alone has (an injected failure) follow them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from support.metricvalue import metric_value
from support.poison_api import nested
from support.queues import drain

from siemconn.errors import QueueNoRoomError
from siemconn.events.encoder import encode_event
from siemconn.events.rejected import Rejected, raw_json
from siemconn.events.transcode import EncodedEvents
from siemconn.ops.metrics import Metrics
from siemconn.queue import DurableQueue, read_quarantine
from siemconn.service.mempagestore import MemPageStore
from siemconn.service.pagestore import PageStore

MB = 1024 * 1024
MAX_EVENTS = 5
NO_ROOM = "free disk space is under min_free_disk_mb"

Queued = tuple[str, int | None, str]  # (stream, event id, payload), as a destination reads it
Quarantined = tuple[str, str | None, str, str, bytes]  # (key, event id, reason, detail, raw)


class Probe(Protocol):
    """One implementation under the contract, and how a test observes what the contract does not say."""

    store: PageStore

    async def take(self) -> list[Queued]:
        """Every queued event not taken yet, in order; taking frees room (as delivery does)."""
        ...

    def quarantined(self) -> list[Quarantined]: ...
    def duplicates(self, key: str) -> int: ...
    def set_no_room(self, no_room: bool) -> None: ...


class MemProbe:
    def __init__(self) -> None:
        self.mem = MemPageStore(max_events=MAX_EVENTS)
        self.store: PageStore = self.mem

    async def take(self) -> list[Queued]:
        return [
            (p.key.split(".")[0], i, text)
            for p in self.mem.drain()
            for i, text in zip(p.ids, p.payloads, strict=True)
        ]

    def quarantined(self) -> list[Quarantined]:
        return [(k, r.event_id, r.reason, r.detail, r.raw) for k, r in self.mem.quarantined]

    def duplicates(self, key: str) -> int:
        return self.mem.duplicates.get(key, 0)

    def set_no_room(self, no_room: bool) -> None:
        self.mem.no_room = NO_ROOM if no_room else None


class QueueProbe:
    def __init__(self, queue: DurableQueue, metrics: Metrics, free: dict[str, int]) -> None:
        self.queue = queue
        self.store: PageStore = queue
        self.metrics = metrics
        self.free = free

    async def take(self) -> list[Queued]:
        return [(e.stream, e.event_id, e.payload) for e in await drain(self.queue, "d")]

    def quarantined(self) -> list[Quarantined]:
        return [(q.key, q.event_id, q.reason, q.detail, q.raw) for q in read_quarantine(self.queue.data_dir)]

    def duplicates(self, key: str) -> int:
        return int(metric_value(self.metrics.events_duplicate.labels(key)))

    def set_no_room(self, no_room: bool) -> None:
        self.free["bytes"] = 100 * MB if no_room else 10 * 1024 * MB


@pytest.fixture(params=["memory", "queue"])
async def probe(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Probe]:
    if request.param == "memory":
        yield MemProbe()
        return
    metrics = Metrics()
    free = {"bytes": 10 * 1024 * MB}
    queue = await DurableQueue.open(
        tmp_path / "q",
        ["d"],
        metrics=metrics,
        max_events=MAX_EVENTS,
        min_free_disk_mb=256,
        disk_free=lambda _p: free["bytes"],
    )
    try:
        yield QueueProbe(queue, metrics, free)
    finally:
        await queue.close()


def _ids(got: list[Queued]) -> list[int | None]:
    return [i for _, i, _ in got]


# --- the contract, on both ---------------------------------------------------------------------------


async def test_a_page_is_queued_with_its_checkpoint(probe: Probe) -> None:
    page: list[dict[str, Any]] = [
        {"id": 1, "s": "caf\u00e9", "f": 1.5},
        {"id": 2, "n": None},
        {"id": 3, "l": [1, {}]},
    ]
    assert await probe.store.checkpoint("audit") is None
    assert await probe.store.commit_page("audit", page, 4) == 3
    assert await probe.store.checkpoint("audit") == 4
    assert await probe.take() == [("audit", e["id"], encode_event(e)) for e in page]
    assert probe.quarantined() == [] and probe.duplicates("audit") == 0


async def test_the_checkpoint_only_moves_forward_and_with_empty_pages(probe: Probe) -> None:
    store = probe.store
    await store.commit_page("detections", [{"id": 1}], 10)
    await store.commit_page("detections", [{"id": 2}], 7)  # an older next_checkpoint never moves it back
    assert await store.checkpoint("detections") == 10
    await store.commit_page("detections", [{"id": 3}], None)  # None: no usable checkpoint, keep it
    assert await store.checkpoint("detections") == 10
    assert await store.commit_page("detections", [], 12) == 0  # an empty page moves it
    assert await store.checkpoint("detections") == 12
    assert _ids(await probe.take()) == [1, 2, 3]
    # keys are independent; a first page without a checkpoint queues its events and leaves None
    assert await store.commit_page("entity_scoring.host", [{"id": "h-1"}], None) == 1
    assert await store.checkpoint("entity_scoring.host") is None
    assert await probe.take() == [("entity_scoring", None, '{"id": "h-1"}')]


async def test_refetched_ids_are_counted_as_duplicates_not_queued(probe: Probe) -> None:
    store = probe.store
    assert await store.commit_page("audit", [{"id": 1}, {"id": 2}, {"id": 3}], 4) == 3
    # an overlapping re-fetch: ids at or below the high-water mark (3) are dropped and counted
    page: list[dict[str, Any]] = [{"id": 2}, {"id": 3}, {"id": 4}, {"id": "x"}, {"id": True}, {}, {"id": 5}]
    assert await store.commit_page("audit", page, 6) == 5
    assert probe.duplicates("audit") == 2
    # within one page the mark is the one before it: the same id twice is kept twice
    assert await store.commit_page("audit", [{"id": 9}, {"id": 9}], 10) == 2
    got = await probe.take()
    assert _ids(got) == [1, 2, 3, 4, None, None, None, 5, 9, 9]
    assert [p for _, _, p in got][4:7] == ['{"id": "x"}', '{"id": true}', "{}"]
    # another key has its own mark
    assert await store.commit_page("detections", [{"id": 1}], 2) == 1
    assert probe.duplicates("detections") == 0


async def test_rejects_and_unencodable_events_are_quarantined_with_their_reason(probe: Probe) -> None:
    store = probe.store
    deep = {"id": 3, "x": nested(1010)}
    bad = Rejected(b"\xff", "invalid_utf8", "UnicodeDecodeError: 'utf-8' codec can't decode", "9")
    odd = Rejected(b'{"id": "q"', "invalid_json", "JSONDecodeError", '"q"')
    kept = await store.commit_page("detections", [{"id": 1}, deep, {"id": 4}], 5, [bad, odd])
    assert kept == 2 and await store.checkpoint("detections") == 5
    assert _ids(await probe.take()) == [1, 4]
    [b, o, d] = probe.quarantined()
    assert b == ("detections", "9", "invalid_utf8", bad.detail, b"\xff")
    assert o == ("detections", '"q"', "invalid_json", "JSONDecodeError", b'{"id": "q"')
    assert d[:3] == ("detections", "3", "too_deep") and d[4] == raw_json(deep)
    assert d[3].startswith("RecursionError")
    # a quarantined integer id raises the mark: 9 again is a duplicate, not queued nor quarantined again
    assert await store.commit_page("detections", [{"id": 3}, {"id": 9}, {"id": 10}], 11) == 1
    assert probe.duplicates("detections") == 2 and len(probe.quarantined()) == 3
    # a page of rejects only moves the checkpoint with them
    assert await store.commit_page("audit", [], 8, [Rejected(b"x", "invalid_json", "d", "7")]) == 0
    assert await store.checkpoint("audit") == 8
    assert await store.commit_page("audit", [{"id": 7}], 9) == 0


async def test_snapshot_commits_keep_every_event_and_carry_their_state(probe: Probe) -> None:
    store = probe.store
    assert await store.stream_state("lockdown") is None
    assert await store.commit_page("lockdown", [{"id": 5}], 1, state='{"host:1": {}}', dedupe=False) == 1
    assert await store.commit_page("lockdown", [{"id": 5}], 2, state="{}", dedupe=False) == 1
    assert await store.stream_state("lockdown") == "{}"
    assert await store.commit_page("lockdown", [], 2, state='{"x": 1}', dedupe=False) == 0  # state alone
    assert await store.stream_state("lockdown") == '{"x": 1}'
    assert await store.commit_page("lockdown", [{"id": 6}], 3, dedupe=False) == 1  # no state: kept as it was
    assert await store.stream_state("lockdown") == '{"x": 1}' and await store.checkpoint("lockdown") == 3
    # dedupe=False leaves the mark alone: a later deduplicated commit of a lower id is kept
    assert await store.commit_page("lockdown", [{"id": 4}], 4) == 1
    assert _ids(await probe.take()) == [5, 5, 6, 4]
    assert probe.duplicates("lockdown") == 0


async def test_pages_in_the_stored_form_are_deduplicated_alike(probe: Probe) -> None:
    first = EncodedEvents.from_payloads(['{"id": 1}', '{"id": 2}'], [1, 2])
    again = EncodedEvents.from_payloads(['{"id": 2}', '{"id": 3}', '{"id": "s"}'], [2, 3, None])
    assert await probe.store.commit_page("audit", first, 3) == 2
    assert await probe.store.commit_page("audit", again, 4) == 2
    assert probe.duplicates("audit") == 1
    assert await probe.take() == [
        ("audit", 1, '{"id": 1}'),
        ("audit", 2, '{"id": 2}'),
        ("audit", 3, '{"id": 3}'),
        ("audit", None, '{"id": "s"}'),
    ]


async def test_the_pull_decision_pauses_at_the_cap_and_without_room(probe: Probe) -> None:
    store = probe.store
    assert await store.can_pull() == (True, "")
    await store.commit_page("audit", [{"id": i} for i in range(1, MAX_EVENTS + 1)], 6)
    ok, reason = await store.can_pull()
    assert not ok and str(MAX_EVENTS) in reason
    await probe.take()  # delivered: room again
    assert await store.can_pull() == (True, "")
    probe.set_no_room(True)
    assert not (await store.can_pull())[0]
    with pytest.raises(QueueNoRoomError):
        await store.commit_page("audit", [{"id": 7}], 8)
    assert await store.checkpoint("audit") == 6 and await probe.take() == []
    probe.set_no_room(False)
    assert await store.can_pull() == (True, "")
    assert await store.commit_page("audit", [{"id": 7}], 8) == 1
    assert await store.checkpoint("audit") == 8


async def test_an_empty_key_is_refused(probe: Probe) -> None:
    with pytest.raises(ValueError, match="empty key"):
        await probe.store.commit_page("", [{"id": 1}], 2)
    await probe.store.record_poll("audit", 1.7e9)  # accepted; `status` reads it back from the queue


# --- the in-memory store alone ---------------------------------------------------------------------


async def test_a_failed_commit_stores_nothing() -> None:
    mem = MemPageStore()
    await mem.commit_page("lockdown", [{"id": 1}], 1, state="a", dedupe=False)
    mem.fail_next_commit = asyncio.CancelledError()  # as if the process died before the commit
    with pytest.raises(asyncio.CancelledError):
        await mem.commit_page("lockdown", [{"id": 2}], 2, state="b", dedupe=False)
    assert (await mem.checkpoint("lockdown"), await mem.stream_state("lockdown")) == (1, "a")
    assert [e for _, e in mem.events()] == [{"id": 1}]
    assert await mem.commit_page("lockdown", [{"id": 2}], 2, state="b", dedupe=False) == 1  # once only
    assert mem.events("lockdown") == [("lockdown", {"id": 1}), ("lockdown", {"id": 2})]
    assert [p.checkpoint for p in mem.pages] == [1, 2]
