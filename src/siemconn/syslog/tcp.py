"""The asyncio stream under the TCP, TLS and RELP transports: how it is opened and how it is closed.

`open_stream` connects (TLS first when a context is given, with the server's host as the name the
certificate must carry) within `connect_timeout`, and leaves every error to the caller, which
translates it. `close_stream` stops the transport's reader task before it closes the writer, so no
read races the close, and waits for the close only briefly: a peer that never answers does not hold
the writer up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from siemconn.config import ServerConfig

__all__ = ["READ_CHUNK", "close_stream", "open_stream"]

READ_CHUNK = 65536  # the stream reader's buffer limit and the size of one read
_CLOSE_WAIT_SECONDS = 2.0


async def open_stream(
    server: ServerConfig, tls_context: ssl.SSLContext | None, *, connect_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to `server` (TLS when `tls_context` is given). OSError, TimeoutError and ssl.SSLError
    pass through."""
    ctx = tls_context
    return await asyncio.wait_for(
        asyncio.open_connection(
            server.server_host,
            server.server_port,
            ssl=ctx,
            server_hostname=server.server_host if ctx is not None else None,
            ssl_handshake_timeout=connect_timeout if ctx is not None else None,
            limit=READ_CHUNK,
        ),
        connect_timeout,
    )


async def close_stream(reader_task: asyncio.Task[None], writer: asyncio.StreamWriter) -> None:
    """Cancel the reader task, then close the writer and wait a little for the close to finish."""
    reader_task.cancel()
    with contextlib.suppress(BaseException):
        await reader_task
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT_SECONDS)
