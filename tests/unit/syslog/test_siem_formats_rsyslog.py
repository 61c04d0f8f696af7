"""CEF and LEEF through a real rsyslogd on UDP, TCP (both framings) and TLS: every event arrives as
exactly one message, byte-exact, and parses back (strict parsers) to its documented mapping."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.configs import configuration
from support.rsyslog import RsyslogReceiver, rsyslog_available
from unit.syslog.test_siem_formats import SAMPLES, check_cef, check_leef

from siemconn.config import ServerConfig
from siemconn.syslog.memqueue import MemQueue
from siemconn.syslog.pool import WriterPool

pytestmark = pytest.mark.skipif(not rsyslog_available(), reason="rsyslogd is not installed")

NASTY = 'a=b|c\\d\ne\rf\tg ^~ é 中 😀 "q" \\= \\n'


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RsyslogReceiver]:
    r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog-siem"))
    r.start()
    yield r
    r.stop()


def case_events(case: str) -> list[tuple[str, dict[str, Any]]]:
    """(stream key, event) pairs: every real sample, plus one event with hostile text in every field."""
    out: list[tuple[str, dict[str, Any]]] = []
    for stream, evs in SAMPLES.items():
        if stream.startswith("_"):
            continue
        for ev in evs:
            e = copy.deepcopy(ev) | {"case": case}
            key = stream if stream != "entity_scoring" else f"entity_scoring.{ev.get('type', 'account')}"
            out.append((key, e))
    hostile = {
        "id": 999,
        "case": case,
        "category": NASTY,
        "detection_type": NASTY,
        "entity_uid": NASTY,
        "type": "host",
        "detection_href": "https://t/detections/1?detail_id=2&x=" + NASTY,
        "mitre": [NASTY, "T1"],
        "threat": 99,
        "certainty": 10,
        "event_timestamp": "2024-01-02T03:04:05Z",
    }
    out.append(("detections", hostile))
    return out


async def deliver(server: ServerConfig, q: MemQueue, tmp_path: Path) -> None:
    conf = configuration([server], retry_count=-1, batch_size=7, max_backoff_seconds=0.2)
    pool = WriterPool([server], q, conf, tmp_path, connect_timeout=10)
    run = asyncio.create_task(pool.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while q.cursors[server.name] < len(q.events) and not run.done():
        assert loop.time() < deadline, "not delivered in time"
        await asyncio.sleep(0.02)
    await pool.stop(10)
    await run


CASES = [
    ("UDP", "lf", True),
    ("TCP", "lf", True),
    ("TCP", "octet-counting", True),
    ("TLS", "lf", True),
    ("TLS", "octet-counting", False),
]


@pytest.mark.parametrize("fmt", ["cef", "leef"])
@pytest.mark.parametrize(("protocol", "framing", "mutual"), CASES)
async def test_each_event_arrives_as_one_message(
    rx: RsyslogReceiver, tmp_path: Path, fmt: str, protocol: str, framing: str, mutual: bool
) -> None:
    case = f"{fmt}-{protocol}-{framing}-{mutual}"
    delimiter = "^" if framing == "octet-counting" else "\t"
    s = rx.server_config(
        "r1",
        protocol,
        mutual=mutual,
        framing=framing,
        format=fmt,
        hostname="conn-1",
        include_raw_event=True,
        leef_delimiter=delimiter,
    )
    evs = case_events(case)
    q = MemQueue(["r1"])
    for key, ev in evs:
        q.put(key, [ev])
    await deliver(s, q, tmp_path)
    tag = f'"case": "{case}"'
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        raw = rx.tagged(tag)
        if len(raw) >= len(evs) or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(raw) == len(evs)  # one message per event: none split, none merged, none lost
    for (line, fields), (key, ev) in zip(raw, evs, strict=True):
        message = line.encode("utf-8", errors="surrogateescape")
        if fmt == "cef":
            check_cef(message, ev, key, raw=True)
        else:
            check_leef(message, ev, key, delimiter, raw=True)
        assert (fields.pri, fields.host) == (14, "conn-1")
        assert fields.proto == {"UDP": "udp", "TCP": "tcp", "TLS": "tls" if mutual else "tlsanon"}[protocol]
