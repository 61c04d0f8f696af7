"""The RUX source: an httpx client that pages through the event streams.

One `RuxClient` per process, shared by every stream. The token lifecycle is `siemconn.rux.token`, the
retry policy `siemconn.rux.retry`, and a page body's parsing and checks `siemconn.rux.page`; this module
keeps the requests and the cursor rules of paging. `pages()` is an async generator that yields
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
* An envelope that deviates from the documented shape does not fail its page (`siemconn.rux.envelope`):
  each kind of deviation is logged once per stream (``rux_envelope_deviation``) and counted in
  ``siemconn_api_envelope_deviations``; an ambiguous one ends this tick's paging after the page. Event
  ids sent as numeric strings count as their number for the plausibility rule.
* Bad events do not fail their page: an element of ``events`` that is not an object, and (when the
  parser rejects the body) each element that is not UTF-8 or not JSON, is yielded in ``Page.rejects``
  with its raw bytes, for the queue's quarantine (`siemconn.rux.salvage`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from siemconn import __version__
from siemconn.config import LIST_SNAPSHOT, Configuration, Credentials
from siemconn.errors import RuxAuthError, RuxPermissionError, RuxResponseError
from siemconn.events.transcode import EncodedEvents
from siemconn.logging import Redactor, get_logger
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.rux.answer import Answer, AnswerTooLarge, fetch, redirect_hint
from siemconn.rux.cursor import plausible_checkpoint
from siemconn.rux.envelope import Deviation, DeviationLog, string_ids
from siemconn.rux.page import (
    I64_MAX,
    I64_MIN,
    Page,
    is_int,
    loads_page,
    parse_page,
    reject_id,
    report_repeats,
)
from siemconn.rux.retry import Retrier, parse_retry_after
from siemconn.rux.streams import StreamSpec, api_path, build_params, probe_params
from siemconn.rux.token import TOKEN_PATH, Tokens

__all__ = ["Page", "RuxClient", "TOKEN_PATH", "parse_retry_after"]

log = get_logger("siemconn.rux")

_SNIPPET_CHARS = 200


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
        previous: RuxClient | None = None,
    ) -> None:
        self._base_url = credentials.base_url.rstrip("/")
        self._client_id = credentials.client_id
        secret = credentials.client_secret.get_secret_value()
        self._cfg = configuration
        self._metrics = metrics
        self._now = wall_clock
        self._on_secret = on_secret
        self._max_bytes = configuration.max_response_mb * 1024 * 1024
        self._redactor = Redactor([secret])
        self._deviations = DeviationLog(metrics)
        self._http_timeout = configuration.http_timeout
        self._owns_http = True
        self._http_taken = False
        self._http: httpx.AsyncClient
        if previous is not None and transport is None and previous._http_timeout == self._http_timeout:
            # a reload: the HTTP client (its TLS context and open API connection) is taken over, not
            # built again; a new one holds ~0.8 MB until the old one is collected (docs/performance.md)
            self._http = previous._http
            self._http_taken = True
            previous._owns_http = False
        else:
            self._http = httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(configuration.http_timeout),
                headers={"Accept": "application/json", "User-Agent": f"siemconn/{__version__}"},
                follow_redirects=False,
            )
        self._retrier = Retrier(
            base_url=self._base_url,
            http_timeout=configuration.http_timeout,
            metrics=metrics,
            sleep=sleep,
            rng=rng or random.Random(),
            rate_limit_tries=configuration.api_max_tries,
            unavailable_tries=unavailable_tries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            retry_after_default=retry_after_default,
            retry_after_cap=retry_after_cap,
        )
        self._tokens = Tokens(
            http=self._http,
            base_url=self._base_url,
            client_id=self._client_id,
            secret=secret,
            http_timeout=configuration.http_timeout,
            send=self._retrier.send,
            clock=clock,
            secret_seen=self._secret_seen,
        )

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def http_kept(self) -> bool:
        """True when this client took its HTTP client over from `previous` (a reload that kept it)."""
        return self._http_taken

    async def aclose(self) -> None:
        """Close the HTTP client, unless a newer RuxClient took it over (then it is that one's to close)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> RuxClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- secrets and tokens --------------------------------------------------------------

    def _secret_seen(self, value: str) -> None:
        self._redactor.add(value)
        if self._on_secret is not None:
            self._on_secret(value)

    def redact(self, text: str) -> str:
        """`text` without the client secret or any token this client saw, in any escaped or partial form."""
        return self._redactor.scrub_text(text)

    def adopt_token(self, old: RuxClient) -> bool:
        """Keep `old`'s valid token when BASE_URL and the credentials did not change (a reload); False when
        they did (the next request gets a fresh token)."""
        return self._tokens.adopt(old._tokens)

    async def authenticate(self) -> None:
        """Get a fresh access token with the client credentials (raises RuxAuthError when rejected)."""
        await self._tokens.authenticate()

    # --- API -----------------------------------------------------------------------------

    async def _get(self, spec: StreamSpec, path: str, params: dict[str, str]) -> Answer:
        """One page request (AnswerTooLarge when the answer exceeds max_response_mb)."""
        url = self._base_url + path
        stale: int | None = None
        for attempt in (1, 2):
            tok = await self._tokens.access_token(stale)
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

            resp = await self._retrier.send(path, request)
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
        hint = redirect_hint(resp, self._base_url, self.redact)
        if hint is not None:
            raise RuxResponseError(f"{path} answered a {hint}; stream {spec.key}")
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
            return loads_page(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            ctype = resp.headers.get("Content-Type", "?")
            raise RuxResponseError(
                f"bad response from {path} for stream {spec.key}: body is not JSON ({type(exc).__name__}, "
                f"Content-Type {ctype}, {len(resp.content)} bytes); nothing forwarded"
            ) from None

    async def probe(self, spec: StreamSpec) -> str:
        """One small request for `siemconn check` (event streams: limit=1). Returns what came back;
        raises RuxPermissionError on 403 (its message names the role to add) and RuxError otherwise.
        Under api_version v3.5, which pulls some streams at v3.4, it names the endpoint that answered
        and the v3.5 parameters sent."""
        path = api_path(spec, self._cfg.api_version)
        params = probe_params(spec, self._cfg, self._now())
        resp = await self._get_capped(spec, path, params)
        where = f" from {path}" if self._cfg.api_version == "v3.5" else ""
        if spec.is_snapshot:
            try:
                body = loads_page(resp.content)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise RuxResponseError(f"{path} answered HTTP 200 with a body that is not JSON") from None
            if spec.snapshot == LIST_SNAPSHOT:
                if not isinstance(body, list):
                    raise RuxResponseError(f"{path} answered a JSON {type(body).__name__}, not an array")
                return f"HTTP 200{where}, {len(body)} entit{'y' if len(body) == 1 else 'ies'} in lockdown"
            if not isinstance(body, dict):
                raise RuxResponseError(f"{path} answered a JSON {type(body).__name__}, not an object")
            return f"HTTP 200{where}, health object with {len(body)} sections"
        events = parse_page(spec, path, resp).events
        extra = "".join(f", {k}={params[k]}" for k in ("ordering", "size") if k in params)
        return f"HTTP 200{where}, {len(events)} event{'' if len(events) == 1 else 's'} (limit=1{extra})"

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
                parsed = parse_page(spec, path, resp)
                events, server_nxt, remaining, rejects = parsed[:4]
                if parsed.deviations:
                    self._deviations.report(spec.key, path, parsed.deviations)
                ids: list[Any] = (
                    events.ids if isinstance(events, EncodedEvents) else [ev.get("id") for ev in events]
                )
                del resp  # the parsed events are all that is kept of the body (peak memory)
                if previous_ids:
                    keep = [i is None or i not in previous_ids for i in ids]
                    if not all(keep):
                        events = (
                            events.select(keep)
                            if isinstance(events, EncodedEvents)
                            else [ev for ev, k in zip(events, keep, strict=True) if k]
                        )
                        report_repeats(spec, previous_ids, ids, self._metrics)
                int_ids: list[int] = [i for i in ids if is_int(i)]
                if len(int_ids) < len(ids):
                    numbered, dev = string_ids(ids)
                    int_ids += numbered
                    if dev is not None:
                        self._deviations.report(spec.key, path, (dev,))
                int_ids += [i for i in map(reject_id, rejects) if i is not None]
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
                if nxt is not None and not I64_MIN <= nxt <= I64_MAX:
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
                # the API says more remain but gives no way past `from`: asking again now would get the
                # same page. What it sent is queued; this tick's paging ends, and the next tick asks from
                # the stored checkpoint again (no loop, no failed pull every tick). Logged once per stream.
                stuck = Deviation(
                    "remaining_count:no_progress",
                    f"{remaining} with next_checkpoint {nxt} at from={request_from}",
                    "paging ends for this tick; the next tick asks again from the stored checkpoint",
                    True,
                )
                self._deviations.report(spec.key, path, (stuck,))
                return
            previous_ids = set(int_ids)
            # drop this page's objects before the next request: the caller committed them already, and
            # keeping them alive while the next page is read and parsed doubles the peak memory per stream
            del events, ids, int_ids
            request_from = nxt
            params = {**params, "from": str(nxt)}
