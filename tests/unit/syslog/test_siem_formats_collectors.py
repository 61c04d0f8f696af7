"""CEF and LEEF framed and read by real collectors, with every C0 control character and DEL in the
event's values: each event arrives as exactly one record (no fragment, no merge) that parses back to
its documented mapping (docs/formats.md, "Control characters" and "Collectors").

- syslog-ng (Debian 12's 3.38) over TCP with LF framing, UDP, and octet counting.
  A raw NUL ends a message in syslog-ng's LF reader and the rest becomes new, headerless messages: the
  test fails with those fragments if a control character reaches the wire.
- rsyslog over RELP (imrelp); over imtcp at rsyslog's default control-character escaping, where
  CEF and LEEF with a printable delimiter arrive byte for byte and LEEF's tab turns into ``#011``;
  and rsyslog's mmnormalize with liblognorm's `cef` parser, whose fields must equal the strict parser's.

Events go through siemconn's real writer path (WriterPool, the server's transport and formatter), and
once end to end: an API answer, the running service, syslog-ng.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import cefparse
from support.e2e import Connector
from support.poison_api import PoisonApi
from support.reliability import wait_for
from support.rsyslog import RelpReceiver, RsyslogReceiver, rsyslog_available
from support.syslogng import SyslogNgReceiver, syslog_ng_available
from unit.syslog.test_siem_formats import check_cef, check_leef, is_control
from unit.syslog.test_siem_formats_rsyslog import case_events, deliver

from siemconn.config import ServerConfig
from siemconn.syslog.memqueue import MemQueue

# every C0 control character and DEL, NUL first
CONTROLS = "".join(chr(c) for c in range(0x20)) + "\x7f"


def control_events(case: str) -> list[tuple[str, dict[str, Any]]]:
    """One event per mapped stream with every control character in each text value the mapping carries
    (header name included), in lists and objects (JSON values) and, through the raw event, everywhere."""
    text = f"x{CONTROLS}y"
    return [
        (
            "detections",
            {
                "id": 1001,
                "case": case,
                "category": text,
                "detection_type": text,
                "entity_uid": text,
                "type": "host",
                "detection_href": "https://t/detections/1?" + text,
                "url": text,
                "mitre": [text, "T1"],
                "threat": 50,
                "certainty": 50,
                "event_timestamp": "2024-01-02T03:04:05Z",
            },
        ),
        (
            "entity_scoring.account",
            {
                "id": 1002,
                "case": case,
                "name": text,
                "type": "account",
                "urgency_reason": text,
                "severity": text,
                "active_detection_types": [text],
                "event_timestamp": "2024-01-02T03:04:05Z",
            },
        ),
        (
            "audit",
            {
                "id": 1003,
                "case": case,
                "username": text,
                "message": text,
                "event_object": text,
                "event_action": "login",
                "result_status": "success",
                "event_data": {text: text},
                "event_timestamp": "2024-01-02T03:04:05Z",
            },
        ),
    ]


def all_events(case: str) -> list[tuple[str, dict[str, Any]]]:
    return case_events(case) + control_events(case)


async def send(server: ServerConfig, evs: list[tuple[str, dict[str, Any]]], tmp_path: Path) -> None:
    q = MemQueue([server.name])
    for key, ev in evs:
        q.put(key, [ev])
    await deliver(server, q, tmp_path)


def check(fmt: str, message: bytes, key: str, ev: dict[str, Any], delimiter: str) -> None:
    if fmt == "cef":
        check_cef(message, ev, key, raw=True)
        assert not any(is_control(c) for c in message.decode())
    else:
        check_leef(message, ev, key, delimiter, raw=True)
        assert not any(is_control(c) for c in message.decode().replace(delimiter, ""))


async def poll(get: Any, n: int, timeout: float = 30) -> list[Any]:
    """`get()` until it returns at least `n` items (or time runs out), then a little longer to see any
    extra (fragment) record arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(get()) < n and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    result: list[Any] = get()
    return result


# --- syslog-ng ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sng(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyslogNgReceiver]:
    if not syslog_ng_available():
        pytest.skip("no syslog-ng: run scripts/fetch_syslog_ng.py (see tests/support/syslogng.py)")
    r = SyslogNgReceiver(tmp_path_factory.mktemp("syslog-ng"))
    r.start()
    yield r
    r.stop()


SNG_CASES = [("TCP", "\t"), ("UDP", "\t"), ("OC", "^")]


@pytest.mark.parametrize("fmt", ["cef", "leef"])
@pytest.mark.parametrize(("transport", "delimiter"), SNG_CASES)
async def test_syslog_ng_reads_each_event_as_one_record(
    sng: SyslogNgReceiver, tmp_path: Path, fmt: str, transport: str, delimiter: str
) -> None:
    case = f"sng-{fmt}-{transport}"
    entry = sng.server_entry(
        "ng", transport, format=fmt, hostname="conn-1", include_raw_event=True, leef_delimiter=delimiter
    )
    evs = all_events(case)
    since = len(sng.records())
    await send(ServerConfig.model_validate(entry), evs, tmp_path)
    src = {"TCP": "s_tcp", "UDP": "s_udp", "OC": "s_oc"}[transport]
    records = await poll(lambda: [r for r in sng.records()[since:] if r["src"] == src], len(evs))
    # exactly one record per event: a fragment would be an extra record without the case tag
    assert len(records) == len(evs), [r["raw"][:120] for r in records if case not in r["raw"]]
    for rec, (key, ev) in zip(records, evs, strict=True):
        assert rec["HOST"] == "conn-1"
        check(fmt, rec["raw"].encode("utf-8", errors="surrogateescape"), key, ev, delimiter)
        # syslog-ng's RFC 3164 parser takes "CEF"/"LEEF" as the program; header + message is the record
        assert rec["LEGACY_MSGHDR"] + rec["MESSAGE"] == rec["raw"].split(" conn-1 ", 1)[1]


@pytest.mark.e2e
def test_the_service_sends_control_characters_as_one_record_each(
    sng: SyslogNgReceiver, tmp_path: Path
) -> None:
    """The whole path: the API answers events whose values hold every control character (as JSON
    escapes, as RUX sends them), the service queues them and sends CEF and LEEF to syslog-ng over TCP
    with LF framing. syslog-ng makes exactly one record per event and server, and each parses back."""
    evs = control_events("e2e")
    pages = {
        key: {0: b'{"events": [%s], "next_checkpoint": 5000, "remaining_count": 0}' % json.dumps(ev).encode()}
        for key, ev in evs
    }
    api = PoisonApi(pages).start()
    since = len(sng.records())
    common = {"hostname": "conn-1", "include_raw_event": True}
    servers = [
        sng.server_entry("cef1", "TCP", format="cef", **common),
        sng.server_entry("leef1", "TCP", format="leef", **common),
    ]
    conn = Connector(tmp_path / "c", api.url, servers, schedule="* * * * * *")
    try:
        conn.start()
        wait_for(lambda: len(sng.records()[since:]) >= 2 * len(evs), 60, "every event on both servers")
        assert conn.terminate() == 0
    finally:
        conn.kill()
        api.stop()
    records = [r for r in sng.records()[since:] if r["src"] == "s_tcp"]
    assert len(records) == 2 * len(evs), [r["raw"][:120] for r in records]
    by_id = {ev["id"]: (key, ev) for key, ev in evs}
    for fmt in ("cef", "leef"):
        mine = [r["raw"] for r in records if r["raw"].split(" conn-1 ", 1)[-1].startswith(fmt.upper())]
        assert len(mine) == len(evs)
        for raw in mine:
            key, ev = by_id[int(raw.split("externalId=", 1)[1].split(" " if fmt == "cef" else "\t", 1)[0])]
            check(fmt, raw.encode("utf-8", errors="surrogateescape"), key, ev, "\t")


def kv_parser_reads(value: str) -> str:
    """docs/formats.md, syslog-ng row: kv-parser trims leading and trailing spaces and drops the quotes
    around a value that starts and ends with one; it changes nothing else in a LEEF value."""
    v = value.strip(" ")
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v


async def test_syslog_ng_kv_parser_reads_leef_values(sng: SyslogNgReceiver, tmp_path: Path) -> None:
    """LEEF with `leef_delimiter: "^"` through syslog-ng 3.38's csv-parser and kv-parser(pair-separator("^")):
    every attribute arrives under its key with its value, commas, `=`, backslashes and JSON included,
    except for kv-parser's own two habits (spaces trimmed, surrounding quotes dropped)."""
    case = "sng-kv"
    entry = sng.server_entry(
        "kv", "KV", format="leef", hostname="conn-1", include_raw_event=True, leef_delimiter="^"
    )
    habits = {
        "id": 77,
        "case": case,
        "username": '  padded, "x" = y  ',
        "message": '"quoted"',
        "source_ip": "1.2.3.4",
    }
    evs = all_events(case) + [("audit", habits)]
    since = len(sng.kv_records())
    await send(ServerConfig.model_validate(entry), evs, tmp_path)
    records = await poll(lambda: sng.kv_records()[since:], len(evs))
    assert len(records) == len(evs)
    for rec, (key, ev) in zip(records, evs, strict=True):
        message = rec["raw"].encode("utf-8", errors="surrogateescape")
        lf = check_leef(message, ev, key, "^", raw=True)
        assert rec["_leef"]["delimiter"] == "^" and rec["_leef"]["event_id"] == lf.event_id
        assert rec["_kv"] == {k: kv_parser_reads(v) for k, v in lf.attributes.items()}
    assert records[-1]["_kv"]["usrName"] == 'padded, "x" = y' and records[-1]["_kv"]["msg"] == "quoted"


# --- rsyslog ---------------------------------------------------------------------------------------------

needs_rsyslog = pytest.mark.skipif(not rsyslog_available(), reason="rsyslogd is not installed")


@pytest.fixture(scope="module")
def relp_rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelpReceiver]:
    r = RelpReceiver(tmp_path_factory.mktemp("rsyslog-relp-siem"))
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def default_rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RsyslogReceiver]:
    """rsyslog with its default control-character escaping (escapeControlCharactersOnReceive on)."""
    r = RsyslogReceiver(tmp_path_factory.mktemp("rsyslog-default-siem"))
    conf = r.conf.read_text()
    assert 'parser.escapeControlCharactersOnReceive="off"' in conf
    r.conf.write_text(conf.replace('parser.escapeControlCharactersOnReceive="off"', ""))
    r.start()
    yield r
    r.stop()


async def rsyslog_round(
    rx: RsyslogReceiver, server: ServerConfig, fmt: str, case: str, tmp_path: Path
) -> list[tuple[str, str, dict[str, Any]]]:
    """Deliver every event to `rx`; (received raw line, stream key, event) per event, after checking
    that exactly one line arrived per event."""
    evs = all_events(case)
    since = rx.mark()
    await send(server, evs, tmp_path)
    lines = await poll(lambda: rx.raw_lines()[since:], len(evs))
    assert len(lines) == len(evs), [line[:120] for line in lines if case not in line]
    assert all(case in line for line in lines)
    return [(line, key, ev) for line, (key, ev) in zip(lines, evs, strict=True)]


@needs_rsyslog
@pytest.mark.parametrize(("fmt", "delimiter"), [("cef", "\t"), ("leef", "\t"), ("leef", "^")])
async def test_rsyslog_relp_reads_each_event_as_one_record(
    relp_rx: RelpReceiver, tmp_path: Path, fmt: str, delimiter: str
) -> None:
    case = f"relp-{fmt}-{ord(delimiter)}"
    s = relp_rx.server_config(
        "r", "RELP", format=fmt, hostname="conn-1", include_raw_event=True, leef_delimiter=delimiter
    )
    for line, key, ev in await rsyslog_round(relp_rx, s, fmt, case, tmp_path):
        check(fmt, line.encode("utf-8", errors="surrogateescape"), key, ev, delimiter)


@needs_rsyslog
@pytest.mark.parametrize(("fmt", "delimiter"), [("cef", "\t"), ("leef", "^"), ("leef", "\t")])
async def test_rsyslog_default_escaping_leaves_cef_and_leef_intact(
    default_rx: RsyslogReceiver, tmp_path: Path, fmt: str, delimiter: str
) -> None:
    """No control character reaches rsyslog, so its default escaping has nothing to change, except
    LEEF's tab delimiter, which it writes as #011 (docs/formats.md: use "^" or turn escaping off)."""
    case = f"default-{fmt}-{ord(delimiter)}"
    s = default_rx.server_config(
        "d", "TCP", format=fmt, hostname="conn-1", include_raw_event=True, leef_delimiter=delimiter
    )
    for line, key, ev in await rsyslog_round(default_rx, s, fmt, case, tmp_path):
        assert "\t" not in line
        if fmt == "leef" and delimiter == "\t":
            assert "#011" in line
            line = line.replace("#011", "\t")
        check(fmt, line.encode("utf-8", errors="surrogateescape"), key, ev, delimiter)


class MmnormalizeReceiver(RsyslogReceiver):
    """rsyslog that parses each CEF message with mmnormalize (liblognorm's `cef` field type) into
    DIR/out/cef.log, one JSON object a line; TCP only."""

    template: ClassVar[Path] = Path(__file__).resolve().parents[2] / "support" / "rsyslog-mmnormalize.conf.in"

    def _write_conf(self) -> None:
        super()._write_conf()
        # the raw message is "<PRI>Mmm dd hh:mm:ss HOST CEF:..."
        (self.directory / "cef.rb").write_text(
            "version=2\nrule=:<%-:number%>%-:date-rfc3164% %-:word% %cef:cef%\n"
        )

    def _ports(self) -> set[int]:
        return {self.tcp_port}

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._lines(self.directory / "out" / "cef.log")]


@pytest.fixture(scope="module")
def mmn_rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MmnormalizeReceiver]:
    r = MmnormalizeReceiver(tmp_path_factory.mktemp("rsyslog-mmnormalize"))
    r.start()
    yield r
    r.stop()


@needs_rsyslog
async def test_rsyslog_mmnormalize_reads_cef_fields_exactly(
    mmn_rx: MmnormalizeReceiver, tmp_path: Path
) -> None:
    """liblognorm's `cef` parser (rsyslog mmnormalize, Debian 12's liblognorm 2.0.6) reads every header
    field and every extension value exactly as the strict parser does, control characters' pictures,
    escapes and spaces included, with one quirk of its own (docs/formats.md, "Collectors"): it drops the
    first character of the first extension key (`rt` arrives as `t`)."""
    case = "mmnormalize"
    s = mmn_rx.server_config("m", "TCP", format="cef", hostname="conn-1", include_raw_event=True)
    rows = await rsyslog_round(mmn_rx, s, "cef", case, tmp_path)
    parsed = await poll(mmn_rx.parsed, len(rows))
    assert len(parsed) == len(rows)
    for (line, key, ev), got in zip(rows, parsed, strict=True):
        check("cef", line.encode("utf-8", errors="surrogateescape"), key, ev, "\t")
        c = cefparse.parse_syslog(line.encode("utf-8", errors="surrogateescape")).cef
        header = (c.vendor, c.product, c.device_version, c.signature, c.name, str(c.severity))
        assert header == tuple(
            got[k]
            for k in ("DeviceVendor", "DeviceProduct", "DeviceVersion", "SignatureID", "Name", "Severity")
        )
        first, *_ = c.extension
        want = {(k[1:] if k == first else k): v for k, v in c.extension.items()}
        assert got["Extensions"] == want
