"""Health state, the /metrics + /healthz endpoint over real HTTP on 127.0.0.1, and the heartbeat check."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.configs import configuration

from siemconn.errors import EndpointError
from siemconn.ops.endpoint import parse_address, start_http_server
from siemconn.ops.health import Health
from siemconn.ops.heartbeat import HEARTBEAT_FILE, check_heartbeat, main, write_heartbeat
from siemconn.ops.metrics import NO_METRICS, Metrics


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- Health --------------------------------------------------------------------------------


def test_new_and_idle_servers_are_healthy() -> None:
    clock = Clock()
    h = Health(["a", "b"], window=300, clock=clock)
    ok, report = h.status()
    assert ok and report["status"] == "ok" and report["problems"] == []
    assert set(report["servers"]) == {"a", "b"}
    h.server_ok("a")
    clock.t += 3600  # an hour with nothing to send is not a failure
    h.loop_alive()
    assert h.status()[0]


def test_failing_server_turns_unhealthy_after_window_and_back_on_success() -> None:
    clock = Clock()
    h = Health(["a", "b"], window=300, clock=clock)
    h.server_failed("b", "connection refused")
    clock.t += 299
    h.loop_alive()
    ok, report = h.status()
    assert ok and report["servers"]["b"]["state"] == "failing"
    clock.t += 2
    h.server_failed("b", "timed out")  # a later failure does not restart the clock
    ok, report = h.status()
    assert not ok
    assert report["status"] == "unhealthy"
    assert report["servers"]["b"] == {
        "ok": False,
        "state": "down",
        "last_ok_seconds_ago": None,
        "failing_for_seconds": 301.0,
        "reason": "timed out",
    }
    assert report["servers"]["a"]["ok"] is True
    assert len(report["problems"]) == 1 and "server b" in report["problems"][0]
    assert "timed out" in report["problems"][0]
    h.server_ok("b")
    ok, report = h.status()
    assert ok and report["servers"]["b"]["state"] == "up" and report["servers"]["b"]["reason"] is None


def test_stale_loop_is_unhealthy() -> None:
    clock = Clock()
    h = Health(["a"], window=300, clock=clock, loop_timeout=60)
    clock.t += 61
    ok, report = h.status()
    assert not ok and report["loop"]["ok"] is False and "event loop" in report["problems"][0]
    h.loop_alive()
    assert h.status()[0]


def test_unknown_server_is_tracked() -> None:
    clock = Clock()
    h = Health([], window=10, clock=clock)
    h.server_failed("late", "refused")
    clock.t += 11
    h.loop_alive()
    ok, report = h.status()
    assert not ok and "late" in report["servers"]


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


# --- heartbeat file ------------------------------------------------------------------------


def test_heartbeat_fresh_stale_missing(tmp_path: Path) -> None:
    assert check_heartbeat(tmp_path)[0] is False
    assert "no heartbeat file" in check_heartbeat(tmp_path)[1]
    path = write_heartbeat(tmp_path, now=1000.0)
    assert path == tmp_path / HEARTBEAT_FILE
    assert json.loads(path.read_text())["time"] == 1000.0
    assert check_heartbeat(tmp_path, max_age=60, now=1059.0) == (True, "ok: heartbeat 59 s old")
    ok, reason = check_heartbeat(tmp_path, max_age=60, now=1061.0)
    assert not ok and "61 s old" in reason
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]  # no temp file left behind


def test_heartbeat_carries_health_verdict(tmp_path: Path) -> None:
    clock = Clock()
    h = Health(["siem1"], window=10, clock=clock)
    h.server_failed("siem1", "certificate verify failed")
    clock.t += 11
    h.loop_alive()
    write_heartbeat(tmp_path, h, now=clock.t)
    ok, reason = check_heartbeat(tmp_path, now=clock.t + 1)
    assert not ok and "siem1" in reason and "certificate verify failed" in reason
    assert check_heartbeat(tmp_path, now=clock.t + 1, liveness_only=True)[0] is True
    h.server_ok("siem1")
    write_heartbeat(tmp_path, h, now=clock.t)
    assert check_heartbeat(tmp_path, now=clock.t + 1)[0] is True


def test_corrupt_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text("{not json")
    ok, reason = check_heartbeat(tmp_path)
    assert not ok and "unreadable" in reason


def test_healthcheck_command_reads_data_dir_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    conf = configuration(data_dir="./state").model_dump(exclude_unset=True)
    (tmp_path / "config.json").write_text(json.dumps({"configuration": conf}))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "config.json"], out=out) == 1
    assert "no heartbeat file" in out.getvalue()
    (tmp_path / "state").mkdir()
    write_heartbeat(Path("state"))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "config.json"], out=out) == 0
    assert out.getvalue().startswith("ok:")
    # default data_dir is ./data; a missing config is reported, not raised
    out = io.StringIO()
    assert main(["healthcheck", "--config", "missing.json"], out=out) == 1
    assert "cannot read missing.json" in out.getvalue() and "file not found" in out.getvalue()
    # the config loader reads it: an invalid file is reported with the field, not guessed around
    (tmp_path / "bad.json").write_text(json.dumps({"configuration": {"data_dir": 5}}))
    out = io.StringIO()
    assert main(["healthcheck", "--config", "bad.json"], out=out) == 1
    assert "cannot read bad.json" in out.getvalue() and "configuration.data_dir" in out.getvalue()
    out = io.StringIO()
    assert main(["healthcheck", "--data-dir", "state", "--max-age", "30"], out=out) == 0


def test_metrics_off_record_nothing_and_do_not_load_prometheus_client() -> None:
    """The default (no metrics_address): every metric call works and does nothing, and prometheus-client
    is never imported (it costs ~2 MB of resident memory for an endpoint nobody serves)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import siemconn.service\n"
        "from siemconn.ops.metrics import Metrics\n"
        "m = Metrics(enabled=False)\n"
        "m.events_fetched.labels(stream='audit').inc(5)\n"
        "m.queue_depth.labels('s').set(3)\n"
        "m.api_requests.labels(status='200').inc()\n"
        "assert m.registry is None and not m.enabled\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_service_turns_metrics_on_only_with_an_address(tmp_path: Path) -> None:
    from support.configs import configuration

    from siemconn.config import Credentials, Settings
    from siemconn.service import Service

    creds = Credentials.model_validate(
        {"BASE_URL": "http://127.0.0.1:9", "CLIENT_ID": "c", "CLIENT_SECRET": "s"}
    )
    cases: list[tuple[dict[str, Any], bool]] = [({}, False), ({"metrics_address": "127.0.0.1:9108"}, True)]
    for extra, enabled in cases:
        cfg = configuration(data_dir=str(tmp_path / "d"), **extra)
        settings = Settings(configuration=cfg, credentials=creds, config_path=tmp_path / "config.json")
        assert Service(settings).metrics.enabled is enabled


async def test_concurrent_clients_are_bounded(endpoint: tuple[asyncio.Server, str]) -> None:
    """Idle clients beyond MAX_CONNECTIONS are closed at once; the ones within wait for the idle timeout."""
    from siemconn.ops.endpoint import MAX_CONNECTIONS

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
