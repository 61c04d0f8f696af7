"""siemconn.syslog.transport against real sockets on 127.0.0.1 (and ::1): TLS context building, handshake
errors, a peer that closed the connection, UDP refusal, IPv6."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support.certs import make_ca_and_leaf, make_certs

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.syslog.format import frame
from siemconn.syslog.transport import open_transport


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TLS",
        "server_host": "127.0.0.1",
        "server_port": 6514,
    }
    return ServerConfig.model_validate(base | kw)


class Sink:
    """An asyncio TCP/TLS server on 127.0.0.1 that records bytes per connection."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.close_after: int | None = None  # close each connection after this many bytes
        self.server: asyncio.Server | None = None
        self.errors: list[BaseException] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        self.received.append(buf)
        self.writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                buf += chunk
                if self.close_after is not None and len(buf) >= self.close_after:
                    break
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(exc)
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def sink_factory() -> AsyncIterator[Callable[..., Any]]:
    made: list[Sink] = []

    async def make(host: str = "127.0.0.1", ssl_ctx: ssl.SSLContext | None = None) -> Sink:
        s = Sink()
        s.server = await asyncio.start_server(s.handle, host, 0, ssl=ssl_ctx)
        made.append(s)
        return s

    yield make
    for s in made:
        assert s.server is not None
        s.server.close()
        for w in s.writers:
            w.close()


def server_ctx(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- TLS handshakes against a local TLS server ---------------------------------------------------


async def test_tls_hostname_mismatch_is_a_clear_error(tmp_path: Path, sink_factory: Any) -> None:
    ca, cert, key = make_ca_and_leaf(tmp_path, "wrong", "wrong.example")
    sink = await sink_factory(ssl_ctx=server_ctx(cert, key))
    s = server(server_port=sink.port, tls_ca_file=str(ca))
    with pytest.raises(TlsConfigError) as e:
        await open_transport(s, tmp_path, connect_timeout=10)
    msg = str(e.value)
    assert "s1 (TLS 127.0.0.1:" in msg and "mismatch" in msg and "tls_verify_hostname" in msg
    # the documented opt-out connects (the chain is still verified)
    t = await open_transport(
        server(server_port=sink.port, tls_ca_file=str(ca), tls_verify_hostname=False),
        tmp_path,
        connect_timeout=10,
    )
    await t.write([b"<14>x\n"])
    await t.close()
    await wait_until(lambda: any(bytes(b) == b"<14>x\n" for b in sink.received))


async def test_tls_unknown_ca_and_expired_cert(tmp_path: Path, sink_factory: Any) -> None:
    ca, cert, key = make_ca_and_leaf(tmp_path, "good", "127.0.0.1")
    other = make_certs(tmp_path / "other").ca
    sink = await sink_factory(ssl_ctx=server_ctx(cert, key))
    with pytest.raises(TlsConfigError, match=r"not signed by a CA in .*other.*ca\.pem"):
        await open_transport(
            server(server_port=sink.port, tls_ca_file=str(other)), tmp_path, connect_timeout=10
        )

    ca2, cert2, key2 = make_ca_and_leaf(tmp_path, "old", "127.0.0.1", expired=True)
    sink2 = await sink_factory(ssl_ctx=server_ctx(cert2, key2))
    with pytest.raises(TlsConfigError, match="expired.*renew the server certificate"):
        await open_transport(
            server(server_port=sink2.port, tls_ca_file=str(ca2)), tmp_path, connect_timeout=10
        )


async def test_mutual_tls_missing_client_cert_is_reported(tmp_path: Path, sink_factory: Any) -> None:
    certs = make_certs(tmp_path / "c")
    sink = await sink_factory(ssl_ctx=server_ctx(certs.server_cert, certs.server_key, client_ca=certs.ca))
    s = server(server_port=sink.port, tls_ca_file=str(certs.ca))
    with pytest.raises(TlsConfigError, match="client certificate|tls_client_cert"):
        t = await open_transport(s, tmp_path, connect_timeout=10)
        await t.write([b"<14>lost?\n"])  # TLS 1.3 reports the refusal after the handshake
    ok = server(
        server_port=sink.port,
        tls_ca_file=str(certs.ca),
        tls_client_cert=str(certs.client_cert),
        tls_client_key=str(certs.client_key),
    )
    t = await open_transport(ok, tmp_path, connect_timeout=10)
    await t.write([b"<14>a\n", b"<14>b\n"])
    await t.close()
    await wait_until(lambda: any(bytes(b) == b"<14>a\n<14>b\n" for b in sink.received))


# --- TCP ------------------------------------------------------------------------------------------


async def test_peer_closed_connection_is_detected_before_next_write(
    tmp_path: Path, sink_factory: Any
) -> None:
    sink = await sink_factory()
    sink.close_after = 6
    t = await open_transport(
        server(server_protocol="TCP", server_port=sink.port), tmp_path, connect_timeout=5, settle_seconds=0
    )
    await t.write([b"<14>1\n"])
    await wait_until(lambda: len(sink.received) == 1 and bytes(sink.received[0]) == b"<14>1\n")
    await wait_until(lambda: sink.writers[0].is_closing())
    # the server has closed; the next batch must not be swallowed
    with pytest.raises(DeliveryError, match="closed the connection before the write"):
        await t.write([b"<14>2\n"])
    assert t.is_closing()
    await t.close()
    assert b"<14>2" not in bytes(sink.received[0])


async def test_close_right_after_the_data_arrived_fails_the_write(tmp_path: Path, sink_factory: Any) -> None:
    """A receiver that closes as soon as it got the bytes (e.g. while restarting): reported, so resent."""
    sink = await sink_factory()
    sink.close_after = 1
    t = await open_transport(
        server(server_protocol="TCP", server_port=sink.port), tmp_path, connect_timeout=5
    )
    with pytest.raises(DeliveryError, match="closed the connection during the write|connection lost"):
        await t.write([b"<14>1\n"])
    await t.close()


async def test_tcp_write_many_frames_in_one_go(tmp_path: Path, sink_factory: Any) -> None:
    sink = await sink_factory()
    t = await open_transport(
        server(server_protocol="TCP", server_port=sink.port), tmp_path, connect_timeout=5
    )
    frames = [b"<14>%06d %s\n" % (i, b"x" * 1000) for i in range(3000)]
    await t.write(frames)  # returns once the peer's TCP stack acknowledged every byte
    await t.close()
    await wait_until(lambda: len(sink.received[0]) == sum(map(len, frames)))
    assert bytes(sink.received[0]) == b"".join(frames)


async def test_refused_and_ipv6(tmp_path: Path, sink_factory: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        with pytest.raises(
            DeliveryError,
            match=r"s1 \(TCP 127\.0\.0\.1:\d+\): connection refused; is the syslog server listening",
        ):
            await open_transport(server(server_protocol="TCP", server_port=port), tmp_path, connect_timeout=5)
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sink = await sink_factory(host="::1")
    except OSError:
        pytest.skip("::1 not available")
    t = await open_transport(
        server(server_protocol="TCP", server_host="::1", server_port=sink.port), tmp_path, connect_timeout=5
    )
    await t.write([b"<14>v6\n"])
    await t.close()
    await wait_until(lambda: bytes(sink.received[0]) == b"<14>v6\n")


# --- UDP ------------------------------------------------------------------------------------------


async def test_udp_one_datagram_per_message_and_refusal(tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    t = await open_transport(server(server_protocol="UDP", server_port=port), tmp_path, connect_timeout=5)
    await t.write([b"<14>one", b"<14>two"])
    assert [rx.recv(70000), rx.recv(70000)] == [b"<14>one", b"<14>two"]
    rx.close()  # nobody listens any more: the kernel answers with ICMP port unreachable
    with pytest.raises(DeliveryError, match="refused"):
        for _ in range(50):
            await t.write([b"<14>three"])
            await asyncio.sleep(0.02)
    await t.close()
    assert t.is_closing()


# --- the demo receiver ----------------------------------------------------------------------------


async def test_demo_receiver_prints_every_framing(tmp_path: Path) -> None:
    import io

    from siemconn.devtools.harness import split_frames
    from siemconn.devtools.receiver import Printer, serve

    buf = bytearray(b"5 <14>a<14>b\n12 <14>c")
    assert split_frames(buf) == [b"<14>a", b"<14>b"] and buf == b"12 <14>c"

    out = io.StringIO()
    stop = asyncio.Event()
    with socket.socket() as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        tcp_port, udp_port = a.getsockname()[1], b.getsockname()[1]
    task = asyncio.create_task(serve("127.0.0.1", tcp_port, udp_port, Printer(out, 60), stop))
    await wait_until(lambda: "listening" in out.getvalue())
    for proto, port, framed in (
        ("TCP", tcp_port, [b"<14>lf one\n", b"<14>lf two\n"]),
        ("TCP", tcp_port, [frame(b"<14>octet", "octet-counting"), frame(b"<14>octet two", "octet-counting")]),
        ("UDP", udp_port, [b"<14>udp" + b"x" * 100]),
    ):
        t = await open_transport(server(server_protocol=proto, server_port=port), tmp_path, connect_timeout=5)
        await t.write(framed)
        await t.close()
    await wait_until(lambda: out.getvalue().count("\n") >= 6)  # listening + 5 messages
    stop.set()
    await task
    text = out.getvalue()
    for needle in ("| <14>lf one", "| <14>lf two", "| <14>octet\n", "| <14>octet two", "| <14>udpxx"):
        assert needle in text
    assert "..." in text and "receiver stopped after 5 messages" in text
