"""A clock a test sets by hand, for the parts that take an injectable clock (`clock=`)."""

from __future__ import annotations

__all__ = ["Clock"]


class Clock:
    """Monotonic seconds that move only when the test sets `t`."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
