"""A server's retry policy (`RetryPolicy`): how long a writer backs off after a failure, and when it
declares the server down. One object, so the live pool and a replay each pass their own.

retry_count, the reference's "retries before exiting when the server is not reachable", made safe:

- N >= 0: after the first failure and N failed retries in a row, the server is declared DOWN (logged once,
  with the reason). It keeps its backlog in the queue and is re-probed with capped backoff (<= 5 min).
- N < 0: a server is never declared down; it is retried forever (what a replay's writer does).

Backoff: 0.5 s doubling per consecutive failure, capped at min(max_backoff_seconds, 300), times a random
factor in [0.5, 1) so that many connectors do not reconnect in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BASE_BACKOFF", "MAX_BACKOFF_CAP", "RetryPolicy", "backoff_delay"]

MAX_BACKOFF_CAP = 300.0
BASE_BACKOFF = 0.5


def backoff_delay(failures: int, cap: float, rand: float) -> float:
    """Seconds to wait after `failures` consecutive failures (>= 1); `rand` in [0, 1)."""
    cap = min(cap, MAX_BACKOFF_CAP)
    exp = BASE_BACKOFF * float(2 ** min(failures - 1, 30))
    return min(cap, exp) * (0.5 + 0.5 * rand)


@dataclass(frozen=True)
class RetryPolicy:
    """`delay(failures)`: seconds to wait after that many consecutive failures (>= 1), jittered and
    capped; `gives_up(failures)`: whether the server is then declared down."""

    retry_count: int
    max_backoff: float = MAX_BACKOFF_CAP
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, failures: int) -> float:
        return backoff_delay(failures, min(self.max_backoff, MAX_BACKOFF_CAP), self.rand())

    def gives_up(self, failures: int) -> bool:
        return self.retry_count >= 0 and failures > self.retry_count

    def forever(self) -> RetryPolicy:
        """The same delays, never giving up (a replay's writer: it ends with its window, not a count)."""
        return RetryPolicy(-1, self.max_backoff, self.rand)
