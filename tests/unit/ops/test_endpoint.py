"""siemconn.ops.endpoint: /metrics and /healthz over real HTTP on 127.0.0.1, loopback only, garbage and
floods refused, the address syntax. The running service's endpoint is tests/e2e/test_metrics.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from support.clock import Clock

from siemconn.errors import EndpointError
from siemconn.ops.endpoint import MAX_CONNECTIONS, parse_address, start_http_server
from siemconn.ops.health import Health
from siemconn.ops.metrics import NO_METRICS, Metrics


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9108", "127.0.0.1:", ":9108", "127.0.0.1:99999", "host:port"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(EndpointError, match="HOST:PORT"):
        parse_address(address)


# --- HTTP endpoint -------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> Health:
    return Health(["siem1", "siem2"], window=300, clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def endpoint(metrics: Metrics, health: Health) -> AsyncIterator[tuple[asyncio.Server, str]]:
    server = await start_http_server("127.0.0.1:0", metrics, health)
    host, port = server.sockets[0].getsockname()[:2]
    yield server, f"http://{host}:{port}"
    server.close()
    await server.wait_closed()


async def test_binds_loopback_only(endpoint: tuple[asyncio.Server, str]) -> None:
    server, _ = endpoint
    assert server.sockets
    assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}


async def test_metrics_shows_counter_values(endpoint: tuple[asyncio.Server, str], metrics: Metrics) -> None:
    _, base = endpoint
    metrics.events_delivered.labels(server="siem1").inc(42)
    metrics.queue_depth.labels(server="siem2").set(7)
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    assert 'siemconn_events_delivered_total{server="siem1"} 42.0' in r.text
    assert 'siemconn_queue_depth{server="siem2"} 7.0' in r.text


async def test_healthz_flips_to_503_and_back(
    endpoint: tuple[asyncio.Server, str], health: Health, clock: Clock
) -> None:
    _, base = endpoint
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json()["status"] == "ok"

        health.server_failed("siem2", "connection refused")
        clock.t += 301
        health.loop_alive()
        r = await c.get("/healthz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["servers"]["siem2"]["state"] == "down"
        assert body["servers"]["siem2"]["reason"] == "connection refused"
        assert body["servers"]["siem1"]["ok"] is True
        assert any("siem2" in p for p in body["problems"])

        health.server_ok("siem2")
        r = await c.get("/healthz?verbose=1")  # the query string is ignored
        assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_other_paths_and_methods(endpoint: tuple[asyncio.Server, str]) -> None:
    _, base = endpoint
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        assert (await c.get("/")).status_code == 404
        assert (await c.get("/metrics/extra")).status_code == 404
        assert (await c.post("/healthz", content=b"x")).status_code == 405
        head = await c.head("/healthz")
        assert head.status_code == 200 and head.content == b""


async def test_garbage_request_gets_400_and_server_keeps_serving(
    endpoint: tuple[asyncio.Server, str],
) -> None:
    _, base = endpoint
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400 ")
    # an oversized header block is refused too
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"a" * 20_000 + b"\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400 ")
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        assert (await c.get("/healthz")).status_code == 200


async def test_metrics_optional(health: Health) -> None:
    server = await start_http_server("127.0.0.1:0", NO_METRICS, health)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert (await c.get("/metrics")).status_code == 404
            assert (await c.get("/healthz")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_port_in_use_raises_endpoint_error(health: Health) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EndpointError, match=f"127.0.0.1:{port}.*cannot be bound"):
            await start_http_server(f"127.0.0.1:{port}", NO_METRICS, health)


async def test_concurrent_clients_are_bounded(endpoint: tuple[asyncio.Server, str]) -> None:
    """Idle clients beyond MAX_CONNECTIONS are closed at once; the ones within wait for the idle timeout."""
    _, base = endpoint
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_CONNECTIONS + 8)]

    async def closed_at_once(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(0.5):
                return await reader.read(1) == b""
        except TimeoutError:
            return False  # served: idle, kept open until the request timeout
        except ConnectionError:
            return True

    closed = sum(await asyncio.gather(*(closed_at_once(r) for r, _ in conns)))
    for _reader, writer in conns:
        writer.close()
    assert closed == 8
