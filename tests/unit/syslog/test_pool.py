"""siemconn.syslog.pool.WriterPool with the in-memory queue and real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from support.metricvalue import metric_value
from support.syslogparse import parse, unframe

from siemconn.config import Configuration, ServerConfig
from siemconn.devtools.harness import wait_until_async
from siemconn.errors import AllServersDownError, DeliveryError
from siemconn.ops.metrics import Metrics
from siemconn.syslog.memqueue import MemQueue, cursor_at
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.transport import open_transport


def cfg(servers: list[ServerConfig], **kw: Any) -> Configuration:
    return configuration(servers, **({"retry_count": -1, "batch_size": 10, "max_backoff_seconds": 0.05} | kw))


def srv(name: str, port: int, protocol: str = "TCP", **kw: Any) -> ServerConfig:
    return ServerConfig.model_validate(
        {"name": name, "server_protocol": protocol, "server_host": "127.0.0.1", "server_port": port} | kw
    )


def events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "msg": f"event {i}"} for i in range(start, start + n)]


class Sink:
    """TCP server on 127.0.0.1 collecting bytes; optionally closes each connection after N bytes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.connections = 0
        self.close_after: int | None = None
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> Sink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        got = 0
        while True:
            want = 65536 if self.close_after is None else max(1, self.close_after - got)
            chunk = await reader.read(want)
            if not chunk:
                break
            self.data += chunk
            got += len(chunk)
            if self.close_after is not None and got >= self.close_after:
                break
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def ids(self) -> list[int]:
        return [json.loads(parse(m, "legacy").payload)["id"] for m in unframe(bytes(self.data), "lf")]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self._writers:
            w.close()


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., Any]]:
    made: list[Sink] = []

    async def make(port: int = 0) -> Sink:
        s = await Sink().start(port)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def refused_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connections are refused until the socket is closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


async def fast_sleep(delay: float) -> None:
    await asyncio.sleep(0.001)


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    await wait_until_async(pred, timeout)


def make_pool(servers: list[ServerConfig], q: MemQueue, tmp_path: Path, **kw: Any) -> WriterPool:
    conf_kw = {k: kw.pop(k) for k in ("retry_count", "batch_size", "max_backoff_seconds") if k in kw}
    kw.setdefault("sleep", fast_sleep)
    return WriterPool(servers, q, cfg(servers, **conf_kw), tmp_path, connect_timeout=5, **kw)


# --- delivery -------------------------------------------------------------------------------------


async def test_delivers_everything_in_order_and_acks(tmp_path: Path, sinks: Any) -> None:
    sink = await sinks()
    s = srv("a", sink.port)
    q = MemQueue(["a"])
    q.put("detections", events(95))
    metrics = Metrics()
    pool = make_pool([s], q, tmp_path, metrics=metrics)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: q.cursors["a"] == 95)
    q.put("audit", events(5, start=95))  # new data wakes the idle writer
    await wait_until(lambda: q.cursors["a"] == 100 and len(sink.ids()) == 100)
    assert pool.state("a") == "up"
    await pool.stop(5)
    await asyncio.wait_for(run, 5)
    assert sink.ids() == list(range(100))
    assert [len(b.events) for b in q.acks["a"]][:9] == [10] * 9  # batch_size respected
    assert metric_value(metrics.events_delivered.labels("a")) == 100
    assert metric_value(metrics.server_up.labels("a")) == 0  # stopped
    assert pool.state("a") == "stopped"


class GatedTransport:
    """A transport whose write blocks until released; records what it was given."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.written: list[bytes] = []
        self.fail_next = 0
        self.closed = False

    async def write(self, frames: list[bytes]) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise DeliveryError("simulated: the server closed the connection")
        self.written.extend(frames)

    async def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_ack_only_after_the_write_is_flushed(tmp_path: Path) -> None:
    transports: list[GatedTransport] = []

    async def opener(*a: Any, **k: Any) -> GatedTransport:
        transports.append(GatedTransport())
        return transports[-1]

    q = MemQueue(["a"])
    q.put("audit", events(10))
    pool = make_pool([srv("a", 9)], q, tmp_path, opener=opener)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: bool(transports) and transports[0].entered.is_set())
    await asyncio.sleep(0.05)
    assert q.cursors["a"] == 0 and not q.acks["a"]  # written but not flushed: not acked
    transports[0].gate.set()
    await wait_until(lambda: q.cursors["a"] == 10)
    assert len(unframe(b"".join(transports[0].written), "lf")) == 10
    await pool.stop(5)
    await run


async def test_failed_write_is_resent_after_reconnect(tmp_path: Path) -> None:
    transports: list[GatedTransport] = []

    async def opener(*a: Any, **k: Any) -> GatedTransport:
        t = GatedTransport()
        t.gate.set()
        t.fail_next = 1 if not transports else 0  # the first connection dies on its first write
        transports.append(t)
        return t

    q = MemQueue(["a"])
    q.put("audit", events(25))
    metrics = Metrics()
    pool = make_pool([srv("a", 9)], q, tmp_path, opener=opener, metrics=metrics)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: q.cursors["a"] == 25)
    await pool.stop(5)
    await run
    assert len(transports) == 2 and transports[0].closed and transports[0].written == []
    lines = unframe(b"".join(transports[1].written), "lf")
    ids = [json.loads(parse(m, "legacy").payload)["id"] for m in lines]
    assert ids == list(range(25))
    assert metric_value(metrics.events_failed.labels("a")) == 10
    assert metric_value(metrics.reconnects.labels("a")) == 1


async def test_receiver_dropping_connections_loses_nothing(tmp_path: Path, sinks: Any) -> None:
    sink = await sinks()
    sink.close_after = 3000  # every connection dies after ~3 KB: mid-batch, mid-message
    q = MemQueue(["a"])
    q.put("detections", events(200))
    pool = make_pool([srv("a", sink.port)], q, tmp_path, batch_size=20)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: q.cursors["a"] == 200, timeout=30)
    await pool.stop(5)
    await run
    assert sink.connections > 3
    # a frame cut by the receiver is incomplete; every complete event arrived at least once
    lines = bytes(sink.data).split(b"\n")
    seen = set()
    for line in lines:
        try:
            seen.add(json.loads(parse(line, "legacy").payload)["id"])
        except (AssertionError, ValueError):
            pass
    assert seen == set(range(200))


# --- retry_count / down / up ----------------------------------------------------------------------


async def test_retry_count_declares_down_then_all_down_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock, port = refused_port()
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)
        await asyncio.sleep(0.001)

    q = MemQueue(["a"])
    q.put("audit", events(3))
    pool = make_pool([srv("a", port)], q, tmp_path, retry_count=2, sleep=sleep, max_backoff_seconds=300)
    with pytest.raises(
        AllServersDownError, match=r"down \(syslog server a \(TCP 127\.0\.0\.1:\d+\): connection refused"
    ):
        await asyncio.wait_for(pool.run(), 15)
    sock.close()
    assert len(delays) == 3  # the first attempt and 2 retries failed
    assert delays[0] < delays[1] < delays[2]  # exponential (jitter is at most a factor 2)
    out = capsys.readouterr().out
    assert out.count("syslog_server_down") == 1 and "refused" in out
    assert out.count("syslog_server_lost") == 1
    assert q.cursors["a"] == 0 and await q.depth("a") == 3  # nothing lost


async def test_udp_refused_sends_still_count_towards_retry_count(tmp_path: Path) -> None:
    """UDP has no connection to reset: a refused send (ICMP port unreachable) is the only sign of an
    unreachable server, so it still counts as a failed reconnect (a UDP "connect" always succeeds)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: the kernel answers each datagram with port unreachable
    q = MemQueue(["u"])
    q.put("audit", events(5))
    pool = make_pool([srv("u", port, "UDP")], q, tmp_path, retry_count=1, sleep=fast_sleep)
    with pytest.raises(AllServersDownError):
        await asyncio.wait_for(pool.run(), 30)


async def test_negative_retry_count_is_never_down_and_recovers(tmp_path: Path, sinks: Any) -> None:
    sock, port = refused_port()
    q = MemQueue(["a"])
    q.put("audit", events(30))
    metrics = Metrics()
    pool = make_pool([srv("a", port)], q, tmp_path, retry_count=-1, metrics=metrics)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: metric_value(metrics.reconnects.labels("a")) >= 20)
    assert pool.state("a") == "retrying" and not run.done()
    assert metric_value(metrics.server_up.labels("a")) == 0
    sock.close()
    sink = await sinks(port)
    await wait_until(lambda: q.cursors["a"] == 30)
    assert pool.state("a") == "up" and sink.ids() == list(range(30))
    assert metric_value(metrics.server_up.labels("a")) == 1
    await pool.stop(5)
    await run


async def test_one_server_down_does_not_block_the_other(tmp_path: Path, sinks: Any) -> None:
    sock, port = refused_port()
    good = await sinks()
    health_calls: list[tuple[str, str]] = []

    class Health:
        def server_ok(self, name: str) -> None:
            health_calls.append(("ok", name))

        def server_failed(self, name: str, reason: str) -> None:
            health_calls.append(("failed", name))

    q = MemQueue(["bad", "good"])
    q.put("audit", events(50))
    pool = make_pool([srv("bad", port), srv("good", good.port)], q, tmp_path, retry_count=1, health=Health())
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: pool.state("bad") == "down" and q.cursors["good"] == 50)
    q.put("audit", events(50, start=50))
    await wait_until(lambda: q.cursors["good"] == 100)
    assert good.ids() == list(range(100))
    assert not run.done()  # one server is still up: keep going
    assert await q.depth("bad") == 100  # the down server keeps its backlog
    assert ("ok", "good") in health_calls and ("failed", "bad") in health_calls
    # the down server comes back: it is re-probed and catches up
    sock.close()
    bad = await sinks(port)
    await wait_until(lambda: q.cursors["bad"] == 100)
    assert pool.state("bad") == "up" and bad.ids() == list(range(100))
    await pool.stop(5)
    await run


# --- stop and UDP oversize -----------------------------------------------------------------------


async def test_stop_finishes_the_in_flight_batch(tmp_path: Path) -> None:
    transports: list[GatedTransport] = []

    async def opener(*a: Any, **k: Any) -> GatedTransport:
        transports.append(GatedTransport())
        return transports[-1]

    q = MemQueue(["a"])
    q.put("audit", events(30))
    pool = make_pool([srv("a", 9)], q, tmp_path, opener=opener)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: bool(transports) and transports[0].entered.is_set())
    stopping = asyncio.create_task(pool.stop(10))
    await asyncio.sleep(0.05)
    transports[0].gate.set()
    await stopping
    await run
    assert q.cursors["a"] == 10  # the in-flight batch was acked, no new batch was started
    assert transports[0].closed


async def test_udp_oversize_truncate_and_drop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    big = {"id": 7, "blob": "x" * 2000}
    for policy in ("truncate", "drop"):
        q = MemQueue(["u"])
        q.put("audit", [{"id": 6}, big, {"id": 8}])
        metrics = Metrics()
        s = srv("u", port, "UDP", max_message_size=1000, udp_oversize=policy)
        pool = make_pool([s], q, tmp_path, metrics=metrics)
        run = asyncio.create_task(pool.run())
        await wait_until(cursor_at(q, "u", 3))
        await pool.stop(5)
        await run
        got = [rx.recv(70000) for _ in range(3 if policy == "truncate" else 2)]
        assert json.loads(parse(got[0], "legacy").payload) == {"id": 6}
        assert json.loads(parse(got[-1], "legacy").payload) == {"id": 8}
        if policy == "truncate":
            assert len(got[1]) == 1000 and got[1].startswith(b"<14>")
        assert metric_value(metrics.events_truncated.labels("u")) == 1
        assert metric_value(metrics.events_sent.labels("u")) == (3 if policy == "truncate" else 2)
    rx.close()
    out = capsys.readouterr().out
    assert "syslog_udp_events_truncated" in out
    assert "syslog_udp_event_dropped" in out and '"event_id": 7' in out.replace("event_id=7", '"event_id": 7')


async def test_real_transport_opener_is_the_default(tmp_path: Path) -> None:
    pool = make_pool([srv("a", 9)], MemQueue(["a"]), tmp_path)
    assert pool.opener is open_transport
    assert pool.state("a") == "starting"
