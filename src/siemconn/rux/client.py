"""The RUX source: an httpx client with the OAuth2 token lifecycle, bounded retries and paging.

One `RuxClient` per process, shared by every stream. `pages()` is an async generator that yields
one `Page` per API page and requests the next page only when the caller resumes it, so the caller
commits each page (events + next_checkpoint) before the next request. The client never stores a
checkpoint.

Cursor rules (see `Page.next_checkpoint`):

* A page's ``next_checkpoint`` is the server's value, never lower than the cursor the page was
  requested with. ``null`` with events gives ``max(event id) + 1``; ``null`` without events keeps
  the cursor.
* A ``next_checkpoint`` the page cannot justify is lowered (see `siemconn.rux.cursor`): a page with
  events stores at most ``max(event id) + 1``; a page without ids moves at most ``limit`` past its
  ``from``. Each such clamp logs ``implausible_next_checkpoint`` with both values.
* An empty page is yielded only when it moves the checkpoint forward. A first run (no input
  checkpoint) that finds nothing yields nothing, so the next run is again a first run with its own
  lookback window: it never commits ``0``, which would replay the whole tenant history.
* The first run keeps ``event_timestamp_gte`` on every page of that run (the server ANDs it with
  ``from``); later runs send only ``from``.
* Within one run an event whose ``id`` was on the previous page is dropped (servers that return
  ``next_checkpoint = last id`` repeat one event), counted and logged; across runs the caller dedupes.
* A first run whose answer has events but no usable checkpoint (``null`` and no integer ids) yields
  them with ``next_checkpoint`` None: they are queued, and the key keeps no checkpoint.
* Bad events do not fail their page: an element of ``events`` that is not an object, and (when the
  parser rejects the body) each element that is not UTF-8 or not JSON, is yielded in ``Page.rejects``
  with its raw bytes, for the queue's quarantine (`siemconn.rux.salvage`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeGuard

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
from siemconn.logging import Redactor, get_logger
from siemconn.ops.gctune import parse_paused
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.queue.quarantine import NOT_AN_OBJECT, Rejected, raw_json
from siemconn.rux.answer import Answer, AnswerTooLarge, fetch
from siemconn.rux.cursor import plausible_checkpoint
from siemconn.rux.salvage import salvage_page
from siemconn.rux.streams import StreamSpec, api_path, build_params, probe_params

__all__ = ["Page", "RuxClient", "TOKEN_PATH", "parse_retry_after"]

log = get_logger("siemconn.rux")

TOKEN_PATH = "/oauth2/token"
_EARLY_RENEW_MAX = 100.0  # renew the access token 100 s early, or 10 % of its lifetime if smaller
TOKEN_MAX_BYTES = 64 * 1024  # a token answer is a few hundred bytes
_MAX_LIFETIME = 10 * 366 * 86400  # seconds; a longer expires_in is not a lifetime but garbage
_MAX_TOKEN_CHARS = 8192
# what may follow "Bearer " in an HTTP header: printable ASCII without spaces (RFC 6750 b64token and more)
_BEARER_RE = re.compile(r"^[\x21-\x7e]+$")
_SNIPPET_CHARS = 200


@dataclass(frozen=True)
class Page:
    """One API page: the events to commit, the checkpoint to store with them (None: none usable on a
    first run), and the elements to quarantine instead of queue."""

    spec: StreamSpec
    events: list[dict[str, Any]]
    next_checkpoint: int | None
    rejects: list[Rejected] = field(default_factory=list)


@dataclass
class _Token:
    access: str
    access_expires: float  # monotonic seconds: renew from here on
    hard_expires: float  # monotonic seconds: the server's end of life of the token
    refresh: str | None
    refresh_expires: float | None  # monotonic; None = unknown (try it)
    generation: int


# A number token of 19+ digits may be an integer beyond 64 bits, which orjson turns into a lossy float:
# such pages go to the json module, which keeps arbitrary-precision ints. The scan maps every ASCII digit
# to "0" and everything else to " " and looks for 19 zeros (the matches of re's rb"\d{19}", at ~1.5 us
# per event instead of ~18). The run may belong to a number token if the bytes before it that can be part
# of one ("-", "+", ".", "e", "E", digits) start where a JSON value can start (after ":", "[", ",",
# whitespace, or at the start of the document); otherwise it is inside a string (hashes, serial numbers:
# a hex hash's "...de6e6306406942102430844" ends in a letter before the "6e") and does not need the slow
# parser. Erring on the side of the json module only costs speed.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
_NUMBER_BYTES = frozenset(b"0123456789-+.eE")
_VALUE_START = frozenset(b":[, \t\r\n")


def _has_long_digit_run(content: bytes) -> bool:
    """True if a run of 19+ ASCII digits in content may be (part of) a JSON number token."""
    mapped = content.translate(_DIGITS_AS_ZERO)
    i = mapped.find(_NINETEEN_DIGITS)
    while i >= 0:
        j = i - 1
        while j >= 0 and content[j] in _NUMBER_BYTES:
            j -= 1
        if j < 0 or content[j] in _VALUE_START:
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


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _reject_id(r: Rejected) -> int | None:
    """The integer id of a quarantined element, when it had one (it still moves a null checkpoint)."""
    if r.event_id is None:
        return None
    try:
        v = json.loads(r.event_id)
    except ValueError:
        return None
    return v if _is_int(v) else None


def _early(lifetime: float) -> float:
    return min(_EARLY_RENEW_MAX, 0.1 * lifetime)


def _short(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message (never a huge repr)."""
    if _is_int(value) and abs(value) > 10**18:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _lifetime(body: dict[str, Any], field: str) -> float | None:
    """A token lifetime in seconds from `field` of a token answer; None when absent.

    Raises RuxResponseError for anything but a finite number of seconds in (0, 10 years]."""
    v = body.get(field)
    if v is None:
        return None
    ok = (_is_int(v) and 0 < v <= _MAX_LIFETIME) or (
        isinstance(v, float) and math.isfinite(v) and 0 < v <= _MAX_LIFETIME
    )
    if not ok:
        raise RuxResponseError(
            f"token endpoint {TOKEN_PATH} answered an unusable {field} ({_short(v)}); "
            f"expected seconds 1-{_MAX_LIFETIME}; the next scheduled run retries"
        )
    return float(v)


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
        self._max_bytes = configuration.max_response_mb * 1024 * 1024
        self._redactor = Redactor([self._secret])
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
        d: float = min(self._backoff_cap, self._backoff_base * float(2**attempt))
        jitter: float = self._rng.random()
        return d / 2 + jitter * d / 2

    async def _send(self, what: str, request: Callable[[], Awaitable[Answer]]) -> Answer:
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
                reason = f"timed out after {self._cfg.http_timeout:g} s ({type(exc).__name__})"
            except TimeoutError:
                self._count("timeout")
                reason = f"no complete answer within http_timeout {self._cfg.http_timeout:g} s"
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

    # --- tokens --------------------------------------------------------------------------

    def _secret_seen(self, value: str) -> None:
        self._redactor.add(value)
        if self._on_secret is not None:
            self._on_secret(value)

    def redact(self, text: str) -> str:
        """`text` without the client secret or any token this client saw, in any escaped or partial form."""
        return self._redactor.scrub_text(text)

    def _store_token(self, body: Any, *, refreshed: bool) -> None:
        """Validate a token answer and keep it; RuxResponseError (no secret in it) for anything malformed."""
        bad = f"token endpoint {TOKEN_PATH} answered 200 with"
        if not isinstance(body, dict):
            raise RuxResponseError(
                f"{bad} a JSON {type(body).__name__} instead of an object; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            )
        for name in ("access_token", "refresh_token"):  # mask them before anything else can print them
            if isinstance(body.get(name), str) and body[name]:
                self._secret_seen(body[name])
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            got = "no access_token" if access is None else f"an access_token of type {type(access).__name__}"
            raise RuxResponseError(
                f"{bad} {got} (keys {sorted(str(k) for k in body)[:10]}); "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            )
        if len(access) > _MAX_TOKEN_CHARS or not _BEARER_RE.match(access):
            raise RuxResponseError(
                f"{bad} an access_token that cannot be sent as a bearer token ({len(access)} characters, "
                "expected printable ASCII without spaces); the next scheduled run retries"
            )
        refresh = body.get("refresh_token")
        if refresh is not None and not isinstance(refresh, str):
            raise RuxResponseError(
                f"{bad} a refresh_token of type {type(refresh).__name__}; expected a string"
            )
        lifetime = _lifetime(body, "expires_in")
        if lifetime is None:
            lifetime = 1800.0
        rexp = _lifetime(body, "refresh_expires_in")
        now = self._clock()
        old = self._token
        refresh_expires: float | None
        if not refresh:
            refresh = old.refresh if (refreshed and old is not None) else None
            refresh_expires = old.refresh_expires if (refreshed and old is not None) else None
        elif rexp is not None:
            refresh_expires = now + rexp - _early(rexp)
        elif refreshed and old is not None and old.refresh == refresh:
            refresh_expires = old.refresh_expires
        else:
            refresh_expires = None
        self._generation += 1
        self._token = _Token(
            access=access,
            access_expires=now + lifetime - _early(lifetime),
            hard_expires=now + lifetime,
            refresh=refresh,
            refresh_expires=refresh_expires,
            generation=self._generation,
        )
        log.info(
            "access_token_refreshed" if refreshed else "access_token_obtained",
            expires_in=int(lifetime),
            has_refresh_token=refresh is not None,
        )

    def _token_body(self, resp: Answer) -> Any:
        try:
            return _loads(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered HTTP {resp.status_code} with a body that is {why}; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            ) from None

    async def _post_token(self, data: dict[str, str], auth: tuple[str, str] | None) -> Answer:
        url = self._base_url + TOKEN_PATH

        def request() -> Awaitable[Answer]:
            kwargs: dict[str, Any] = {"data": data}
            if auth is not None:
                kwargs["auth"] = auth
            return fetch(
                self._http,
                "POST",
                url,
                deadline=self._cfg.http_timeout,
                max_bytes=TOKEN_MAX_BYTES,
                **kwargs,
            )

        try:
            return await self._send(TOKEN_PATH, request)
        except AnswerTooLarge as exc:
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered more than {exc.cap} bytes; a token answer is a few "
                f"hundred bytes, check that BASE_URL {self._base_url} is the Vectra portal URL"
            ) from None

    async def _client_credentials(self) -> None:
        resp = await self._post_token({"grant_type": "client_credentials"}, (self._client_id, self._secret))
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
        resp = await self._post_token({"grant_type": "refresh_token", "refresh_token": refresh_token}, None)
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
        """A valid token; renew it when expiring, or when `stale_generation` was rejected with 401.

        While another stream renews, a token that has not reached its end of life is used as is; a caller
        that needs the renewal waits for it at most http_timeout, then gives up this run
        (RuxUnavailableError), so one slow token request never blocks the other streams beyond that.
        """
        tok = self._token
        if (
            tok is not None
            and stale_generation is None
            and self._lock.locked()
            and self._clock() < tok.hard_expires
        ):
            return tok
        try:
            async with asyncio.timeout(self._cfg.http_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise RuxUnavailableError(
                f"the access token renewal at {TOKEN_PATH} did not finish within http_timeout "
                f"{self._cfg.http_timeout:g} s; this pull gives up, the next scheduled run retries"
            ) from None
        try:
            tok = self._token
            if tok is None:
                await self._client_credentials()
            elif stale_generation is not None and tok.generation == stale_generation:
                await self._renew()
            elif self._clock() >= tok.access_expires:
                await self._renew()
            assert self._token is not None
            return self._token
        finally:
            self._lock.release()

    # --- API -----------------------------------------------------------------------------

    async def _get(self, spec: StreamSpec, path: str, params: dict[str, str]) -> Answer:
        """One page request (AnswerTooLarge when the answer exceeds max_response_mb)."""
        url = self._base_url + path
        stale: int | None = None
        for attempt in (1, 2):
            tok = await self._access_token(stale)
            headers = {"Authorization": f"Bearer {tok.access}"}

            def request(h: dict[str, str] = headers) -> Awaitable[Answer]:
                return fetch(
                    self._http,
                    "GET",
                    url,
                    deadline=self._cfg.http_timeout,
                    max_bytes=self._max_bytes,
                    params=params,
                    headers=h,
                )

            resp = await self._send(path, request)
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
            # redact before cutting: a token cut in half by the cut would no longer match
            snippet = " ".join(self.redact(resp.text).split())[:_SNIPPET_CHARS]
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
        self, spec: StreamSpec, path: str, resp: Answer
    ) -> tuple[list[dict[str, Any]], Any, int, list[Rejected]]:
        def bad(what: str) -> RuxResponseError:
            return RuxResponseError(
                f"bad response from {path} for stream {spec.key}: {what}; checkpoint kept"
            )

        rejects: list[Rejected] = []
        try:
            body = _loads(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            salvaged = salvage_page(resp.content, _loads)  # the slow path: split it event by event
            if salvaged is None:
                ctype = resp.headers.get("Content-Type", "?")
                raise bad(
                    f"body is not JSON ({type(exc).__name__}, Content-Type {ctype}, {len(resp.content)} bytes)"
                ) from None
            body, rejects = salvaged.envelope, salvaged.rejects
            log.warning(
                "rux_page_salvaged",
                stream=spec.key,
                error=f"{type(exc).__name__}: {exc}"[:200],
                events=len(salvaged.events),
                quarantined=len(rejects),
                detail="the page did not parse as a whole; its good events are queued, the others quarantined",
            )
        if not isinstance(body, dict):
            raise bad(f"expected a JSON object with 'events', got a JSON {type(body).__name__}")
        events = body.get("events")
        if not isinstance(events, list):
            raise bad(
                "'events' is missing or not a list"
                if events is None
                else f"'events' is a {type(events).__name__}, not a list"
            )
        if not all(isinstance(ev, dict) for ev in events):
            for i, ev in enumerate(events):
                if not isinstance(ev, dict):
                    detail = f"events[{i}] is a JSON {type(ev).__name__}, not an object"
                    rejects.append(Rejected(raw_json(ev), NOT_AN_OBJECT, detail))
            events = [ev for ev in events if isinstance(ev, dict)]
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
        return events, nxt, remaining, rejects

    def _report_repeats(self, spec: StreamSpec, previous_ids: set[Any], ids: list[Any]) -> None:
        """Count and log the events dropped because the previous page of this run already had them."""
        repeated = [i for i in ids if i is not None and i in previous_ids]
        ints = [i for i in repeated if _is_int(i)]
        log.info(
            "duplicate_events_dropped",
            stream=spec.key,
            count=len(repeated),
            first_id=min(ints) if ints else None,
            last_id=max(ints) if ints else None,
            detail="repeated from the previous page of this run",
        )
        self._metrics.events_duplicate.labels(stream=spec.key).inc(len(repeated))

    async def _get_capped(self, spec: StreamSpec, path: str, params: dict[str, str]) -> Answer:
        """`_get` for requests that cannot ask for less: a too-large answer is a RuxResponseError."""
        try:
            return await self._get(spec, path, params)
        except AnswerTooLarge:
            log.error("api_answer_too_large", stream=spec.key, max_response_mb=self._cfg.max_response_mb)
            raise RuxResponseError(
                f"{path} answered more than max_response_mb {self._cfg.max_response_mb} MB for stream "
                f"{spec.key}; raise max_response_mb; nothing forwarded"
            ) from None

    async def snapshot(self, spec: StreamSpec) -> Any:
        """GET a snapshot stream (health: one object; lockdown: a bare array); return the parsed JSON.

        Raises like `pages()`; a body that is not JSON is a RuxResponseError (the caller keeps its state).
        """
        path = api_path(spec, self._cfg.api_version)
        resp = await self._get_capped(spec, path, {})
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
        resp = await self._get_capped(spec, path, probe_params(spec, self._cfg, self._now()))
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
        events, _nxt, _remaining, _rejects = self._parse_page(spec, path, resp)
        return f"HTTP 200, {len(events)} event{'' if len(events) == 1 else 's'} (limit=1)"

    async def pages(
        self, spec: StreamSpec, checkpoint: int | None, *, hold: asyncio.Lock | None = None
    ) -> AsyncGenerator[Page, None]:
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
        limit = self._cfg.page_size
        while True:
            try:
                resp = await self._get(spec, path, params)
            except AnswerTooLarge as exc:
                if limit <= 1:
                    log.error(
                        "api_answer_too_large",
                        stream=spec.key,
                        checkpoint=request_from,
                        limit=limit,
                        max_response_mb=self._cfg.max_response_mb,
                        fix="raise max_response_mb (the process needs about 25 times that in memory)",
                    )
                    raise RuxResponseError(
                        f"{path} answered more than max_response_mb {self._cfg.max_response_mb} MB for "
                        f"stream {spec.key} at checkpoint {request_from} even with limit=1: one event is "
                        "larger than that; raise max_response_mb to fetch it; checkpoint kept"
                    ) from None
                smaller = max(1, limit // 4)
                log.warning(
                    "api_answer_too_large",
                    stream=spec.key,
                    checkpoint=request_from,
                    limit=limit,
                    retry_limit=smaller,
                    max_response_mb=self._cfg.max_response_mb,
                    bytes_seen=exc.seen,
                )
                limit = smaller
                params = {**params, "limit": str(limit)}
                continue
            if hold is not None:
                await hold.acquire()
            try:
                events, server_nxt, remaining, rejects = self._parse_page(spec, path, resp)
                ids = [ev.get("id") for ev in events]
                del resp  # the parsed events are all that is kept of the body (peak memory)
                if previous_ids:
                    n_parsed = len(events)
                    events = [
                        ev for ev, i in zip(events, ids, strict=True) if i is None or i not in previous_ids
                    ]
                    if len(events) != n_parsed:
                        self._report_repeats(spec, previous_ids, ids)
                int_ids: list[int] = [i for i in ids if _is_int(i)]
                int_ids += [i for i in map(_reject_id, rejects) if i is not None]
                if server_nxt is not None and cursor is not None and server_nxt < cursor:
                    log.warning(
                        "checkpoint_moved_backwards",
                        detail="keeping ours",
                        stream=spec.key,
                        server=server_nxt,
                        kept=cursor,
                    )
                rule = plausible_checkpoint(
                    server_nxt,
                    cursor=cursor,
                    request_from=request_from,
                    limit=limit,
                    max_id=max(int_ids) if int_ids else None,
                )
                nxt = rule.value
                if rule.clamped_from is not None:
                    log.warning(
                        "implausible_next_checkpoint",
                        stream=spec.key,
                        server=rule.clamped_from,
                        kept=nxt,
                        allowed_at_most=rule.bound,
                        events=len(ids),
                        reason="a page stores at most its last event id + 1 (an empty page: its limit)",
                    )
                if nxt is not None and not _I64_MIN <= nxt <= _I64_MAX:
                    raise RuxResponseError(
                        f"bad response from {path} for stream {spec.key}: checkpoint {nxt} does not fit "
                        "64 bits and cannot be stored; checkpoint kept"
                    )
                advanced = nxt is not None and (cursor is None or nxt > cursor)
                if events or rejects or advanced:
                    if nxt is None:
                        # a first run's events without a usable checkpoint: queue them, store no cursor
                        log.warning(
                            "rux_checkpoint_unknown",
                            stream=spec.key,
                            events=len(events) + len(rejects),
                            detail="the answer has no next_checkpoint and no integer event ids; the events "
                            "are queued and the next run starts again from the lookback window",
                        )
                        yield Page(spec=spec, events=events, next_checkpoint=None, rejects=rejects)
                    elif cursor is None and not events and not rejects and nxt <= 0:
                        pass  # first run with nothing: never commit a cursor that replays history
                    else:
                        if events:
                            self._metrics.events_fetched.labels(stream=spec.key).inc(len(events))
                        yield Page(spec=spec, events=events, next_checkpoint=nxt, rejects=rejects)
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
