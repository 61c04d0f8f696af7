"""The RUX source: an httpx client with the OAuth2 token lifecycle, bounded retries and paging.

One `RuxClient` per process, shared by every stream. `pages()` is an async generator that yields
one `Page` per API page and requests the next page only when the caller resumes it, so the caller
commits each page (events + next_checkpoint) before the next request. The client never stores a
checkpoint.

Cursor rules (see `Page.next_checkpoint`):

* A page's ``next_checkpoint`` is the server's value, never lower than the cursor the page was
  requested with. ``null`` with events gives ``max(event id) + 1``; ``null`` without events keeps
  the cursor.
* An empty page is yielded only when it moves the checkpoint forward. A first run (no input
  checkpoint) that finds nothing yields nothing, so the next run is again a first run with its own
  lookback window: it never commits ``0``, which would replay the whole tenant history.
* The first run keeps ``event_timestamp_gte`` on every page of that run (the server ANDs it with
  ``from``); later runs send only ``from``.
* Within one run an event whose ``id`` was on the previous page is dropped (servers that return
  ``next_checkpoint = last id`` repeat one event); across runs the caller dedupes.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import orjson

from siemconn import __version__
from siemconn.config import Configuration, Credentials
from siemconn.errors import (
    RuxAuthError,
    RuxPermissionError,
    RuxRateLimitedError,
    RuxResponseError,
    RuxUnavailableError,
)
from siemconn.logging import get_logger
from siemconn.ops.gctune import parse_paused
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.rux.streams import StreamSpec, api_path, build_params, probe_params

log = get_logger("siemconn.rux")

TOKEN_PATH = "/oauth2/token"
_EARLY_RENEW_MAX = 100.0  # renew the access token 100 s early, or 10 % of its lifetime if smaller


@dataclass(frozen=True)
class Page:
    """One API page: the events to commit and the checkpoint to store with them."""

    spec: StreamSpec
    events: list[dict[str, Any]]
    next_checkpoint: int


@dataclass
class _Token:
    access: str
    access_expires: float  # monotonic seconds
    refresh: str | None
    refresh_expires: float | None  # monotonic; None = unknown (try it)
    generation: int


# A number token of 19+ digits may be an integer beyond 64 bits, which orjson turns into a lossy float:
# such pages go to the json module, which keeps arbitrary-precision ints. The scan maps every ASCII digit
# to "0" and everything else to " " and looks for 19 zeros (the matches of re's rb"\d{19}", at ~1.5 us
# per event instead of ~18). A run that follows a letter, a quote or another byte that cannot precede a
# number token is inside a string (hashes, serial numbers) and does not need the slow parser; anything
# that may start or continue a number (":", "[", ",", "-", "+", ".", "e", "E", whitespace, start of
# document) does. Erring on the side of the json module only costs speed.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
_NUMBER_CONTEXT = frozenset(b":[,-+.eE \t\r\n")


def _has_long_digit_run(content: bytes) -> bool:
    """True if a run of 19+ ASCII digits in content may be (part of) a JSON number token."""
    mapped = content.translate(_DIGITS_AS_ZERO)
    i = mapped.find(_NINETEEN_DIGITS)
    while i >= 0:
        if i == 0 or content[i - 1] in _NUMBER_CONTEXT:
            return True
        end = mapped.find(b" ", i + 19)  # the end of this run
        if end < 0:
            return False
        i = mapped.find(_NINETEEN_DIGITS, end)
    return False


def _loads(content: bytes) -> Any:
    """orjson, falling back to json for what orjson rejects or would change (NaN, integers beyond 64 bits)."""
    if not _has_long_digit_run(content):
        try:
            return parse_paused(orjson.loads, content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content.decode("utf-8"))


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1  # what the queue (SQLite INTEGER) can store


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _early(lifetime: float) -> float:
    return min(_EARLY_RENEW_MAX, 0.1 * lifetime)


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


class RuxClient:
    """Async client of the Vectra RUX event streams. Use one per process."""

    def __init__(
        self,
        credentials: Credentials,
        configuration: Configuration,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics = NO_METRICS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        unavailable_tries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        retry_after_default: float = 30.0,
        retry_after_cap: float = 300.0,
        rng: random.Random | None = None,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        self._base_url = credentials.base_url.rstrip("/")
        self._client_id = credentials.client_id
        self._secret = credentials.client_secret.get_secret_value()
        self._cfg = configuration
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._now = wall_clock
        self._unavailable_tries = max(1, unavailable_tries)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_default = retry_after_default
        self._retry_after_cap = retry_after_cap
        self._rate_limit_tries = max(1, configuration.api_max_tries)
        self._rng = rng or random.Random()
        self._on_secret = on_secret
        self._token: _Token | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(configuration.http_timeout),
            headers={"Accept": "application/json", "User-Agent": f"siemconn/{__version__}"},
            follow_redirects=False,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RuxClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- HTTP with retries ---------------------------------------------------------------

    def _count(self, status: str) -> None:
        self._metrics.api_requests.labels(status=status).inc()

    def _backoff(self, attempt: int) -> float:
        d = min(self._backoff_cap, self._backoff_base * (2**attempt))
        return d / 2 + self._rng.random() * d / 2

    async def _send(self, what: str, request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """Send with retries on 429 and on 5xx / transport errors; return any other response.

        `what` names the endpoint in logs and errors (a path, never a query or a secret).
        """
        limited = 0
        failures = 0
        while True:
            reason: str
            try:
                resp = await request()
            except httpx.TimeoutException as exc:
                self._count("timeout")
                reason = f"timed out after {self._cfg.http_timeout:g} s ({type(exc).__name__})"
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

    # --- tokens --------------------------------------------------------------------------

    def _store_token(self, body: Any, *, refreshed: bool) -> None:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("access_token"), str)
            or not body["access_token"]
        ):
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered 200 without an access_token (got {keys}); "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            )
        now = self._clock()
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if _is_int(expires_in) or isinstance(expires_in, float) else 1800.0
        refresh = body.get("refresh_token")
        old = self._token
        if not isinstance(refresh, str) or not refresh:
            refresh = old.refresh if (refreshed and old is not None) else None
            refresh_expires = old.refresh_expires if (refreshed and old is not None) else None
        else:
            rexp = body.get("refresh_expires_in")
            if _is_int(rexp) or isinstance(rexp, float):
                refresh_expires = now + float(rexp) - _early(float(rexp))
            elif refreshed and old is not None and old.refresh == refresh:
                refresh_expires = old.refresh_expires
            else:
                refresh_expires = None
        self._generation += 1
        self._token = _Token(
            access=body["access_token"],
            access_expires=now + lifetime - _early(lifetime),
            refresh=refresh,
            refresh_expires=refresh_expires,
            generation=self._generation,
        )
        if self._on_secret is not None:
            self._on_secret(body["access_token"])
            if refresh:
                self._on_secret(refresh)
        log.info(
            "access_token_refreshed" if refreshed else "access_token_obtained",
            expires_in=int(lifetime),
            has_refresh_token=refresh is not None,
        )

    def _token_body(self, resp: httpx.Response) -> Any:
        try:
            return _loads(resp.content)
        except (ValueError, UnicodeDecodeError):
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered HTTP {resp.status_code} with a body that is not JSON; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            ) from None

    async def _client_credentials(self) -> None:
        url = self._base_url + TOKEN_PATH
        resp = await self._send(
            TOKEN_PATH,
            lambda: self._http.post(
                url, data={"grant_type": "client_credentials"}, auth=(self._client_id, self._secret)
            ),
        )
        if resp.status_code in (400, 401):
            log.error("client_credentials_rejected", status=resp.status_code, client_id=self._client_id)
            raise RuxAuthError(
                f"client id or secret rejected by {self._base_url} (HTTP {resp.status_code}); "
                "fix CLIENT_ID and CLIENT_SECRET (or CLIENT_SECRET_FILE) with an API client created in the "
                "Vectra UI (Manage > API Clients)"
            )
        if resp.status_code == 403:
            raise RuxPermissionError(
                f"token endpoint {TOKEN_PATH} answered HTTP 403 for client id {self._client_id}; "
                "check that the API client is enabled in the Vectra UI"
            )
        if resp.status_code != 200:
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered HTTP {resp.status_code}; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            )
        self._store_token(self._token_body(resp), refreshed=False)

    async def _refresh(self, refresh_token: str) -> bool:
        """Try the refresh_token grant; False when the server rejects it (the caller falls back)."""
        url = self._base_url + TOKEN_PATH
        resp = await self._send(
            TOKEN_PATH,
            lambda: self._http.post(
                url, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
            ),
        )
        if resp.status_code != 200:
            log.info("refresh_token_rejected", detail="using client credentials", status=resp.status_code)
            return False
        try:
            self._store_token(self._token_body(resp), refreshed=True)
        except RuxResponseError:
            log.info("refresh_answer_unusable", detail="using client credentials")
            return False
        return True

    async def _renew(self) -> None:
        tok = self._token
        if (
            tok is not None
            and tok.refresh is not None
            and (tok.refresh_expires is None or self._clock() < tok.refresh_expires)
        ):
            if await self._refresh(tok.refresh):
                return
        await self._client_credentials()

    async def authenticate(self) -> None:
        """Get a fresh access token with the client credentials (raises RuxAuthError when rejected)."""
        async with self._lock:
            await self._client_credentials()

    async def _access_token(self, stale_generation: int | None = None) -> _Token:
        """A valid token; renew it when expiring, or when `stale_generation` was rejected with 401."""
        async with self._lock:
            tok = self._token
            if tok is None:
                await self._client_credentials()
            elif stale_generation is not None and tok.generation == stale_generation:
                await self._renew()
            elif self._clock() >= tok.access_expires:
                await self._renew()
            assert self._token is not None
            return self._token

    # --- API -----------------------------------------------------------------------------

    async def _get(self, spec: StreamSpec, path: str, params: dict[str, str]) -> httpx.Response:
        url = self._base_url + path
        stale: int | None = None
        for attempt in (1, 2):
            tok = await self._access_token(stale)
            headers = {"Authorization": f"Bearer {tok.access}"}
            resp = await self._send(path, lambda h=headers: self._http.get(url, params=params, headers=h))
            if resp.status_code == 401 and attempt == 1:
                log.info(
                    "api_unauthorized_retrying", detail="renewing the token and retrying once", endpoint=path
                )
                stale = tok.generation
                continue
            break
        if resp.status_code == 401:
            raise RuxAuthError(
                f"{path} answered HTTP 401 with a fresh token for stream {spec.key}; check the API client "
                f"in the Vectra UI and that BASE_URL {self._base_url} is the right tenant"
            )
        if resp.status_code == 403:
            raise RuxPermissionError(
                f"{path} answered HTTP 403: the API client {self._client_id} may not read stream {spec.key}; "
                f"give it the {spec.role} role in the Vectra UI (Manage > API Clients), or turn the stream off "
                f'with "scheduler": {{"{spec.stream}": null}}'
            )
        if resp.status_code != 200:
            snippet = resp.text[:200].replace("\n", " ")
            raise RuxResponseError(
                f"{path} answered HTTP {resp.status_code} for stream {spec.key}: {snippet}"
                + (
                    "; the API version may not support this stream, check api_version"
                    if resp.status_code == 404
                    else ""
                )
            )
        return resp

    def _parse_page(
        self, spec: StreamSpec, path: str, resp: httpx.Response
    ) -> tuple[list[dict[str, Any]], Any, int]:
        def bad(what: str) -> RuxResponseError:
            return RuxResponseError(
                f"bad response from {path} for stream {spec.key}: {what}; checkpoint kept"
            )

        try:
            body = _loads(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            ctype = resp.headers.get("Content-Type", "?")
            raise bad(
                f"body is not JSON ({type(exc).__name__}, Content-Type {ctype}, {len(resp.content)} bytes)"
            ) from None
        if not isinstance(body, dict):
            raise bad(f"expected a JSON object with 'events', got a JSON {type(body).__name__}")
        events = body.get("events")
        if not isinstance(events, list):
            raise bad(
                "'events' is missing or not a list"
                if events is None
                else f"'events' is a {type(events).__name__}, not a list"
            )
        for i, ev in enumerate(events):
            if not isinstance(ev, dict):
                raise bad(f"events[{i}] is a {type(ev).__name__}, not an object")
        nxt = body.get("next_checkpoint")
        if nxt is not None and not _is_int(nxt):
            raise bad(f"next_checkpoint {nxt!r} is not an integer")
        if "remaining_count" not in body:
            raise bad("'remaining_count' is missing")
        remaining = body["remaining_count"]
        if remaining is None:
            remaining = 0
        if not _is_int(remaining):
            raise bad(f"remaining_count {remaining!r} is not an integer")
        return events, nxt, remaining

    async def snapshot(self, spec: StreamSpec) -> Any:
        """GET a snapshot stream (health: one object; lockdown: a bare array); return the parsed JSON.

        Raises like `pages()`; a body that is not JSON is a RuxResponseError (the caller keeps its state).
        """
        path = api_path(spec, self._cfg.api_version)
        resp = await self._get(spec, path, {})
        try:
            return _loads(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            ctype = resp.headers.get("Content-Type", "?")
            raise RuxResponseError(
                f"bad response from {path} for stream {spec.key}: body is not JSON ({type(exc).__name__}, "
                f"Content-Type {ctype}, {len(resp.content)} bytes); nothing forwarded"
            ) from None

    async def probe(self, spec: StreamSpec) -> str:
        """One small request for `siemconn check` (event streams: limit=1). Returns what came back;
        raises RuxPermissionError on 403 (its message names the role to add) and RuxError otherwise."""
        path = api_path(spec, self._cfg.api_version)
        resp = await self._get(spec, path, probe_params(spec, self._cfg, self._now()))
        if spec.is_snapshot:
            try:
                body = _loads(resp.content)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise RuxResponseError(f"{path} answered HTTP 200 with a body that is not JSON") from None
            if spec.stream == "lockdown":
                if not isinstance(body, list):
                    raise RuxResponseError(f"{path} answered a JSON {type(body).__name__}, not an array")
                return f"HTTP 200, {len(body)} entit{'y' if len(body) == 1 else 'ies'} in lockdown"
            if not isinstance(body, dict):
                raise RuxResponseError(f"{path} answered a JSON {type(body).__name__}, not an object")
            return f"HTTP 200, health object with {len(body)} sections"
        events, _nxt, _remaining = self._parse_page(spec, path, resp)
        return f"HTTP 200, {len(events)} event{'' if len(events) == 1 else 's'} (limit=1)"

    async def pages(
        self, spec: StreamSpec, checkpoint: int | None, *, hold: asyncio.Lock | None = None
    ) -> AsyncIterator[Page]:
        """Yield the pages after `checkpoint` (None = first run, with the lookback window).

        Each page is yielded before the next one is requested. Raises RuxAuthError,
        RuxPermissionError, RuxRateLimitedError, RuxUnavailableError or RuxResponseError; pages
        yielded before the error stay valid.

        `hold`, if given, is acquired after a page's body has arrived and released when the caller asks
        for the next page (or closes the generator: use `contextlib.aclosing`). Streams that share one
        lock keep requests in flight concurrently but have only one parsed page alive at a time: a parsed
        page of 1,000 events is ~5 MB of Python objects, about 4x its JSON.
        """
        path = api_path(spec, self._cfg.api_version)
        params = build_params(spec, self._cfg, checkpoint, self._now())
        cursor: int | None = checkpoint
        request_from = checkpoint if checkpoint is not None else 0
        previous_ids: set[Any] = set()
        while True:
            resp = await self._get(spec, path, params)
            if hold is not None:
                await hold.acquire()
            try:
                events, nxt, remaining = self._parse_page(spec, path, resp)
                ids = [ev.get("id") for ev in events]
                del resp  # the parsed events are all that is kept of the body (peak memory)
                if previous_ids:
                    n_parsed = len(events)
                    events = [
                        ev for ev, i in zip(events, ids, strict=True) if i is None or i not in previous_ids
                    ]
                    if len(events) != n_parsed:
                        log.debug(
                            "page_overlap_dropped",
                            detail="events repeated from the previous page",
                            stream=spec.key,
                            count=n_parsed - len(events),
                        )
                int_ids = [i for i in ids if _is_int(i)]
                if nxt is None:
                    nxt = max(int_ids) + 1 if int_ids else cursor
                elif cursor is not None and nxt < cursor:
                    log.warning(
                        "checkpoint_moved_backwards",
                        detail="keeping ours",
                        stream=spec.key,
                        server=nxt,
                        kept=cursor,
                    )
                    nxt = cursor
                if nxt is not None and not _I64_MIN <= nxt <= _I64_MAX:
                    raise RuxResponseError(
                        f"bad response from {path} for stream {spec.key}: checkpoint {nxt} does not fit "
                        "64 bits and cannot be stored; checkpoint kept"
                    )
                advanced = nxt is not None and (cursor is None or nxt > cursor)
                if events or advanced:
                    if nxt is None or (cursor is None and not events and nxt <= 0):
                        pass  # first run with nothing: never commit a cursor that replays history
                    else:
                        if events:
                            self._metrics.events_fetched.labels(stream=spec.key).inc(len(events))
                        yield Page(spec=spec, events=events, next_checkpoint=nxt)
                        cursor = nxt
            finally:
                if hold is not None:
                    hold.release()
            if remaining <= 0:
                return
            if nxt is None or nxt <= request_from:
                raise RuxResponseError(
                    f"bad response from {path} for stream {spec.key}: remaining_count is {remaining} but "
                    f"next_checkpoint {nxt} does not move past from={request_from}; stopping this run"
                )
            previous_ids = set(int_ids)
            # drop this page's objects before the next request: the caller committed them already, and
            # keeping them alive while the next page is read and parsed doubles the peak memory per stream
            del events, ids, int_ids
            request_from = nxt
            params = {**params, "from": str(nxt)}
