"""Bounded retries of one RUX request: HTTP 429 honours Retry-After, 5xx and transport errors back off.

Invariants: a request is tried at most ``api_max_tries`` times in a row while the server answers 429 and
at most ``unavailable_tries`` times while it is down (5xx, a timeout, a transport error); every other
answer, 4xx included, is returned to the caller unchanged. `AnswerTooLarge` is never retried: the caller
decides whether to ask for less. Every try is counted in ``api_requests`` by its outcome.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC

import httpx

from siemconn.errors import RuxRateLimitedError, RuxUnavailableError
from siemconn.logging import get_logger
from siemconn.ops.metrics import Metrics
from siemconn.rux.answer import Answer, AnswerTooLarge

__all__ = ["Retrier", "parse_retry_after"]

log = get_logger("siemconn.rux")


def parse_retry_after(value: str | None, default: float, cap: float, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), bounded to [0, cap]."""
    if value is None or not value.strip():
        return min(default, cap)
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return min(default, cap)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs:  # NaN
        return min(default, cap)
    return max(0.0, min(secs, cap))


class Retrier:
    """The retry policy of one client: how often, how long to wait, and what to say when it gives up."""

    def __init__(
        self,
        *,
        base_url: str,
        http_timeout: float,
        metrics: Metrics,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        rate_limit_tries: int,
        unavailable_tries: int,
        backoff_base: float,
        backoff_cap: float,
        retry_after_default: float,
        retry_after_cap: float,
    ) -> None:
        self._base_url = base_url
        self._http_timeout = http_timeout
        self._metrics = metrics
        self._sleep = sleep
        self._rng = rng
        self._rate_limit_tries = max(1, rate_limit_tries)
        self._unavailable_tries = max(1, unavailable_tries)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_default = retry_after_default
        self._retry_after_cap = retry_after_cap

    def _count(self, status: str) -> None:
        self._metrics.api_requests.labels(status=status).inc()

    def _backoff(self, attempt: int) -> float:
        d: float = min(self._backoff_cap, self._backoff_base * float(2**attempt))
        jitter: float = self._rng.random()
        return d / 2 + jitter * d / 2

    async def send(self, what: str, request: Callable[[], Awaitable[Answer]]) -> Answer:
        """Send with retries on 429 and on 5xx / transport errors; return any other response.

        `what` names the endpoint in logs and errors (a path, never a query or a secret). Each try is
        bounded by http_timeout as a whole (`siemconn.rux.answer.fetch`); AnswerTooLarge is not retried.
        """
        limited = 0
        failures = 0
        while True:
            reason: str
            try:
                resp = await request()
            except httpx.TimeoutException as exc:
                self._count("timeout")
                reason = f"timed out after {self._http_timeout:g} s ({type(exc).__name__})"
            except TimeoutError:
                self._count("timeout")
                reason = f"no complete answer within http_timeout {self._http_timeout:g} s"
            except AnswerTooLarge:
                self._count("too_large")
                raise
            except httpx.TransportError as exc:
                self._count("error")
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                self._count(str(resp.status_code))
                if resp.status_code == 429:
                    limited += 1
                    if limited >= self._rate_limit_tries:
                        log.error(
                            "api_rate_limited_giving_up",
                            detail="giving up for this run",
                            endpoint=what,
                            tries=limited,
                        )
                        raise RuxRateLimitedError(
                            f"Vectra API rate limit: {what} answered HTTP 429 {limited} times in a row; "
                            "giving up for this run, the next scheduled run retries "
                            "(use a separate API client per connector to avoid sharing the limit)"
                        )
                    delay = parse_retry_after(
                        resp.headers.get("Retry-After"), self._retry_after_default, self._retry_after_cap
                    )
                    log.warning(
                        "api_rate_limited", endpoint=what, wait_seconds=round(delay, 3), attempt=limited
                    )
                    await self._sleep(delay)
                    continue
                if resp.status_code < 500:
                    return resp
                reason = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
            failures += 1
            if failures >= self._unavailable_tries:
                log.error("api_unavailable_giving_up", endpoint=what, tries=failures, reason=reason)
                raise RuxUnavailableError(
                    f"Vectra API server is down or unreachable: {reason} ({what}, {failures} tries); "
                    f"check that {self._base_url} is reachable from this host"
                )
            delay = self._backoff(failures - 1)
            log.warning(
                "api_unavailable",
                detail="backing off",
                endpoint=what,
                wait_seconds=round(delay, 3),
                reason=reason,
                attempt=failures,
            )
            await self._sleep(delay)
