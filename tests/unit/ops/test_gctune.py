"""The collector is paused only for the parse of a page, or while a page is held, and always restored."""

from __future__ import annotations

import asyncio
import gc

import orjson
import pytest

from siemconn.ops import gctune
from siemconn.ops.gctune import gc_settings, parse_paused


def test_settings_from_the_environment() -> None:
    assert gc_settings({}).pause_parse
    assert not gc_settings({"SIEMCONN_GC": "off"}).pause_parse
    assert not gc_settings({"SIEMCONN_GC": " OFF "}).pause_parse


def test_parse_paused_pauses_and_restores() -> None:
    seen: list[bool] = []

    def loads(content: bytes) -> object:
        seen.append(gc.isenabled())
        return orjson.loads(content)

    assert gc.isenabled()
    assert parse_paused(loads, b'{"events": [1]}') == {"events": [1]}
    assert seen == [False] and gc.isenabled()


def test_parse_paused_restores_after_an_error_and_keeps_a_disabled_collector() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        parse_paused(orjson.loads, b"{not json")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_paused(orjson.loads, b"[]")
        assert not gc.isenabled()  # not re-enabled by us
    finally:
        gc.enable()


def test_off_leaves_the_collector_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gctune, "GC_SETTINGS", gc_settings({"SIEMCONN_GC": "off"}))
    seen: list[bool] = []
    parse_paused(lambda c: seen.append(gc.isenabled()), b"")
    assert seen == [True]


def test_page_hold_pauses_until_the_loop_turn_after_release() -> None:
    async def main() -> list[bool]:
        hold = gctune.PageHold()
        seen = [gc.isenabled()]
        await hold.acquire()
        seen.append(gc.isenabled())
        hold.release()
        seen.append(gc.isenabled())  # still paused: the holder drops its page before its next await
        await asyncio.sleep(0)
        seen.append(gc.isenabled())
        return seen

    assert asyncio.run(main()) == [True, False, False, True]
    assert gc.isenabled()


def test_page_hold_hands_the_pause_to_the_next_holder() -> None:
    async def main() -> list[bool]:
        hold = gctune.PageHold()
        seen: list[bool] = []

        async def second() -> None:
            async with hold:
                seen.append(gc.isenabled())
                await asyncio.sleep(0)
                seen.append(gc.isenabled())

        await hold.acquire()
        waiter = asyncio.create_task(second())
        await asyncio.sleep(0)  # second() now waits for the hold
        hold.release()
        await waiter  # its release ended the pause on the loop's next turn
        seen.append(gc.isenabled())
        return seen

    assert asyncio.run(main()) == [False, False, True]
    assert gc.isenabled()


def test_page_hold_keeps_a_disabled_collector_and_obeys_off(monkeypatch: pytest.MonkeyPatch) -> None:
    async def cycle() -> bool:
        hold = gctune.PageHold()
        async with hold:
            inside = gc.isenabled()
        await asyncio.sleep(0)
        return inside

    gc.disable()
    try:
        asyncio.run(cycle())
        assert not gc.isenabled()  # not re-enabled by us
    finally:
        gc.enable()
    monkeypatch.setattr(gctune, "GC_SETTINGS", gc_settings({"SIEMCONN_GC": "off"}))
    assert asyncio.run(cycle()) is True
    assert gc.isenabled()


def test_page_hold_released_outside_a_loop_ends_the_pause() -> None:
    hold = gctune.PageHold()
    asyncio.run(hold.acquire())
    assert not gc.isenabled()
    hold.release()
    assert gc.isenabled()


class _Node:
    """A reference cycle (itself), counted when the collector frees it."""

    freed = 0

    def __init__(self) -> None:
        self.me = self
        self.pad = [object() for _ in range(8)]

    def __del__(self) -> None:
        _Node.freed += 1


def test_sweep_collects_the_cyclic_garbage_continuous_holds_leave() -> None:
    """Issue 30: while pages flow, each pull takes the previous one's hold over, and a takeover collects
    only the young generation. Cyclic garbage that outlived one young collection (it was referenced while
    a page was in flight) was then never freed. The service's once-a-minute `Sweep` frees it."""
    now = [0.0]
    sweep = gctune.Sweep(gc_settings({}), every=60.0, clock=lambda: now[0])

    async def pulls(rounds: int) -> None:
        hold = gctune.PageHold()

        async def one(keep: list[_Node]) -> None:
            async with hold:
                keep.append(_Node())  # e.g. a response referenced by the page being committed
                await asyncio.sleep(0)

        held: list[_Node] = []
        await hold.acquire()  # the first pull; the others queue behind it, so each takes the pause over
        tasks = [asyncio.create_task(one(held)) for _ in range(rounds)]
        await asyncio.sleep(0)
        hold.release()
        for i, t in enumerate(tasks):
            await t
            if i % 10 == 9:
                held.clear()  # the page is done: its cycles are garbage now, after surviving a collection

    gc.collect()
    _Node.freed = 0
    asyncio.run(pulls(200))
    left = 200 - _Node.freed
    assert left > 0, "the scenario must leave cyclic garbage behind the holds"
    now[0] = 59.0
    assert sweep.due() is None and _Node.freed == 200 - left
    now[0] = 60.0
    assert sweep.due() is not None and sweep.sweeps == 1
    assert _Node.freed == 200, f"{200 - _Node.freed} cycles still alive after the sweep"


def test_sweep_is_off_with_gc_off() -> None:
    sweep = gctune.Sweep(gc_settings({"SIEMCONN_GC": "off"}), every=0.0)
    assert sweep.due() is None and sweep.sweeps == 0
