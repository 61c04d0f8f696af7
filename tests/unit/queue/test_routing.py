"""Per-destination streams in the durable queue: pages stored once, cursors step over other streams,
depth counts a destination's own streams only, route changes across restarts, and stream state that is
committed in the page's own transaction."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from support.examples import examples
from support.queues import drain

from siemconn.commands.render import render_status
from siemconn.errors import QueueError
from siemconn.events.batch import QueuedEvent
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.schema import DB_FILE, PAGE_TABLE


def events(ids: range | list[int], key: str) -> list[dict[str, Any]]:
    return [{"id": i, "key": key} for i in ids]


def pairs(evs: list[QueuedEvent]) -> list[tuple[str, int | None]]:
    return [(e.stream, e.event_id) for e in evs]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


ROUTES = {"det": ["detections"], "aud": ["audit", "entity_scoring"]}


async def test_each_destination_gets_exactly_its_streams_from_one_stored_copy(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["all", "det", "aud"], routes=ROUTES)
    try:
        await q.commit_page("audit", events(range(1, 4), "audit"), 4)
        await q.commit_page("detections", events(range(1, 6), "detections"), 6)
        await q.commit_page("entity_scoring.host", events(range(1, 3), "h"), 3)
        await q.commit_page("detections", events(range(6, 8), "detections"), 8)
        assert {d: await q.depth(d) for d in ("all", "det", "aud")} == {"all": 12, "det": 7, "aud": 5}
        conn = sqlite3.connect(data_dir / DB_FILE)
        try:  # stored once: one row per page, whatever the number of destinations
            assert conn.execute(f"SELECT COUNT(*), SUM(n) FROM {PAGE_TABLE}").fetchone() == (4, 12)
        finally:
            conn.close()
        assert pairs(await drain(q, "det", 3)) == [("detections", i) for i in range(1, 8)]
        assert pairs(await drain(q, "aud", 2)) == [("audit", 1), ("audit", 2), ("audit", 3)] + [
            ("entity_scoring", 1),
            ("entity_scoring", 2),
        ]
        assert len(await drain(q, "all")) == 12
        assert {d: await q.depth(d) for d in ("all", "det", "aud")} == {"all": 0, "det": 0, "aud": 0}
    finally:
        await q.close()


async def test_idle_routed_destination_steps_over_and_never_holds_housekeeping(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["det", "aud"], routes=ROUTES, housekeeping_every=1)
    try:
        for i in range(10):
            await q.commit_page("detections", events([i + 1], "detections"), i + 2)
        assert await q.depth("aud") == 0
        assert await q.read_batch("aud", 10) is None
        await drain(q, "det")
        await q.housekeeping()
        # "aud" took nothing: its cursor stepped over every page, so nothing is kept for it
        assert read_status(data_dir).destinations[0].depth == 0
        conn = sqlite3.connect(data_dir / DB_FILE)
        try:
            assert conn.execute(f"SELECT COUNT(*) FROM {PAGE_TABLE}").fetchone()[0] == 0
        finally:
            conn.close()
    finally:
        await q.close()


async def test_wait_for_data_ignores_other_streams(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["det", "aud"], routes=ROUTES)
    try:
        waiter = asyncio.create_task(q.wait_for_data("aud", 5))
        await asyncio.sleep(0.05)
        await q.commit_page("detections", events([1], "detections"), 2)
        await asyncio.sleep(0.1)
        assert not waiter.done()  # a detections page is not data for "aud"
        await q.commit_page("audit", events([1], "audit"), 2)
        await asyncio.wait_for(waiter, 2)
    finally:
        await q.close()


async def test_depth_cap_and_status_count_only_own_streams(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["det", "aud"], routes=ROUTES, max_events=5)
    try:
        await q.commit_page("detections", events(range(1, 5), "detections"), 5)
        await q.commit_page("audit", events([1], "audit"), 2)
        await drain(q, "det")
        await q.commit_page("detections", events(range(5, 9), "detections"), 9)
        ok, reason = await q.can_pull()
        assert ok, reason  # det has 4, aud has 1: neither at 5
        assert await q.oldest_age("aud") is not None
        st_ = {d.destination: d for d in read_status(data_dir).destinations}
        assert (st_["det"].depth, st_["aud"].depth) == (4, 1)
        assert st_["aud"].streams == ("audit", "entity_scoring")
        assert st_["aud"].oldest_age is not None
        text = render_status(read_status(data_dir), streams_off=("health", "lockdown"))
        assert "streams off: health, lockdown" in text and "audit, entity_scoring" in text
        await q.commit_page("detections", events([9], "detections"), 10)
        ok, reason = await q.can_pull()
        assert not ok and "det has 5" in reason
    finally:
        await q.close()


async def test_changing_streams_on_restart_loses_nothing_and_duplicates_nothing(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["s"], routes={"s": ["detections"]})
    try:
        await q.commit_page("audit", events([1, 2], "audit"), 3)
        await q.commit_page("detections", events([1, 2], "detections"), 3)
        got = pairs(await drain(q, "s"))
        await q.commit_page("detections", events([3], "detections"), 4)  # pending when it stops
        await q.commit_page("audit", events([3], "audit"), 4)
    finally:
        await q.close()
    assert got == [("detections", 1), ("detections", 2)]
    # audit added: it gets audit events from its position on (audit 3), and the pending detections 3
    with capture_logs() as logs:
        q = await DurableQueue.open(data_dir, ["s"], routes={"s": ["detections", "audit"]})
    try:
        changed = [e for e in logs if e["event"] == "queue_destination_streams_changed"]
        assert changed and changed[0]["undelivered_events_dropped"] == 0
        assert changed[0]["after"] == ["audit", "detections"]
        assert await q.depth("s") == 2
        assert pairs(await drain(q, "s")) == [("detections", 3), ("audit", 3)]
        await q.commit_page("audit", events([4], "audit"), 5)
        await q.commit_page("detections", events([4], "detections"), 5)
    finally:
        await q.close()
    # detections removed while one is undelivered: logged with the count, never sent again
    with capture_logs() as logs:
        q = await DurableQueue.open(data_dir, ["s"], routes={"s": ["audit"]})
    try:
        changed = [e for e in logs if e["event"] == "queue_destination_streams_changed"]
        assert changed[0]["undelivered_events_dropped"] == 1 and changed[0]["log_level"] == "warning"
        assert pairs(await drain(q, "s")) == [("audit", 4)]
    finally:
        await q.close()
    # back to every stream (no `streams`): from its position on, nothing replayed
    q = await DurableQueue.open(data_dir, ["s"])
    try:
        assert await q.depth("s") == 0
        await q.commit_page("detections", events([5], "detections"), 6)
        assert pairs(await drain(q, "s")) == [("detections", 5)]
    finally:
        await q.close()


async def test_batch_spanning_other_streams_pages_and_prefetch(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["aud"], routes={"aud": ["audit"]})
    try:
        await q.commit_page("audit", events(range(1, 4), "audit"), 4)
        await q.commit_page("detections", events(range(1, 50), "detections"), 50)
        await q.commit_page("audit", events(range(4, 6), "audit"), 6)
        await q.commit_page("detections", events(range(50, 60), "detections"), 60)
        b1 = await q.read_batch("aud", 4)
        assert b1 is not None and [e.event_id for e in b1.events] == [1, 2, 3, 4]
        b2 = await q.read_batch_from("aud", b1.end_seq, 4)
        assert b2 is not None and [e.event_id for e in b2.events] == [5]
        assert await q.read_batch_from("aud", b2.end_seq, 4) is None
        with pytest.raises(QueueError, match="order"):
            await q.ack(b2)
        await q.ack(b1)
        assert await q.depth("aud") == 1
        await q.ack(b2)
        assert await q.depth("aud") == 0
        assert await q.read_batch("aud", 4) is None
    finally:
        await q.close()


async def test_state_is_committed_with_its_page_or_not_at_all(data_dir: Path) -> None:
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        await q.commit_page("lockdown", events([5], "lockdown"), 1, state='{"host:1": {}}', dedupe=False)
        # ids are not a cursor for snapshot streams: the same id again is kept, not deduplicated
        assert await q.commit_page("lockdown", events([5], "lockdown"), 2, state="{}", dedupe=False) == 1
        assert await q.stream_state("lockdown") == "{}"
        assert await q.commit_page("lockdown", [], 2, state='{"x": 1}', dedupe=False) == 0
        assert await q.stream_state("lockdown") == '{"x": 1}'
    finally:
        await q.close()
    # a failure inside the transaction (here: a trigger refusing the state row) leaves nothing behind
    conn = sqlite3.connect(data_dir / DB_FILE)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON stream_state BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.commit()
    conn.close()
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert await q.stream_state("lockdown") == '{"x": 1}'
        depth = await q.depth("a")
        with pytest.raises(QueueError):
            await q.commit_page("lockdown", events([6], "lockdown"), 3, state="{}", dedupe=False)
        assert await q.depth("a") == depth and await q.checkpoint("lockdown") == 2
        assert await q.stream_state("lockdown") == '{"x": 1}'
    finally:
        await q.close()
    q = await DurableQueue.open(data_dir, ["a"])
    try:
        assert [json.loads(e.payload)["id"] for e in await drain(q, "a")] == [5, 5]
        assert await q.stream_state("lockdown") == '{"x": 1}' and await q.checkpoint("lockdown") == 2
    finally:
        await q.close()


_KEYS = ("audit", "detections", "entity_scoring.account", "lockdown")
_ROUTE_CHOICES: tuple[frozenset[str] | None, ...] = (
    None,
    frozenset({"detections"}),
    frozenset({"audit", "entity_scoring"}),
    frozenset({"lockdown", "detections"}),
)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 3), st.integers(0, 6)),
        st.tuples(st.just("read_ack"), st.integers(0, 2), st.integers(1, 9)),
        st.tuples(st.just("read_only"), st.integers(0, 2), st.integers(1, 9)),
        st.tuples(st.just("housekeeping")),
        st.tuples(st.just("reopen"), st.integers(0, 3), st.integers(0, 3)),
    ),
    max_size=40,
)


@settings(
    max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_model_routed_destinations(tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    """Any mix of commits, reads, acks, housekeeping and restarts with changed routes matches the model:
    a destination gets, in order, every event of its current streams after its position, exactly once;
    its position moves past the last event it acked, and to the head when nothing of its own is left."""
    dests = ("all", "r1", "r2")

    async def scenario(data_dir: Path) -> None:
        log: list[str] = []  # the stream of every stored event, in sequence order
        routes: dict[str, frozenset[str] | None] = {
            "all": None,
            "r1": _ROUTE_CHOICES[1],
            "r2": _ROUTE_CHOICES[2],
        }
        pos = dict.fromkeys(dests, 0)
        next_id = dict.fromkeys(_KEYS, 1)

        def takes(d: str, stream: str) -> bool:
            r = routes[d]
            return r is None or stream in r

        def normalise() -> None:
            for d in dests:
                if not any(takes(d, s) for s in log[pos[d] :]):
                    pos[d] = len(log)

        def open_q() -> Any:
            given_routes = {d: sorted(r) for d, r in routes.items() if r is not None}
            return DurableQueue.open(data_dir, list(dests), routes=given_routes, housekeeping_every=2)

        q = await open_q()
        try:
            for op in ops:
                if op[0] == "commit":
                    key, n = _KEYS[op[1]], op[2]
                    ids = list(range(next_id[key], next_id[key] + n))
                    assert await q.commit_page(key, events(ids, key), next_id[key] + n) == n
                    next_id[key] += n
                    log.extend([key.partition(".")[0]] * n)
                elif op[0] in ("read_ack", "read_only"):
                    d, size = dests[op[1]], op[2]
                    b = await q.read_batch(d, size)
                    mine = [i for i in range(pos[d], len(log)) if takes(d, log[i])]
                    want = [log[i] for i in mine[:size]]
                    assert ([] if b is None else [e.stream for e in b.events]) == want
                    if b is not None and op[0] == "read_ack":
                        await q.ack(b)
                        pos[d] = mine[len(want) - 1] + 1
                elif op[0] == "housekeeping":
                    await q.housekeeping()
                else:
                    await q.close()
                    routes["r1"], routes["r2"] = _ROUTE_CHOICES[op[1]], _ROUTE_CHOICES[op[2]]
                    q = await open_q()
                normalise()
                for d in dests:
                    assert await q.depth(d) == sum(1 for s in log[pos[d] :] if takes(d, s)), d
        finally:
            await q.close()

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "data"))
