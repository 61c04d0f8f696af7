"""The OAuth2 token lifecycle of one RUX client: client credentials, refresh, early renewal.

Invariants: every access or refresh token is handed to `secret_seen` before anything can log it; a
token answer that is not usable (not an object, no bearer-safe access_token, a lifetime that is not
seconds in (0, 10 years]) is a RuxResponseError that names no secret. An access token is renewed
before its end of life (`early`), by the refresh_token grant while that token may still be valid and by
the client credentials otherwise. One renewal runs at a time; meanwhile the other streams keep using a
token that has not reached its end of life.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from siemconn.errors import RuxAuthError, RuxPermissionError, RuxResponseError, RuxUnavailableError
from siemconn.logging import get_logger
from siemconn.rux.answer import Answer, AnswerTooLarge, fetch, redirect_hint
from siemconn.rux.page import is_int, loads_page

__all__ = ["TOKEN_MAX_BYTES", "TOKEN_PATH", "Token", "Tokens", "early", "lifetime"]

log = get_logger("siemconn.rux")

TOKEN_PATH = "/oauth2/token"
_EARLY_RENEW_MAX = 100.0  # renew the access token 100 s early, or 10 % of its lifetime if smaller
TOKEN_MAX_BYTES = 64 * 1024  # a token answer is a few hundred bytes
_MAX_LIFETIME = 10 * 366 * 86400  # seconds; a longer expires_in is not a lifetime but garbage
_MAX_TOKEN_CHARS = 8192
# what may follow "Bearer " in an HTTP header: printable ASCII without spaces (RFC 6750 b64token and more)
_BEARER_RE = re.compile(r"^[\x21-\x7e]+$")

Send = Callable[[str, Callable[[], Awaitable[Answer]]], Awaitable[Answer]]


@dataclass
class Token:
    """An access token and what is known of its life (monotonic seconds)."""

    access: str
    access_expires: float  # monotonic seconds: renew from here on
    hard_expires: float  # monotonic seconds: the server's end of life of the token
    refresh: str | None
    refresh_expires: float | None  # monotonic; None = unknown (try it)
    generation: int


def early(lifetime: float) -> float:
    """How long before its end of life a token of `lifetime` seconds is renewed."""
    return min(_EARLY_RENEW_MAX, 0.1 * lifetime)


def _short(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message (never a huge repr)."""
    if is_int(value) and abs(value) > 10**18:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def lifetime(body: dict[str, Any], field: str) -> float | None:
    """A token lifetime in seconds from `field` of a token answer; None when absent.

    Raises RuxResponseError for anything but a finite number of seconds in (0, 10 years]."""
    v = body.get(field)
    if v is None:
        return None
    ok = (is_int(v) and 0 < v <= _MAX_LIFETIME) or (
        isinstance(v, float) and math.isfinite(v) and 0 < v <= _MAX_LIFETIME
    )
    if not ok:
        raise RuxResponseError(
            f"token endpoint {TOKEN_PATH} answered an unusable {field} ({_short(v)}); "
            f"expected seconds 1-{_MAX_LIFETIME}; the next scheduled run retries"
        )
    return float(v)


class Tokens:
    """The current access token of one client, obtained and renewed on demand."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        client_id: str,
        secret: str,
        http_timeout: float,
        send: Send,
        clock: Callable[[], float],
        secret_seen: Callable[[str], None],
    ) -> None:
        self._http = http
        self._base_url = base_url
        self._client_id = client_id
        self._secret = secret
        self._http_timeout = http_timeout
        self._send = send
        self._clock = clock
        self._secret_seen = secret_seen
        self._token: Token | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    def adopt(self, other: Tokens) -> bool:
        """Take over `other`'s token (a reload with the same BASE_URL and credentials: no new token
        request, the token endpoint rate-limits). False, and nothing taken, when any of them differs."""
        same = (other._base_url, other._client_id, other._secret) == (
            self._base_url,
            self._client_id,
            self._secret,
        )
        if not same or other._token is None:
            return False
        tok = other._token
        for value in (tok.access, tok.refresh):
            if value:
                self._secret_seen(value)
        self._token = tok
        self._generation = max(self._generation, other._generation)
        return True

    def _store(self, body: Any, *, refreshed: bool) -> None:
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
        life = lifetime(body, "expires_in")
        if life is None:
            life = 1800.0
        rexp = lifetime(body, "refresh_expires_in")
        now = self._clock()
        old = self._token
        refresh_expires: float | None
        if not refresh:
            refresh = old.refresh if (refreshed and old is not None) else None
            refresh_expires = old.refresh_expires if (refreshed and old is not None) else None
        elif rexp is not None:
            refresh_expires = now + rexp - early(rexp)
        elif refreshed and old is not None and old.refresh == refresh:
            refresh_expires = old.refresh_expires
        else:
            refresh_expires = None
        self._generation += 1
        self._token = Token(
            access=access,
            access_expires=now + life - early(life),
            hard_expires=now + life,
            refresh=refresh,
            refresh_expires=refresh_expires,
            generation=self._generation,
        )
        log.info(
            "access_token_refreshed" if refreshed else "access_token_obtained",
            expires_in=int(life),
            has_refresh_token=refresh is not None,
        )

    def _body(self, resp: Answer) -> Any:
        try:
            return loads_page(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered HTTP {resp.status_code} with a body that is {why}; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            ) from None

    async def _post(self, data: dict[str, str], auth: tuple[str, str] | None) -> Answer:
        url = self._base_url + TOKEN_PATH

        def request() -> Awaitable[Answer]:
            kwargs: dict[str, Any] = {"data": data}
            if auth is not None:
                kwargs["auth"] = auth
            return fetch(
                self._http,
                "POST",
                url,
                deadline=self._http_timeout,
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
        resp = await self._post({"grant_type": "client_credentials"}, (self._client_id, self._secret))
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
        hint = redirect_hint(resp, self._base_url, lambda text: text.replace(self._secret, "***"))
        if hint is not None:
            raise RuxResponseError(f"token endpoint {TOKEN_PATH} answered a {hint}")
        if resp.status_code != 200:
            raise RuxResponseError(
                f"token endpoint {TOKEN_PATH} answered HTTP {resp.status_code}; "
                f"check that BASE_URL {self._base_url} is the Vectra portal URL"
            )
        self._store(self._body(resp), refreshed=False)

    async def _refresh(self, refresh_token: str) -> bool:
        """Try the refresh_token grant; False when the server rejects it (the caller falls back)."""
        resp = await self._post({"grant_type": "refresh_token", "refresh_token": refresh_token}, None)
        if resp.status_code != 200:
            log.info("refresh_token_rejected", detail="using client credentials", status=resp.status_code)
            return False
        try:
            self._store(self._body(resp), refreshed=True)
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

    async def access_token(self, stale_generation: int | None = None) -> Token:
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
            async with asyncio.timeout(self._http_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise RuxUnavailableError(
                f"the access token renewal at {TOKEN_PATH} did not finish within http_timeout "
                f"{self._http_timeout:g} s; this pull gives up, the next scheduled run retries"
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
