"""A fake Vectra RUX tenant: a real HTTP server for tests and `make demo`.

In-process::

    fake = FakeRux(seed_detections=10_000).start()   # or: with FakeRux(...) as fake:
    fake.url, fake.port, fake.append("detections", 5), fake.add_fault(Fault(path="detections", status=429))
    fake.stop()

CLI (prints one line ``fake RUX listening on http://HOST:PORT`` when ready, runs until SIGTERM/SIGINT)::

    python -m siemconn.devtools.fake_rux --port 0 --seed-detections 1000 --generate-interval 5

Behaviour (see the RUX API notes, section 9):

* ``POST /oauth2/token``: client_credentials with HTTP Basic (body credentials accepted too);
  refresh_token with or without Basic. Bad credentials or an expired refresh token -> 401
  "reauthenticating"; an unknown refresh token -> 400 "Invalid refresh token".
* ``GET /api/v3.3|v3.4/events/{audits,detections,entity_scoring}`` and ``/api/v3.5/events/detections``
  (v3.5 serves no other stream: 404), with or without a trailing slash; ``Bearer`` (any case) required
  -> 401 ``{"detail": "Unauthorized"}``. v3.5 detections take ``size=regular|detailed`` (another value:
  400; absent: regular) and ``type=account,host``; ``size=detailed`` adds the context of
  `siemconn.devtools.events.detailed`.
* ``GET /api/v3.3|v3.4/health`` (one object, fresh ``updated_at`` per call) and
  ``GET /api/v3.3|v3.4/lockdown`` (a bare array of the entities in lockdown, no cursor); roles: health
  needs Auditor, lockdown Read-Only. Entities are locked and unlocked over time with
  ``generate_interval`` (see `siemconn.devtools.snapshots`); faults apply to these paths like the others.
* One auto-incrementing id sequence per stream. account and host entity_scoring events share the
  entity_scoring sequence and are filtered by the required ``type``, so each type's ids have gaps.
* Pages are in id order unless ``ordering`` says otherwise (``event_timestamp`` sorts by time, ties by
  id; knob ``default_ordering`` is the order without the parameter, ``event_timestamp`` as the OpenAPI
  documents it). ``next_checkpoint`` is always the page's largest id + 1, so a time-ordered page over
  out-of-order timestamps skips ids, as the real API would.
* ``id >= from`` AND ``gte <= event_timestamp <= lte`` AND stream filters; ``limit`` default 500,
  max 1000 (clamped, or 400 with ``limit_over_max="error"``); ``next_checkpoint = last id + 1``
  (``last id`` with ``overlap=True``); an empty page answers ``next_checkpoint = from`` (knob
  ``empty_next_checkpoint``: ``from`` | ``head`` | ``null``).
* Control (no auth): ``POST /_fake/events?stream=detections&count=N`` (stream ``all`` for every
  stream), ``POST /_fake/faults`` (a JSON object or list, fields of `Fault`), ``DELETE
  /_fake/faults``, ``POST /_fake/revoke-tokens[?refresh=true]``, ``POST /_fake/config`` (JSON
  knobs of `Knobs`), ``GET /_fake/state``, ``GET /_fake/ids?stream=...&type=...``,
  ``GET /_fake/requests?limit=N``, ``POST /_fake/lockdown?action=lock|unlock|extend&type=host&entity_id=N``
  (``name``, ``seconds`` optional).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import dataclasses
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from siemconn.devtools.events import STREAM_ENDPOINTS, EventFactory, GeneratedEvent
from siemconn.devtools.snapshots import Lockdowns, health_body

__all__ = [
    "API_VERSIONS",
    "FakeRux",
    "Fault",
    "INVALID_REFRESH_TEXT",
    "Knobs",
    "REAUTH_TEXT",
    "RequestRecord",
    "main",
    "parse_timestamp",
]

REAUTH_TEXT = "Authentication Error. Please try reauthenticating using API client credentials."
INVALID_REFRESH_TEXT = "Invalid refresh token. Please reauthenticate using client credentials and try again."
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "v3.3": STREAM_ENDPOINTS,
    "v3.4": STREAM_ENDPOINTS,
    "v3.5": ("detections",),
}
SNAPSHOT_VERSIONS: tuple[str, ...] = ("v3.3", "v3.4")
_ROLE_OF = {
    "audits": "Auditor",
    "detections": "Read-Only",
    "entity_scoring": "Read-Only",
    "health": "Auditor",
    "lockdown": "Read-Only",
}
_STREAM_ALIASES = {
    "audit": "audits",
    "audits": "audits",
    "detections": "detections",
    "entity_scoring": "entity_scoring",
    "entity": "entity_scoring",
}


@dataclass
class Fault:
    """A fault applied to the next `count` requests whose path contains `path` ("" = any API/token path)."""

    path: str = ""
    status: int | None = 500  # None: no error status (use with delay / stall / drop)
    count: int = 1
    retry_after: float | None = None  # Retry-After header (seconds) on the error response
    location: str | None = None  # Location header on the error response (a redirect: status 302)
    delay: float = 0.0  # seconds before the response headers
    stall: float = 0.0  # seconds between the first and second half of the body
    drop: bool = False  # close the connection without a response
    html: bool = False  # error body as HTML instead of JSON
    skip: int = 0  # let this many matching requests pass first
    body: str | None = None  # answer with exactly this body (status: `status`, or 200 when None)
    content_type: str = "application/json"  # Content-Type of `body`
    drip: float = 0.0  # seconds between single body bytes (a body dripped byte by byte)
    pad: int = 0  # with `body`: "@PAD@" in it becomes this many "x" bytes, streamed (a huge answer)
    no_length: bool = False  # with `body`: no Content-Length, the body ends when the connection closes
    # with `body`: "@TOKEN@" becomes the request's bearer token (an error body echoing the credential)

    @classmethod
    def from_json(cls, obj: Any) -> Fault:
        if not isinstance(obj, dict):
            raise ValueError("a fault is a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(obj) - names
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; expected {sorted(names)}")
        return cls(**obj)


@dataclass
class Knobs:
    """Behaviour switches of the fake tenant (all settable through POST /_fake/config)."""

    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    token_expires_in: int = 21600
    refresh_expires_in: int = 86400
    token_type: str = "Bearer"
    issue_refresh_token: bool = True
    rotate_refresh_token: bool = False
    reject_refresh: int | None = None  # 400 or 401: every refresh grant is rejected with that status
    require_auth: bool = True
    roles: list[str] | None = None  # None: every stream allowed; else e.g. ["Read-Only"] -> audits 403
    empty_next_checkpoint: str = "from"  # from | head | null
    overlap: bool = False  # next_checkpoint = last id: the next page repeats one event
    limit_over_max: str = "clamp"  # clamp | error
    include_score_decreases_default: bool = False
    include_triaged_default: bool | None = None  # None: no filtering unless the client asks
    include_info_category_default: bool | None = None
    default_ordering: str = "id"  # the order without an `ordering` parameter: id | event_timestamp
    # envelope deviations, comma-separated (the events stay valid): no_remaining, no_checkpoint,
    # string_numbers, float_numbers, bool_checkpoint, text_checkpoint, negative_remaining, extra_keys,
    # renamed ("results"), wrapped ({"data": {...}}), bare (a JSON array of the events), camel_case
    # (nextCheckpoint, remainingCount)
    envelope: str = ""


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake answered (for tests)."""

    method: str
    path: str
    params: dict[str, str]
    status: int  # 0 = dropped
    grant_type: str | None = None
    basic_auth: bool = False


class _BadRequest(Exception):
    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(str(body))
        self.body = body
        self.status = status


def _drf_error(field_name: str, message: str) -> dict[str, Any]:
    return {field_name: message, "_meta": {"message": "Invalid field(s) found", "level": "error"}}


def parse_timestamp(value: str) -> float:
    """Lenient ISO-8601 (Z, offsets, fractions, date only; naive = UTC) or epoch seconds -> epoch seconds."""
    v = value.strip()
    if not v:
        raise ValueError("empty")
    try:
        return float(v)
    except ValueError:
        pass
    if v[-1] in "zZ":
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_bool(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise _BadRequest(
        _drf_error(name, f"Invalid value given for parameter '{name}'. Valid values: true, false.")
    )


class _View:
    """The events of one stream matching one filter combination, extended lazily (append-only)."""

    __slots__ = ("pred", "events", "ids", "ts", "upto", "ts_sorted")

    def __init__(self, pred: Callable[[GeneratedEvent], bool]) -> None:
        self.pred = pred
        self.events: list[GeneratedEvent] = []
        self.ids: list[int] = []
        self.ts: list[float] = []
        self.upto = 0
        self.ts_sorted = True

    def extend(self, source: list[GeneratedEvent]) -> None:
        for ev in source[self.upto :]:
            if self.pred(ev):
                if self.ts and ev.ts < self.ts[-1]:
                    self.ts_sorted = False
                self.events.append(ev)
                self.ids.append(ev.id)
                self.ts.append(ev.ts)
        self.upto = len(source)


class FakeRux:
    """The fake tenant: event store, tokens, faults and the HTTP server around them.

    `lean`: events keep only their documents, not their rendered bodies (a detection's two bodies are
    ~17 KB), rendered for each page instead: slower to serve, but a soak's million events fit in memory."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed_audit: int = 0,
        seed_detections: int = 0,
        seed_entity: int = 0,
        seed_lockdown: int = 0,
        seed_span_seconds: float = 6 * 3600,
        seed: int = 0,
        first_id: int = 1,
        tenant_url: str = "https://demo.uw2.portal.vectra.ai",
        generate_interval: float | None = None,
        generate_count: int = 3,
        lean: bool = False,
        faults: Iterable[Fault] = (),
        **knobs: Any,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.knobs = Knobs(**knobs)
        self._lock = threading.RLock()
        self._factory = EventFactory(seed, tenant_url)
        self.lockdowns = Lockdowns(seed)
        self._health_rng = random.Random(seed)
        self._events: dict[str, list[GeneratedEvent]] = {s: [] for s in STREAM_ENDPOINTS}
        self._next_id: dict[str, int] = dict.fromkeys(STREAM_ENDPOINTS, first_id)
        self._views: dict[tuple[Any, ...], _View] = {}
        self._faults: list[Fault] = list(faults)
        self._access: dict[str, float] = {}  # token -> monotonic expiry
        self._refresh: dict[str, float] = {}
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)
        self._counters: Counter[str] = Counter()
        self.tokens_issued = 0
        self.tokens_refreshed = 0
        self.refresh_rejected = 0
        self._issued: list[str] = []  # every access and refresh token ever issued (secret-scan tests)
        self._generate_interval = generate_interval
        self._generate_count = generate_count
        self._lean = lean
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        now = time.time()
        for stream, n in (
            ("audits", seed_audit),
            ("detections", seed_detections),
            ("entity_scoring", seed_entity),
        ):
            if n > 0:
                span = max(0.0, seed_span_seconds)
                self.append(stream, n, timestamps=[now - span + span * (i + 1) / n for i in range(n)])
        for i in range(seed_lockdown):
            self.lockdowns.lock("host" if i % 2 == 0 else "account", now=now - 600 * (seed_lockdown - i))

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeRux is not started")
        return int(self._server.server_address[1])

    @property
    def bound_host(self) -> str:
        """The address the listening socket is bound to (what a test of "local only" checks)."""
        if self._server is None:
            raise RuntimeError("FakeRux is not started")
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeRux:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer((self.host, self._requested_port), handler)
        server.daemon_threads = True
        self._server = server
        t = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-rux-http", daemon=True
        )
        t.start()
        self._threads.append(t)
        if self._generate_interval:
            g = threading.Thread(target=self._generate_loop, name="fake-rux-generator", daemon=True)
            g.start()
            self._threads.append(g)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> FakeRux:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeRux:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def _generate_loop(self) -> None:
        assert self._generate_interval is not None
        while not self._stop.wait(self._generate_interval):
            for stream in STREAM_ENDPOINTS:
                self.append(stream, self._generate_count)
            self.lockdowns.churn()

    # --- control -------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        count: int,
        *,
        timestamps: list[float] | None = None,
        entity_type: str | None = None,
    ) -> list[int]:
        """Append `count` generated events to a stream (timestamps default to now); return their ids."""
        stream = _STREAM_ALIASES.get(stream, stream)
        if stream not in self._events:
            raise ValueError(f"unknown stream {stream!r}; expected one of {', '.join(STREAM_ENDPOINTS)}")
        now = time.time()
        with self._lock:
            out: list[int] = []
            for i in range(count):
                eid = self._next_id[stream]
                self._next_id[stream] = eid + 1
                ts = timestamps[i] if timestamps is not None else now
                ev = self._factory.make(stream, eid, ts, entity_type)
                if not self._lean:  # pre-render: pages are served by concatenating cached bytes
                    ev.body("v3.3")
                    ev.body("v3.4")
                self._events[stream].append(ev)
                out.append(eid)
            return out

    def add_fault(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def configure(self, **knobs: Any) -> None:
        with self._lock:
            for k, v in knobs.items():
                if not hasattr(self.knobs, k):
                    raise ValueError(f"unknown knob {k!r}")
                setattr(self.knobs, k, v)

    def revoke_tokens(self, refresh: bool = False) -> None:
        with self._lock:
            self._access.clear()
            if refresh:
                self._refresh.clear()

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token this tenant has issued so far, oldest first."""
        with self._lock:
            return list(self._issued)

    def expire_tokens(self) -> None:
        """Make every access token expired (as if expires_in had passed)."""
        with self._lock:
            for t in self._access:
                self._access[t] = 0.0

    def ids(
        self, stream: str, entity_type: str | None = None, *, include_score_decreases: bool | None = None
    ) -> list[int]:
        """The ids a client with default filters sees (entity_scoring: one type)."""
        stream = _STREAM_ALIASES.get(stream, stream)
        with self._lock:
            return list(
                self._view(stream, self._default_key(stream, entity_type, include_score_decreases)).ids
            )

    def generated(self) -> dict[str, list[GeneratedEvent]]:
        """Every event appended so far, per stream endpoint, oldest first, whatever the filters (a copy).

        What an oracle compares against: the tenant's own store, not what a client was served."""
        with self._lock:
            return {stream: list(events) for stream, events in self._events.items()}

    def heads(self) -> dict[str, int | None]:
        """The checkpoint a client with default filters ends at, per checkpoint key (None: no events)."""
        out: dict[str, int | None] = {}
        for key, stream, et in (
            ("audit", "audits", None),
            ("detections", "detections", None),
            ("entity_scoring.account", "entity_scoring", "account"),
            ("entity_scoring.host", "entity_scoring", "host"),
        ):
            ids = self.ids(stream, et)
            out[key] = ids[-1] + 1 if ids else None
        return out

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "streams": {
                    s: {"count": len(evs), "next_id": self._next_id[s]} for s, evs in self._events.items()
                },
                "heads": self.heads(),
                "requests": {"total": sum(self._counters.values()), "by_path_status": dict(self._counters)},
                "tokens": {
                    "issued": self.tokens_issued,
                    "refreshed": self.tokens_refreshed,
                    "refresh_rejected": self.refresh_rejected,
                    "active_access": len(self._access),
                },
                "faults_pending": sum(f.count for f in self._faults),
                "lockdown": len(self.lockdowns.entries()),
                "knobs": dataclasses.asdict(self.knobs),
            }

    def count_requests(self, path_contains: str = "", status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for r in self.requests if path_contains in r.path and (status is None or r.status == status)
            )

    # --- internals -----------------------------------------------------------------------

    def _default_key(
        self, stream: str, entity_type: str | None, include_score_decreases: bool | None
    ) -> tuple[Any, ...]:
        k = self.knobs
        if stream == "audits":
            return ("audits", None, None, None)
        if stream == "detections":
            return ("detections", None, None, k.include_triaged_default, k.include_info_category_default)
        dec = (
            k.include_score_decreases_default if include_score_decreases is None else include_score_decreases
        )
        return ("entity_scoring", entity_type, dec)

    def _view(self, stream: str, key: tuple[Any, ...]) -> _View:
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = _View(_predicate(key))
        view.extend(self._events[stream])
        return view

    def _take_fault(self, path: str) -> Fault | None:
        """The fault for this request, if any. Every pending matching fault counts the request
        against its `skip`; the first one with nothing left to skip is applied."""
        with self._lock:
            chosen: Fault | None = None
            for f in self._faults:
                if f.count <= 0 or not (not f.path or f.path == "*" or f.path in path):
                    continue
                if f.skip > 0:
                    f.skip -= 1
                elif chosen is None:
                    chosen = f
            if chosen is not None:
                chosen.count -= 1
                if chosen.count <= 0:
                    self._faults.remove(chosen)
            return chosen

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)
            self._counters[f"{rec.method} {rec.path} {rec.status}"] += 1

    # tokens

    def _issue(self, with_refresh: bool) -> dict[str, Any]:
        k = self.knobs
        access = "fake-at-" + secrets.token_urlsafe(24)
        now = time.monotonic()
        self._access[access] = now + k.token_expires_in
        self._issued.append(access)
        body: dict[str, Any] = {"access_token": access, "expires_in": k.token_expires_in}
        if with_refresh and k.issue_refresh_token:
            rt = "fake-rt-" + secrets.token_urlsafe(24)
            self._refresh[rt] = now + k.refresh_expires_in
            self._issued.append(rt)
            body["refresh_token"] = rt
            body["refresh_expires_in"] = k.refresh_expires_in
        body["token_type"] = k.token_type
        return body

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        k = self.knobs
        grant = form.get("grant_type")
        with self._lock:
            if grant == "client_credentials":
                cid, csecret = basic if basic else (form.get("client_id"), form.get("client_secret"))
                if cid != k.client_id or csecret != k.client_secret:
                    return 401, {"error": REAUTH_TEXT}
                self.tokens_issued += 1
                return 200, self._issue(with_refresh=True)
            if grant == "refresh_token":
                if basic is not None and basic != (k.client_id, k.client_secret):
                    return 401, {"error": REAUTH_TEXT}
                rt = form.get("refresh_token")
                if not rt:
                    return 400, {"error": "invalid_request: refresh_token is required"}
                if k.reject_refresh is not None:
                    self.refresh_rejected += 1
                    return (
                        (401, {"error": REAUTH_TEXT})
                        if k.reject_refresh == 401
                        else (400, {"error": INVALID_REFRESH_TEXT})
                    )
                exp = self._refresh.get(rt)
                if exp is None:
                    self.refresh_rejected += 1
                    return 400, {"error": INVALID_REFRESH_TEXT}
                if time.monotonic() >= exp:
                    del self._refresh[rt]
                    self.refresh_rejected += 1
                    return 401, {"error": REAUTH_TEXT}
                self.tokens_refreshed += 1
                if k.rotate_refresh_token:
                    del self._refresh[rt]
                    return 200, self._issue(with_refresh=True)
                return 200, self._issue(with_refresh=False)
            return 400, {"error": "unsupported_grant_type"}

    def check_bearer(self, header: str | None) -> bool:
        if not self.knobs.require_auth:
            return True
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        token = token.strip()
        with self._lock:
            exp = self._access.get(token)
            if exp is None:
                return False
            if time.monotonic() >= exp:
                del self._access[token]
                return False
            return True

    # snapshot endpoints

    def health(self) -> dict[str, Any]:
        """The /health object now."""
        with self._lock:
            return health_body(time.time(), self._health_rng)

    # streams

    def page(self, version: str, stream: str, params: dict[str, str]) -> tuple[int, bytes]:
        """Answer one stream request: (status, body bytes)."""
        k = self.knobs
        try:
            key = self._query_key(version, stream, params)
            frm = _parse_int("from", params.get("from"), 0)
            limit = _parse_int("limit", params.get("limit"), 500)
            if limit < 1:
                raise _BadRequest(_drf_error("limit", "Ensure this value is greater than or equal to 1."))
            if limit > 1000:
                if k.limit_over_max == "error":
                    raise _BadRequest(_drf_error("limit", "Ensure this value is less than or equal to 1000."))
                limit = 1000
            gte = _parse_ts_param("event_timestamp_gte", params.get("event_timestamp_gte"))
            lte = _parse_ts_param("event_timestamp_lte", params.get("event_timestamp_lte"))
            ordering = params.get("ordering", k.default_ordering)
            if ordering not in ("id", "-id", "event_timestamp", "-event_timestamp"):
                raise _BadRequest(
                    _drf_error("ordering", f"Invalid value given for parameter 'ordering': {ordering!r}.")
                )
            size = "regular"
            if version == "v3.5" and stream == "detections":
                size = params.get("size") or "regular"
                if size not in ("regular", "detailed"):
                    raise _BadRequest(
                        _drf_error("size", f"Invalid value given for parameter 'size': {size!r}.")
                    )
        except _BadRequest as exc:
            return exc.status, orjson.dumps(exc.body)
        with self._lock:
            view = self._view(stream, key)
            lo = bisect.bisect_left(view.ids, frm)
            if view.ts_sorted:
                if gte is not None:
                    lo = max(lo, bisect.bisect_left(view.ts, gte))
                hi = bisect.bisect_right(view.ts, lte) if lte is not None else len(view.events)
                matches = view.events[lo:hi] if hi > lo else []
            else:
                matches = [
                    e
                    for e in view.events[lo:]
                    if (gte is None or e.ts >= gte) and (lte is None or e.ts <= lte)
                ]
            head = self._next_id[stream]
        if ordering.endswith("event_timestamp") and not view.ts_sorted:
            matches = sorted(matches, key=lambda e: (e.ts, e.id))
        if ordering.startswith("-"):
            chosen = matches[-limit:][::-1]
        else:
            chosen = matches[:limit]
        remaining = len(matches) - len(chosen)
        nxt: int | None
        if chosen:
            last = max(e.id for e in chosen)
            nxt = last if k.overlap else last + 1
        elif k.empty_next_checkpoint == "null":
            nxt = None
        elif k.empty_next_checkpoint == "head":
            nxt = head
        else:
            nxt = frm
        events = b",".join(e.body(version, size, cache=not self._lean) for e in chosen)
        return 200, _envelope(events, nxt, remaining, k.envelope)

    def _query_key(self, version: str, stream: str, params: dict[str, str]) -> tuple[Any, ...]:
        k = self.knobs
        if stream == "audits":
            uid = params.get("user_id")
            return (
                "audits",
                _parse_int("user_id", uid, 0) if uid is not None else None,
                params.get("event_object"),
                params.get("event_action"),
            )
        if stream == "detections":
            etype = params.get("type")
            if etype is None and version == "v3.3":
                etype = params.get("entity_type")
            if etype is not None:
                types = tuple(sorted(t.strip() for t in etype.split(",") if t.strip()))
                if (
                    not types
                    or any(t not in ("account", "host") for t in types)
                    or (len(types) > 1 and version != "v3.5")
                ):
                    raise _BadRequest(
                        _drf_error(
                            "type",
                            "Invalid value given for paramater 'type'. Valid values: ('account', 'host').",
                        )
                    )
                etype = None if len(types) == 2 else types[0]
            did = params.get("detection_id")
            triaged = _parse_bool("include_triaged", params.get("include_triaged"))
            info = _parse_bool("include_info_category", params.get("include_info_category"))
            return (
                "detections",
                etype,
                _parse_int("detection_id", did, 0) if did is not None else None,
                k.include_triaged_default if triaged is None else triaged,
                k.include_info_category_default if info is None else info,
            )
        etype = params.get("type")
        if etype is None and version == "v3.3":
            etype = params.get("entity_type")
        if etype not in ("account", "host"):
            raise _BadRequest(
                _drf_error(
                    "type", "Invalid value given for paramater 'type'. Valid values: ('account', 'host')."
                )
            )
        dec = _parse_bool("include_score_decreases", params.get("include_score_decreases"))
        return ("entity_scoring", etype, k.include_score_decreases_default if dec is None else dec)


ENVELOPE_DEVIATIONS = frozenset(
    {
        "no_remaining",
        "no_checkpoint",
        "string_numbers",
        "float_numbers",
        "bool_checkpoint",
        "text_checkpoint",
        "negative_remaining",
        "extra_keys",
        "renamed",
        "wrapped",
        "bare",
        "camel_case",
    }
)


def _envelope(events: bytes, nxt: int | None, remaining: int, deviations: str) -> bytes:
    """A page's body: the documented envelope, or one deviating as `deviations` (Knobs.envelope) says."""
    dev = {d.strip() for d in deviations.split(",") if d.strip()}
    unknown = dev - ENVELOPE_DEVIATIONS
    if unknown:
        raise ValueError(
            f"unknown envelope deviations {sorted(unknown)}; expected {sorted(ENVELOPE_DEVIATIONS)}"
        )
    if "bare" in dev:
        return b"[" + events + b"]"

    def num(n: int) -> bytes:
        if "string_numbers" in dev:
            return b'"%d"' % n
        if "float_numbers" in dev:
            return b"%d.0" % n
        return b"%d" % n

    cp = b"null" if nxt is None else num(nxt)
    if "bool_checkpoint" in dev:
        cp = b"true"
    elif "text_checkpoint" in dev:
        cp = b'"next"'
    camel = "camel_case" in dev
    parts = [b'"results":[' if "renamed" in dev else b'"events":[', events, b"]"]
    if "no_checkpoint" not in dev:
        parts += [b',"nextCheckpoint":' if camel else b',"next_checkpoint":', cp]
    if "no_remaining" not in dev:
        parts += [
            b',"remainingCount":' if camel else b',"remaining_count":',
            b"-1" if "negative_remaining" in dev else num(remaining),
        ]
    if "extra_keys" in dev:
        parts.append(b',"meta":{"api":"fake","took_ms":3},"warnings":[]')
    body = b"{" + b"".join(parts) + b"}"
    return b'{"data":' + body + b"}" if "wrapped" in dev else body


def _predicate(key: tuple[Any, ...]) -> Callable[[GeneratedEvent], bool]:
    stream = key[0]
    if stream == "audits":
        _, uid, obj, action = key

        def audit_pred(e: GeneratedEvent) -> bool:
            a = e.attrs
            return (
                (uid is None or a["user_id"] == uid)
                and (obj is None or a["event_object"] == obj)
                and (action is None or a["event_action"] == action)
            )

        return audit_pred
    if stream == "detections":
        _, etype, did, triaged, info = key

        def det_pred(e: GeneratedEvent) -> bool:
            a = e.attrs
            return (
                (etype is None or a["type"] == etype)
                and (did is None or a["detection_id"] == did)
                and (triaged is not False or not a["triaged"])
                and (info is not False or not a["info"])
            )

        return det_pred
    _, etype, dec = key

    def ent_pred(e: GeneratedEvent) -> bool:
        return e.attrs["type"] == etype and (dec or not e.attrs["decrease"])

    return ent_pred


_T = TypeVar("_T")


def _parse_param(name: str, value: str | None, parse: Callable[[str], _T], message: str) -> _T | None:
    """`value` parsed, None if absent or empty; a DRF-style 400 naming the parameter if unparsable."""
    if value is None or value == "":
        return None
    try:
        return parse(value)
    except ValueError:
        raise _BadRequest(_drf_error(name, message)) from None


def _parse_int(name: str, value: str | None, default: int) -> int:
    parsed = _parse_param(name, value, int, "A valid integer is required.")
    return default if parsed is None else parsed


def _parse_ts_param(name: str, value: str | None) -> float | None:
    return _parse_param(name, value, parse_timestamp, "Enter a valid date/time.")


_HTML_ERROR = b"<html><head><title>%d</title></head><body><h1>%d Server Error</h1><p>nginx</p></body></html>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeRUX/1.0"
    fake: FakeRux  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # a client that went away is not an error here
            self.close_connection = True

    # plumbing

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        stall: float = 0.0,
        drip: float = 0.0,
        pad: int = 0,
        no_length: bool = False,
    ) -> None:
        head, _, tail = body.partition(b"@PAD@") if pad else (body, b"", b"")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if drip > 0:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
                return
            if pad:
                self.wfile.write(head)
                chunk = b"x" * (1 << 20)
                left = pad
                while left > 0:
                    self.wfile.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
                self.wfile.write(tail)
                return
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: that is the point
            self.close_connection = True
            return
        if stall > 0 and len(body) > 1:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            time.sleep(stall)
            self.wfile.write(body[half:])
        else:
            self.wfile.write(body)

    def _json(
        self,
        status: int,
        obj: Any,
        headers: dict[str, str] | None = None,
        stall: float = 0.0,
        drip: float = 0.0,
    ) -> None:
        self._send(status, orjson.dumps(obj), headers=headers, stall=stall, drip=drip)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _basic(self) -> tuple[str, str] | None:
        h = self.headers.get("Authorization") or ""
        scheme, _, value = h.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, pw = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "")
        return user, pw

    # dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body() if method in ("POST", "DELETE") else b""
        if path.startswith("/_fake/"):
            self._control(method, path, params, body)
            return
        grant: str | None = None
        form: dict[str, str] = {}
        if path == "/oauth2/token" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            grant = form.get("grant_type")
        basic = self._basic()

        def record(status: int) -> None:
            fake._record(RequestRecord(method, path, params, status, grant, basic is not None))

        fault = fake._take_fault(path)
        stall = 0.0
        drip = 0.0
        if fault is not None:
            if fault.delay > 0:
                time.sleep(fault.delay)
            if fault.drop:
                record(0)
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.body is not None:
                status = fault.status if fault.status is not None else 200
                record(status)
                text = fault.body
                if "@TOKEN@" in text:
                    bearer = (self.headers.get("Authorization") or "").partition(" ")[2].strip()
                    text = text.replace("@TOKEN@", bearer)
                self._send(
                    status,
                    text.encode("utf-8"),
                    fault.content_type,
                    drip=fault.drip,
                    pad=fault.pad,
                    no_length=fault.no_length,
                )
                return
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    ra = fault.retry_after
                    headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                if fault.location is not None:
                    headers["Location"] = fault.location
                record(fault.status)
                if fault.html:
                    self._send(fault.status, _HTML_ERROR % (fault.status, fault.status), "text/html", headers)
                elif fault.status == 429:
                    self._json(429, {"detail": "Request was throttled."}, headers)
                elif fault.status == 401:
                    self._json(401, {"detail": "Unauthorized"}, headers)
                else:
                    self._json(fault.status, {"detail": f"Server error ({fault.status})"}, headers)
                return
            stall = fault.stall
            drip = fault.drip

        if path == "/oauth2/token":
            if method != "POST":
                record(405)
                self._json(405, {"detail": f'Method "{method}" not allowed.'})
                return
            status, obj = fake.token(form, basic)
            record(status)
            self._json(status, obj, stall=stall, drip=drip)
            return
        seg = path.split("/")
        # ['', 'api', 'v3.4', 'events', 'detections']
        if (
            len(seg) == 5
            and seg[1] == "api"
            and seg[3] == "events"
            and seg[4] in API_VERSIONS.get(seg[2], ())
        ):
            if self._refused(method, seg[4], record):
                return
            status, page = fake.page(seg[2], seg[4], params)
            record(status)
            self._send(status, page, stall=stall, drip=drip)
            return
        # ['', 'api', 'v3.4', 'health']
        if (
            len(seg) == 4
            and seg[1] == "api"
            and seg[2] in SNAPSHOT_VERSIONS
            and seg[3] in ("health", "lockdown")
        ):
            if self._refused(method, seg[3], record):
                return
            record(200)
            body_obj: Any = fake.health() if seg[3] == "health" else fake.lockdowns.entries()
            self._json(200, body_obj, stall=stall)
            return
        record(404)
        self._json(404, {"detail": "Not found."})

    def _refused(self, method: str, resource: str, record: Callable[[int], None]) -> bool:
        """Answer and record 405, 401 or 403 if this read of an API resource may not go on; True if so.

        One gate for the event and the snapshot endpoints: method first, then the bearer token, then
        the role the resource needs (as RUX checks them)."""
        if method not in ("GET", "HEAD"):
            record(405)
            self._json(405, {"detail": f'Method "{method}" not allowed.'})
            return True
        if not self.fake.check_bearer(self.headers.get("Authorization")):
            record(401)
            self._json(401, {"detail": "Unauthorized"}, {"WWW-Authenticate": "Bearer"})
            return True
        roles = self.fake.knobs.roles
        if roles is not None and _ROLE_OF[resource] not in roles:
            record(403)
            self._json(403, {"detail": "You do not have permission to perform this action."})
            return True
        return False

    def _control(self, method: str, path: str, params: dict[str, str], body: bytes) -> None:
        fake = self.fake
        try:
            if path == "/_fake/state" and method == "GET":
                self._json(200, fake.state())
            elif path == "/_fake/events" and method == "POST":
                count = int(params.get("count", "1"))
                stream = params.get("stream", "all")
                streams = STREAM_ENDPOINTS if stream == "all" else (stream,)
                added = {s: fake.append(s, count, entity_type=params.get("type")) for s in streams}
                self._json(
                    200,
                    {
                        "added": {s: [ids[0], ids[-1]] if ids else [] for s, ids in added.items()},
                        "heads": fake.heads(),
                    },
                )
            elif path == "/_fake/ids" and method == "GET":
                self._json(200, {"ids": fake.ids(params.get("stream", "detections"), params.get("type"))})
            elif path == "/_fake/faults" and method == "POST":
                obj = orjson.loads(body or b"{}")
                items = obj if isinstance(obj, list) else [obj]
                fake.add_fault(*(Fault.from_json(o) for o in items))
                self._json(200, {"faults_pending": fake.state()["faults_pending"]})
            elif path == "/_fake/faults" and method == "DELETE":
                fake.clear_faults()
                self._json(200, {"faults_pending": 0})
            elif path == "/_fake/revoke-tokens" and method == "POST":
                fake.revoke_tokens(refresh=params.get("refresh", "").lower() in ("1", "true"))
                self._json(200, {"revoked": True})
            elif path == "/_fake/expire-tokens" and method == "POST":
                fake.expire_tokens()
                self._json(200, {"expired": True})
            elif path == "/_fake/config" and method == "POST":
                obj = orjson.loads(body or b"{}")
                if not isinstance(obj, dict):
                    raise ValueError("config is a JSON object")
                fake.configure(**obj)
                self._json(200, dataclasses.asdict(fake.knobs))
            elif path == "/_fake/lockdown" and method == "POST":
                action = params.get("action", "lock")
                etype = params.get("type", "host")
                eid = int(params["entity_id"]) if "entity_id" in params else None
                if action == "lock":
                    self._json(200, fake.lockdowns.lock(etype, eid, name=params.get("name")))
                elif action == "unlock" and eid is not None:
                    self._json(200, {"unlocked": fake.lockdowns.unlock(etype, eid)})
                elif action == "extend" and eid is not None:
                    self._json(200, fake.lockdowns.extend(etype, eid, float(params.get("seconds", "3600"))))
                else:
                    raise ValueError("action is lock, or unlock / extend with entity_id")
            elif path == "/_fake/requests" and method == "GET":
                n = int(params.get("limit", "1000"))
                with fake._lock:
                    recs = list(fake.requests)[-n:]
                self._json(200, {"requests": [dataclasses.asdict(r) for r in recs]})
            else:
                self._json(404, {"detail": "Not found."})
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            self._json(400, {"error": str(exc)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m siemconn.devtools.fake_rux", description="Fake Vectra RUX tenant"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--client-id", default=Knobs.client_id)
    p.add_argument("--client-secret", default=Knobs.client_secret)
    p.add_argument("--seed-audit", type=int, default=0)
    p.add_argument("--seed-detections", type=int, default=0)
    p.add_argument("--seed-entity", type=int, default=0)
    p.add_argument("--seed-lockdown", type=int, default=0, help="entities in lockdown at start")
    p.add_argument(
        "--seed-span-hours", type=float, default=6.0, help="spread seeded events over the last N hours"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the event generator")
    p.add_argument("--tenant-url", default="https://demo.uw2.portal.vectra.ai")
    p.add_argument("--generate-interval", type=float, default=None, help="append events every N seconds")
    p.add_argument("--generate-count", type=int, default=3, help="events per stream per generation")
    p.add_argument("--token-expires-in", type=int, default=Knobs.token_expires_in)
    p.add_argument("--refresh-expires-in", type=int, default=Knobs.refresh_expires_in)
    p.add_argument("--no-refresh-token", action="store_true")
    p.add_argument("--rotate-refresh-token", action="store_true")
    p.add_argument("--empty-next-checkpoint", choices=("from", "head", "null"), default="from")
    p.add_argument("--overlap", action="store_true", help="next_checkpoint = last id (one-event overlap)")
    p.add_argument("--roles", default=None, help="comma-separated roles, e.g. Read-Only (audits then 403)")
    a = p.parse_args(argv)
    fake = FakeRux(
        host=a.host,
        port=a.port,
        seed_audit=a.seed_audit,
        seed_detections=a.seed_detections,
        seed_entity=a.seed_entity,
        seed_lockdown=a.seed_lockdown,
        seed_span_seconds=a.seed_span_hours * 3600,
        seed=a.seed,
        tenant_url=a.tenant_url,
        generate_interval=a.generate_interval,
        generate_count=a.generate_count,
        client_id=a.client_id,
        client_secret=a.client_secret,
        token_expires_in=a.token_expires_in,
        refresh_expires_in=a.refresh_expires_in,
        issue_refresh_token=not a.no_refresh_token,
        rotate_refresh_token=a.rotate_refresh_token,
        empty_next_checkpoint=a.empty_next_checkpoint,
        overlap=a.overlap,
        roles=[r.strip() for r in a.roles.split(",")] if a.roles else None,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake.start()
    print(f"fake RUX listening on {fake.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
