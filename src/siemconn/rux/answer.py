"""One bounded HTTP exchange: a deadline for the whole answer and a cap on its size.

httpx's timeouts bound each socket operation, so a body dripped one byte per second never times out,
and `Response.read()` keeps whatever the server sends. `fetch()` streams the body instead:

* the whole exchange (connect, headers, every body byte) runs under one `asyncio.timeout(deadline)`;
  running out raises `TimeoutError`, and leaving the `stream()` block closes the connection;
* at most `max_bytes` decoded bytes are kept (a declared Content-Length above the cap is refused before
  the body is read; a gzip body is counted after decompression); one byte more raises `AnswerTooLarge`.

The caller decides what a too-large answer means (a smaller page, or an error for the operator).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Answer", "AnswerTooLarge", "fetch", "redirect_hint"]


_LOCATION_CHARS = 300


class AnswerTooLarge(Exception):
    """Raised when an answer's body exceeds the byte cap (`seen` is what was declared or read)."""

    def __init__(self, seen: int, cap: int) -> None:
        self.seen = seen
        self.cap = cap
        super().__init__(f"answer larger than {cap} bytes (at least {seen})")


@dataclass(frozen=True)
class Answer:
    """A fully read HTTP answer (status, headers and body), never larger than the cap it was read with."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    **kwargs: Any,
) -> Answer:
    """Send one request and read its answer within `deadline` seconds and `max_bytes` bytes."""
    async with asyncio.timeout(deadline):
        async with client.stream(method, url, **kwargs) as resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise AnswerTooLarge(int(declared), max_bytes)
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > max_bytes:
                    raise AnswerTooLarge(len(buf), max_bytes)
            return Answer(resp.status_code, resp.reason_phrase, resp.headers, bytes(buf))


def redirect_hint(resp: Answer, base_url: str, redact: Callable[[str], str]) -> str | None:
    """For a redirect (HTTP 3xx), the text an operator can act on: where it points and the likely cause;
    None for any other status. Redirects are never followed: the request carries the credentials or the
    bearer token, which must not go to another address."""
    if not 300 <= resp.status_code < 400:
        return None
    location = redact(resp.headers.get("Location", "").strip())[:_LOCATION_CHARS]
    base = httpx.URL(base_url)
    target = f"to {location}" if location else "without a Location header"
    cause = "BASE_URL is probably not the tenant's API URL, or a proxy intercepts the request (a login page)"
    if location:
        to = base.join(location)
        if to.host and to.host != base.host:
            cause = (
                f"it leaves {base.host}: a proxy login page (allow {base.host} through the proxy), or BASE_URL "
                f"{base_url} is not the tenant's API URL (if {to.host} is your tenant, set BASE_URL to "
                f"{to.scheme}://{to.host})"
            )
        elif to.scheme != base.scheme:
            cause = f"BASE_URL uses {base.scheme}, the server wants {to.scheme}: set BASE_URL to {to.scheme}://{base.host}"
        else:
            cause = f"BASE_URL {base_url} probably has a wrong path or is not the tenant's API URL"
    return f"redirect (HTTP {resp.status_code}) {target}; not followed with the credentials; {cause}"
