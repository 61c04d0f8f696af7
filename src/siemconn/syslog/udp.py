"""UDP to a syslog server: one datagram per message on a connected socket, paced to a rate.

UDP has no delivery guarantee; `DatagramTransport.write` fails only for what this side can know: an
ICMP "port unreachable" the kernel reported (checked before, during and after the write, so the batch
is kept) or a closed socket. Sends are paced to `udp_rate_limit` messages per second (0 = unpaced): a
receiver's socket buffer that is full drops datagrams silently, so pacing is what keeps a burst (a
first pull, a backlog drain) within what the receiver reads. A write returns once asyncio holds no
unsent datagram.
"""

from __future__ import annotations

import asyncio

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError
from siemconn.syslog.tls import error_reason

__all__ = ["DatagramTransport", "UdpProtocol", "open_udp"]


class UdpProtocol(asyncio.DatagramProtocol):
    """Keeps what asyncio reports about the socket: the last error (ICMP unreachable), and its loss."""

    def __init__(self) -> None:
        self.error: OSError | None = None
        self.lost = False

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


# Pacing sends bursts of at most this long at the rate (one sleep per burst, not one per datagram).
_PACE_BURST_SECONDS = 0.005


class DatagramTransport:
    """A connected UDP socket: one datagram per message, at most `rate` messages per second (0: no limit).

    Pacing keeps a schedule across writes (`_next_send`), so the rate holds over a whole backlog drain
    and not only within one batch; an idle period does not build up credit beyond one burst."""

    def __init__(
        self,
        server: ServerConfig,
        transport: asyncio.DatagramTransport,
        proto: UdpProtocol,
        *,
        rate: int = 0,
    ) -> None:
        self._server = server
        self._transport = transport
        self._proto = proto
        self._rate = rate
        self._next_send = 0.0  # loop time at which the next datagram may go

    def _check(self, when: str) -> None:
        err = self._proto.error
        if err is not None:
            self._proto.error = None
            raise DeliveryError(f"syslog server {self._server.label}: {error_reason(err)} {when}")
        if self._proto.lost or self._transport.is_closing():
            raise DeliveryError(f"syslog server {self._server.label}: UDP socket closed {when}")

    async def write(self, frames: list[bytes]) -> None:
        await asyncio.sleep(0)
        self._check("before the write")
        send = self._transport.sendto
        loop = asyncio.get_running_loop()
        if self._rate <= 0:
            for f in frames:
                send(f)
        else:
            await self._send_paced(frames, loop)
        delay = 0.0005
        while self._transport.get_write_buffer_size() > 0:  # type: ignore[attr-defined]  # typeshed omits it; asyncio's datagram transports have it
            self._check("during the write")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            if loop.is_closed():  # pragma: no cover
                break
        await asyncio.sleep(0)  # an ICMP port-unreachable for this batch shows up now
        self._check("after the write")

    async def _send_paced(self, frames: list[bytes], loop: asyncio.AbstractEventLoop) -> None:
        send = self._transport.sendto
        interval = 1.0 / self._rate
        burst = max(1, int(self._rate * _PACE_BURST_SECONDS))
        now = loop.time()
        nxt = max(self._next_send, now - burst * interval)
        i, n = 0, len(frames)
        while i < n:
            now = loop.time()
            if nxt > now:
                await asyncio.sleep(nxt - now)
                self._check("during the write")
            # everything due by now (at most one burst) goes out
            due = min(n - i, burst, max(1, int((loop.time() - nxt) / interval) + 1))
            for f in frames[i : i + due]:
                send(f)
            i += due
            nxt += due * interval
        self._next_send = nxt

    def is_closing(self) -> bool:
        return self._proto.lost or self._transport.is_closing()

    async def close(self) -> None:
        self._transport.close()


async def open_udp(server: ServerConfig, *, connect_timeout: float) -> DatagramTransport:
    """A connected UDP socket to `server`, paced to its udp_rate_limit. OSError and TimeoutError pass
    through."""
    loop = asyncio.get_running_loop()
    dt, proto = await asyncio.wait_for(
        loop.create_datagram_endpoint(UdpProtocol, remote_addr=(server.server_host, server.server_port)),
        connect_timeout,
    )
    return DatagramTransport(server, dt, proto, rate=server.udp_rate_limit)
