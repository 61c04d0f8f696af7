"""The syslog sink against a real rsyslogd: every transport, framing and format round-trips; TLS failures
are clear; a receiver restart in the middle of a stream loses nothing; the UDP oversize policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from support.metricvalue import metric_value
from support.rsyslog import Fields, RsyslogReceiver, rsyslog_available
from support.syslogparse import parse

from siemconn.config import Configuration, ServerConfig
from siemconn.devtools.harness import wait_until_async
from siemconn.errors import DeliveryError, TlsConfigError
from siemconn.ops.metrics import Metrics
from siemconn.syslog.memqueue import MemQueue, cursor_at
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.transport import open_transport

pytestmark = [
    pytest.mark.needs_rsyslog,
    pytest.mark.skipif(not rsyslog_available(), reason="rsyslogd is not installed (SIEMCONN_SKIP_RSYSLOG=1)"),
]


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RsyslogReceiver]:
    r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    r.start()
    yield r
    r.stop()


def conf(servers: list[ServerConfig], **kw: Any) -> Configuration:
    return configuration(servers, **({"retry_count": -1, "batch_size": 25, "max_backoff_seconds": 0.2} | kw))


def make_events(case: str, n: int, big: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        ev: dict[str, Any] = {
            "id": i,
            "case": case,
            "event_timestamp": f"2023-11-01T10:{i % 60:02d}:00Z",
            "text": 'h\u00e9llo\n\tw\u00f6rld \x00\x1b[0m \u2028 \U0001f600 "quoted" \\ back',
            "nested": {"list": [1, 2.5, None, True, {"k": "v" * (i % 7)}]},
        }
        if big and i == n - 1:
            ev["blob"] = "B" * 200_000  # above rsyslog's default 8k, below this receiver's 512k
        out.append(ev)
    return out


async def wait_until(pred: Callable[[], bool], timeout: float = 30.0) -> None:
    await wait_until_async(pred, timeout)


async def deliver(servers: list[ServerConfig], q: MemQueue, tmp_path: Path, **kw: Any) -> WriterPool:
    """Run a pool until every server's cursor reached the end of the queue, then stop it."""
    pool = WriterPool(servers, q, conf(servers, **kw), tmp_path, connect_timeout=10)
    run = asyncio.create_task(pool.run())
    await wait_until(lambda: all(q.cursors[s.name] == len(q.events) for s in servers) or run.done())
    await pool.stop(10)
    await run
    return pool


def lines_for(rx: RsyslogReceiver, case: str) -> list[tuple[str, Fields]]:
    """(raw line, fields) pairs of one test case, in arrival order."""
    return rx.tagged(f'"case": "{case}"')


CASES = [
    ("UDP", "lf", "legacy", True),
    ("UDP", "lf", "rfc5424", True),
    ("UDP", "lf", "rfc3164", True),
    ("TCP", "lf", "legacy", True),
    ("TCP", "lf", "rfc5424", True),
    ("TCP", "lf", "rfc3164", True),
    ("TCP", "octet-counting", "legacy", True),
    ("TCP", "octet-counting", "rfc5424", True),
    ("TCP", "octet-counting", "rfc3164", True),
    ("TLS", "lf", "legacy", True),
    ("TLS", "octet-counting", "rfc5424", True),
    ("TLS", "lf", "rfc3164", False),  # server-only TLS
]


@pytest.mark.parametrize(("protocol", "framing", "fmt", "mutual"), CASES)
async def test_every_message_arrives_intact(
    rx: RsyslogReceiver, tmp_path: Path, protocol: str, framing: str, fmt: str, mutual: bool
) -> None:
    case = f"{protocol}-{framing}-{fmt}-{mutual}"
    n = 60
    evs = make_events(case, n, big=protocol != "UDP")
    s = rx.server_config(
        "r1",
        protocol,
        mutual=mutual,
        framing=framing,
        format=fmt,
        hostname="conn-1",
        app_name="vectra",
        structured_data='[siemconn@32473 tenant="acme"]',
        timestamp="event",
    )
    q = MemQueue(["r1"])
    q.put("entity_scoring.host" if fmt == "rfc5424" else "detections", evs)
    await deliver([s], q, tmp_path)

    got: list[tuple[str, Fields]] = []

    def arrived() -> bool:
        got[:] = lines_for(rx, case)
        return len(got) >= n

    await wait_until(arrived)
    assert len(got) == n  # no duplicates on a healthy connection
    for (raw, fields), ev in zip(got, evs, strict=True):
        p = parse(raw.encode(), fmt)
        assert json.loads(p.payload) == ev  # the payload is byte-exact JSON of the event
        assert (fields.pri, fields.fac, fields.sev) == (14, 1, 6)
        assert fields.proto == {"UDP": "udp", "TCP": "tcp", "TLS": "tls" if mutual else "tlsanon"}[protocol]
        if fmt == "rfc5424":
            assert (fields.host, fields.app, fields.procid, fields.msgid) == (
                "conn-1",
                "vectra",
                "-",
                "entity_scoring",
            )
            assert fields.sd == '[siemconn@32473 tenant="acme"]'
            assert fields.msg == p.payload
            assert p.timestamp == ev["event_timestamp"]
        elif fmt == "rfc3164":
            assert (fields.host, fields.app) == ("conn-1", "vectra")
            assert json.loads(fields.msg) == ev
        else:
            assert fields.app == "conn-1"  # rsyslog reads the legacy "HOSTNAME:" as the tag
            assert json.loads(fields.msg) == ev


async def test_legacy_default_wire_bytes_reach_rsyslog_unchanged(rx: RsyslogReceiver, tmp_path: Path) -> None:
    s = rx.server_config("r1", "TCP")
    t = await open_transport(s, tmp_path, connect_timeout=10)
    line = b'<14>2023-11-02T00:18:01Z VECTRA-SYSLOG-CONNECTOR: {"case": "exact", "id": 1}'
    await t.write([line + b"\n"])
    await t.close()
    lines = rx.wait_for(1, predicate=lambda ls: any('"case": "exact"' in x for x in ls))
    assert line.decode() in lines


async def test_mutual_tls_requires_the_client_certificate(rx: RsyslogReceiver, tmp_path: Path) -> None:
    s = rx.server_config("r1", "TLS", mutual=True, tls_client_cert=None, tls_client_key=None)
    with pytest.raises(TlsConfigError, match=r"r1 \(TLS 127\.0\.0\.1:\d+\).*tls_client_cert"):
        t = await open_transport(s, tmp_path, connect_timeout=10)
        await t.write([b'<14>1 - - - - - - {"case": "nocert"}\n'])
    await asyncio.sleep(0.3)
    assert not any('"nocert"' in line for line in rx.raw_lines())


async def test_unknown_ca_is_refused(rx: RsyslogReceiver, tmp_path: Path) -> None:
    s = rx.server_config("r1", "TLS", tls_ca_file=str(rx.certs.other_ca))
    with pytest.raises(TlsConfigError, match=r"r1 .*not signed by a CA in .*other-ca\.pem; put the right CA"):
        await open_transport(s, tmp_path, connect_timeout=10)


async def test_udp_oversize_policy(rx: RsyslogReceiver, tmp_path: Path) -> None:
    for policy in ("truncate", "drop"):
        case = f"oversize-{policy}"
        evs = [{"case": case, "id": 1}, {"case": case, "id": 2, "blob": "x" * 5000}, {"case": case, "id": 3}]
        s = rx.server_config("u", "UDP", max_message_size=1000, udp_oversize=policy)
        q = MemQueue(["u"])
        q.put("audit", evs)
        metrics = Metrics()
        pool = WriterPool([s], q, conf([s]), tmp_path, metrics=metrics)
        run = asyncio.create_task(pool.run())
        await wait_until(cursor_at(q, "u", 3))
        await pool.stop(5)
        await run
        want = 3 if policy == "truncate" else 2

        def third_once(ls: list[str], c: str = case) -> bool:
            return sum(f'"case": "{c}", "id": 3' in x for x in ls) == 1

        lines = rx.wait_for(want, predicate=third_once)
        mine = [x for x in lines if f'"case": "{case}"' in x]
        assert len(mine) == want
        assert metric_value(metrics.events_truncated.labels("u")) == 1
        if policy == "truncate":
            assert len(mine[1].encode()) == 1000 and mine[1].endswith("x")
        else:
            assert all('"id": 2' not in x for x in mine)


async def test_closed_connection_detected_before_next_write(tmp_path_factory: pytest.TempPathFactory) -> None:
    r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    r.start()
    try:
        s = r.server_config("r1", "TCP")
        t = await open_transport(s, r.directory, connect_timeout=10)
        await t.write([b'<14>1 - - - - - - {"n": 1}\n'])
        r.wait_for(1)
        r.stop()  # rsyslog closes its sessions on a graceful stop
        with pytest.raises(DeliveryError, match="closed the connection|connection lost"):
            await t.write([b'<14>1 - - - - - - {"n": 2}\n'])
        await t.close()
    finally:
        r.stop()


@pytest.mark.parametrize("protocol", ["TCP", "TLS"])
async def test_receiver_restart_mid_stream_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, protocol: str
) -> None:
    r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog"))
    r.start()
    try:
        s = r.server_config("r1", protocol, format="rfc5424", framing="octet-counting")
        q = MemQueue(["r1"])
        metrics = Metrics()
        pool = WriterPool([s], q, conf([s], batch_size=20), tmp_path, connect_timeout=10, metrics=metrics)
        run = asyncio.create_task(pool.run())
        total = 0
        for step in range(30):  # a stream of batches; the receiver restarts twice in the middle
            q.put("detections", [{"id": total + i, "case": "restart"} for i in range(20)])
            total += 20
            if step in (10, 20):
                await asyncio.to_thread(r.restart)
            await asyncio.sleep(0.01)
        await wait_until(lambda: q.cursors["r1"] == total, timeout=60)
        await pool.stop(10)
        await run
        lines = r.wait_for(total, timeout=30)
        ids = [json.loads(parse(x.encode(), "rfc5424").payload)["id"] for x in lines]
        assert set(ids) == set(range(total))  # at-least-once: duplicates are allowed, losses are not
        assert metric_value(metrics.reconnects.labels("r1")) >= 2  # both restarts were noticed
        print(f"{protocol}: {len(ids) - total} duplicates of {total}")
    finally:
        r.stop()
