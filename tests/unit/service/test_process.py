"""siemconn.service.process, the service in-process: cron triggers in the configured time zone, no
overlapping pulls, clean stop, the heap trimmed once the pulls have settled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support.e2e import CLIENT_ID, SECRET, connector_config
from support.sinks import CountingSink

from siemconn.config import Settings, load_settings
from siemconn.devtools.fake_rux import FakeRux, Fault
from siemconn.exitcodes import ExitCode
from siemconn.service import Service


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    """The one TCP syslog server the service delivers to (what is tested is the service, not the receiver)."""
    s = CountingSink()
    yield s
    s.close()


def _settings(tmp_path: Path, fake: FakeRux, sink: CountingSink, **extra: Any) -> Settings:
    cfg = connector_config(tmp_path, [sink.entry("tcp1")], **extra)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return load_settings(p, {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET})


async def _run_until(service: Service, pred: Callable[[], object], timeout: float = 20.0) -> int:
    task = asyncio.create_task(service.run())
    try:
        for _ in range(int(timeout / 0.05)):
            if pred():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("condition not reached")
    finally:
        service.on_signal("SIGTERM")  # as the signal handler would
    return await asyncio.wait_for(task, 15)


@pytest.mark.parametrize(("tz", "expected"), [(None, "UTC"), ("Asia/Kolkata", "Asia/Kolkata")])
async def test_cron_runs_in_configured_timezone(
    tmp_path: Path, sink: CountingSink, tz: str | None, expected: str
) -> None:
    with FakeRux(seed_detections=5, client_id=CLIENT_ID, client_secret=SECRET) as fake:
        extra = {"timezone": tz} if tz else {}
        service = Service(_settings(tmp_path, fake, sink, schedule="0 0 * * *", **extra))
        rc = await _run_until(service, lambda: len(sink.lines()) >= 5)
    assert rc == ExitCode.OK
    assert len(service.crons) == 3
    assert {c.tz for c in service.crons} == {ZoneInfo(expected)}
    assert all(c.spec == "0 0 * * *" for c in service.crons)


async def test_a_tick_during_a_running_pull_is_skipped(tmp_path: Path, sink: CountingSink) -> None:
    with FakeRux(seed_detections=5, client_id=CLIENT_ID, client_secret=SECRET) as fake:
        fake.add_fault(Fault(path="detections", status=None, delay=1.5, count=1))
        service = Service(_settings(tmp_path, fake, sink, schedule="0 0 * * *"))
        runner = service.runners["detections"]

        def check() -> bool:
            if runner.lock.locked() and runner.skipped == 0:
                service.tick("detections")  # a second tick while the startup pull still runs
            return runner.skipped >= 1 and len(sink.lines()) >= 5

        rc = await _run_until(service, check)
        requests = fake.count_requests("events/detections")
    assert rc == ExitCode.OK
    assert runner.skipped == 1
    assert requests == 1  # the skipped tick sent no request


async def test_the_heap_is_trimmed_once_the_pulls_have_settled(tmp_path: Path, sink: CountingSink) -> None:
    """Issue 30: a pull's end hands the heap's free memory back TRIM_SETTLE s later, unless another pull
    still runs then (its end asks again), so between polls the process holds what it keeps. Before, the
    trim ran once a minute only, and the resident size between polls was the working level most of the
    time and ~1 MB lower only for a few seconds a minute."""
    with FakeRux(seed_detections=5, seed_audit=3, client_id=CLIENT_ID, client_secret=SECRET) as fake:
        # the detections pull runs ~3 s; the other streams' pulls end at once
        fake.add_fault(Fault(path="detections", status=None, delay=3.0, count=1))
        service = Service(_settings(tmp_path, fake, sink, schedule="0 0 * * *"))
        if not service.upkeep.trimmer.enabled:
            pytest.skip("no glibc malloc_trim here")
        detections = service.runners["detections"]
        seen: dict[str, object] = {}

        def check() -> bool:
            if detections.lock.locked() and service.upkeep.trimmer.trims:
                seen["trimmed_while_a_pull_ran"] = True
            if not detections.lock.locked() and len(sink.lines()) >= 8 and "done" not in seen:
                seen["done"] = True
            return "done" in seen and service.upkeep.trimmer.trims >= 1

        rc = await _run_until(service, check)
    assert rc == ExitCode.OK
    assert "trimmed_while_a_pull_ran" not in seen
    assert service.upkeep.trimmer.trims == 1  # once after the last pull; the minute's trim was not due yet
