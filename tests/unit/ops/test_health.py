"""siemconn.ops.health: a server turns unhealthy after the window without a success and back on one; a
stale event loop is unhealthy (an injected clock, no waiting)."""

from __future__ import annotations

from support.clock import Clock

from siemconn.ops.health import Health


def test_new_and_idle_servers_are_healthy() -> None:
    clock = Clock()
    h = Health(["a", "b"], window=300, clock=clock)
    ok, report = h.status()
    assert ok and report["status"] == "ok" and report["problems"] == []
    assert set(report["servers"]) == {"a", "b"}
    h.server_ok("a")
    clock.t += 3600  # an hour with nothing to send is not a failure
    h.loop_alive()
    assert h.status()[0]


def test_failing_server_turns_unhealthy_after_window_and_back_on_success() -> None:
    clock = Clock()
    h = Health(["a", "b"], window=300, clock=clock)
    h.server_failed("b", "connection refused")
    clock.t += 299
    h.loop_alive()
    ok, report = h.status()
    assert ok and report["servers"]["b"]["state"] == "failing"
    clock.t += 2
    h.server_failed("b", "timed out")  # a later failure does not restart the clock
    ok, report = h.status()
    assert not ok
    assert report["status"] == "unhealthy"
    assert report["servers"]["b"] == {
        "ok": False,
        "state": "down",
        "last_ok_seconds_ago": None,
        "failing_for_seconds": 301.0,
        "reason": "timed out",
    }
    assert report["servers"]["a"]["ok"] is True
    assert len(report["problems"]) == 1 and "server b" in report["problems"][0]
    assert "timed out" in report["problems"][0]
    h.server_ok("b")
    ok, report = h.status()
    assert ok and report["servers"]["b"]["state"] == "up" and report["servers"]["b"]["reason"] is None


def test_stale_loop_is_unhealthy() -> None:
    clock = Clock()
    h = Health(["a"], window=300, clock=clock, loop_timeout=60)
    clock.t += 61
    ok, report = h.status()
    assert not ok and report["loop"]["ok"] is False and "event loop" in report["problems"][0]
    h.loop_alive()
    assert h.status()[0]


def test_unknown_server_is_tracked() -> None:
    clock = Clock()
    h = Health([], window=10, clock=clock)
    h.server_failed("late", "refused")
    clock.t += 11
    h.loop_alive()
    ok, report = h.status()
    assert not ok and "late" in report["servers"]
