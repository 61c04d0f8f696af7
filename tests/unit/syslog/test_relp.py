"""siemconn.syslog.relp: the frame parser, protocol faults against an in-test RELP server, and delivery to real
rsyslog imrelp (plain and mutual TLS). The service against imrelp with the receiver SIGKILLed is
tests/reliability/test_syslog.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.rsyslog import RelpReceiver

from siemconn.config import ServerConfig
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.syslog.relp import MAX_TXNR, RelpProtocolError, TxnrSequence, parse_frames
from siemconn.syslog.transport import open_transport


def _server(port: int, **extra: Any) -> ServerConfig:
    return ServerConfig.model_validate(
        {"name": "r1", "server_protocol": "relp", "server_host": "127.0.0.1", "server_port": port, **extra}
    )


# --- frame parser --------------------------------------------------------------------------------


def test_parse_frames_complete_partial_and_empty_data() -> None:
    buf = bytearray(b"1 rsp 6 200 OK\n0 serverclose 0\n2 rsp 6 200")
    assert parse_frames(buf) == [(1, b"rsp", b"200 OK"), (0, b"serverclose", b"")]
    assert bytes(buf) == b"2 rsp 6 200"  # incomplete: kept for the next read
    buf += b" OK\n"
    assert parse_frames(buf) == [(2, b"rsp", b"200 OK")]
    assert buf == b""


def test_parse_frames_data_may_hold_lf() -> None:
    data = b"200 OK\nrelp_version=0\ncommands=syslog"
    buf = bytearray(b"1 rsp %d %s\n" % (len(data), data))
    assert parse_frames(buf) == [(1, b"rsp", data)]


@pytest.mark.parametrize(
    "wire",
    [
        b"x rsp 6 200 OK\n",
        b"1 rsp 6 200 OKX",  # no LF trailer after DATALEN bytes
        b"1 r-p 6 200 OK\n",
        b"1 serverclose 0X",
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html>" + b"x" * 80,
    ],
)
def test_parse_frames_rejects_what_is_not_relp(wire: bytes) -> None:
    with pytest.raises(RelpProtocolError):
        parse_frames(bytearray(wire))


# --- an in-test RELP server ----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    header = await reader.readuntil(b" ")
    cmd = await reader.readuntil(b" ")
    length = b""
    while True:
        c = await reader.readexactly(1)
        if not c.isdigit():
            break
        length += c
    n = int(length)
    data = b""
    if n:
        assert c == b" "
        data = await reader.readexactly(n)
        assert await reader.readexactly(1) == b"\n"
    else:
        assert c == b"\n"
    return int(header[:-1]), cmd[:-1], data


async def _answer_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    txnr, cmd, offers = await _read_frame(reader)
    assert (txnr, cmd) == (1, b"open")
    body = b"200 OK\nrelp_version=0\nrelp_software=test\ncommands=syslog"
    writer.write(b"1 rsp %d %s\n" % (len(body), body))
    await writer.drain()
    return offers


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_open_offers_relp_version_and_syslog_and_write_waits_for_every_ack() -> None:
    got: list[bytes] = []
    offers: list[bytes] = []
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        offers.append(await _answer_open(reader, writer))
        for _ in range(3):
            txnr, cmd, data = await _read_frame(reader)
            assert cmd == b"syslog"
            got.append(data)
        await release.wait()
        for txnr in (2, 3, 4):
            writer.write(b"%d rsp 6 200 OK\n" % txnr)
        await writer.drain()
        await reader.read()

    server, port = await _serve(handler)
    async with server:
        t = await open_transport(_server(port), Path("."), connect_timeout=5)
        write = asyncio.ensure_future(t.write([b"<14>a\n<14>b\n", b"<14>c\n"]))
        await asyncio.sleep(0.3)
        assert got == [b"<14>a", b"<14>b", b"<14>c"]
        assert not write.done()  # sent, not yet acknowledged: the batch must not be acked
        release.set()
        await asyncio.wait_for(write, 5)
        await t.close()
    assert b"relp_version=" in offers[0] and b"commands=syslog" in offers[0]


async def test_window_bounds_unacknowledged_frames() -> None:
    max_in_flight = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal max_in_flight
        await _answer_open(reader, writer)
        unanswered: list[int] = []
        while True:
            try:
                txnr, cmd, _ = await asyncio.wait_for(_read_frame(reader), 0.2)
            except (TimeoutError, asyncio.IncompleteReadError):
                if not unanswered:
                    return
                for t in unanswered:  # answer only when the client stopped sending: its window is full
                    writer.write(b"%d rsp 6 200 OK\n" % t)
                await writer.drain()
                unanswered.clear()
                continue
            if cmd == b"close":
                writer.write(b"%d rsp 6 200 OK\n" % txnr)
                await writer.drain()
                return
            unanswered.append(txnr)
            max_in_flight = max(max_in_flight, len(unanswered))

    server, port = await _serve(handler)
    async with server:
        t = await open_transport(_server(port, window_size=7), Path("."), connect_timeout=5)
        await asyncio.wait_for(t.write([b"".join(b"<14>m%d\n" % i for i in range(30))]), 10)
        await t.close()
    assert max_in_flight == 7


async def _fault(answer: bytes) -> str:
    """Open a session, send one message, let the server answer `answer`; return the write's error."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_open(reader, writer)
        await _read_frame(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server, port = await _serve(handler)
    async with server:
        t = await open_transport(_server(port), Path("."), connect_timeout=5)
        with pytest.raises(DeliveryError) as exc:
            await asyncio.wait_for(t.write([b"<14>x\n"]), 5)
        assert t.is_closing()
        await t.close()
    return str(exc.value)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"2 rsp 17 500 queue is full\n", "refused message 2 with status 500 'queue is full'"),
        (b"7 rsp 6 200 OK\n", "RELP answer for transaction 7, expected 2"),
        (b"2 syslog 3 abc\n", "unexpected RELP frame 'syslog'"),
        (b"0 serverclose 0\n", "closed the session (serverclose) with 1 message(s) unacknowledged"),
        (b"garbage that is not a frame at all, long enough to be sure of it.....\n", "RELP protocol error"),
        (b"", "closed the connection with 1 message(s) unacknowledged"),
    ],
)
async def test_protocol_faults_fail_the_write_naming_the_server(answer: bytes, expected: str) -> None:
    msg = await _fault(answer)
    assert "syslog server r1 (RELP 127.0.0.1:" in msg
    assert expected in msg


async def test_a_server_that_refuses_the_open_is_a_clear_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_frame(reader)
        body = b"500 not allowed here"
        writer.write(b"1 rsp %d %s\n" % (len(body), body))
        await writer.drain()
        await reader.read()

    server, port = await _serve(handler)
    async with server:
        with pytest.raises(DeliveryError, match=r"refused the session \(status 500 'not allowed here'\)"):
            await open_transport(_server(port), Path("."), connect_timeout=5)


async def test_a_plain_syslog_port_is_not_taken_for_relp() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a TCP syslog receiver reads and never answers

    server, port = await _serve(handler)
    async with server:
        with pytest.raises(DeliveryError, match="no answer to the RELP open within 1 s"):
            await open_transport(_server(port), Path("."), connect_timeout=1)


def test_transaction_numbers_wrap_after_the_maximum() -> None:
    t = TxnrSequence(first=MAX_TXNR)
    assert [t.take(), t.take(), t.take()] == [MAX_TXNR, 1, 2]


# --- real rsyslog imrelp -----------------------------------------------------------------------


async def test_real_imrelp_plain_and_tls(relp_receiver: RelpReceiver) -> None:
    for proto in ("RELP", "RELP-TLS"):
        server = ServerConfig.model_validate(relp_receiver.server_entry("r1", proto))
        t = await open_transport(server, Path("."), connect_timeout=5)
        mark = relp_receiver.mark()
        await t.write([b"".join(b"<14>host app: %s %d\n" % (proto.encode(), i) for i in range(1000))])
        await t.close()
        # write() returned: every message is already in the receiver's file (Direct queue, sync omfile)
        lines = relp_receiver.raw_lines()[mark:]
        assert lines == [f"<14>host app: {proto} {i}" for i in range(1000)]
    inputs = {f.proto for f in relp_receiver.fields_lines()}
    assert inputs == {"relp", "relptls"}


async def test_real_imrelp_tls_refuses_a_client_without_certificate(relp_receiver: RelpReceiver) -> None:
    entry = relp_receiver.server_entry("r1", "RELP-TLS")
    del entry["tls_client_cert"], entry["tls_client_key"]
    with pytest.raises((TlsConfigError, DeliveryError)) as exc:
        t = await open_transport(ServerConfig.model_validate(entry), Path("."), connect_timeout=5)
        await t.write([b"<14>should not arrive\n"])
    assert "r1 (RELP+TLS 127.0.0.1:" in str(exc.value)
    assert relp_receiver.raw_lines() == []


async def test_real_imrelp_tls_verifies_the_server_certificate(
    relp_receiver: RelpReceiver, tmp_path: Path
) -> None:
    entry = relp_receiver.server_entry("r1", "RELP-TLS", tls_ca_file=str(relp_receiver.certs.other_ca))
    with pytest.raises(TlsConfigError, match="not signed by a CA"):
        await open_transport(ServerConfig.model_validate(entry), tmp_path, connect_timeout=5)
    assert relp_receiver.raw_lines() == []


# --- end to end: the service against imrelp, receiver SIGKILL -------------------------------------
