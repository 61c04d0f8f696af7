"""siemconn.syslog.retrypolicy: the writer's backoff is capped and jittered."""

from __future__ import annotations

from siemconn.syslog.pool import MAX_BACKOFF_CAP, backoff_delay


def test_backoff_is_capped_and_jittered() -> None:
    assert backoff_delay(1, 300, 0.0) == 0.25 and backoff_delay(1, 300, 0.999) < 0.5
    assert backoff_delay(3, 300, 0.0) == 1.0
    assert backoff_delay(50, 10_000, 0.999) <= MAX_BACKOFF_CAP == 300
    assert backoff_delay(50, 20, 0.0) == 10.0 and backoff_delay(50, 20, 0.999) < 20
