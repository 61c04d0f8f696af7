"""CEF and LEEF 2.0: the documented field mapping (docs/formats.md) on the real RUX samples, spec
escaping under hypothesis, a PyPI CEF parser (pycef) agreeing with our strict one, and the writer's
bytes path matching the per-event path for both formats.

The expectations here are written from the docs/formats.md tables, not computed by siemconn's mapping
code: a change of the mapping must change the documentation and these tables together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pycef
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cefparse, leefparse
from support.configs import configuration
from support.syslogparse import unframe

from siemconn import __version__
from siemconn.config import LEEF_DELIMITERS, ServerConfig
from siemconn.events.encoder import encode_event
from siemconn.queue import DurableQueue
from siemconn.syslog import cef, leef
from siemconn.syslog.format import Formatter, fit_datagram
from siemconn.syslog.mapping import Field, Mapped
from siemconn.syslog.pool import ServerWriter, WriterPool

SAMPLES: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "rux_samples.json").read_text()
)
NOW = datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC)
STREAM_OF = {"audit": "audit", "detections": "detections", "entity_scoring": "entity_scoring.host"}


def server(fmt: str, protocol: str = "TCP", **kw: Any) -> ServerConfig:
    base = {"name": "s", "server_protocol": protocol, "server_host": "127.0.0.1", "server_port": 514}
    return ServerConfig.model_validate(base | {"format": fmt, "hostname": "conn-1"} | kw)


# --- the documented mapping, as tables -------------------------------------------------------------


def txt(v: Any) -> str | None:
    """docs/formats.md "values": strings as they are, numbers as JSON numbers, booleans true/false."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v or None
    if isinstance(v, int | float):
        return json.dumps(v)
    return None


def integer(v: Any) -> str | None:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else None


def boolean(v: Any) -> str | None:
    return ("true" if v else "false") if isinstance(v, bool) else None


def jlist(v: Any) -> str | None:
    return (
        json.dumps(v, ensure_ascii=False, separators=(",", ":")) if isinstance(v, list | dict) and v else None
    )


def ip(v: Any) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(v.strip())) if isinstance(v, str) else None
    except ValueError:
        return None


def slug(v: Any, default: str = "unknown") -> str:
    s = re.sub(r"[^a-z0-9]+", "_", v.lower()).strip("_")[:64] if isinstance(v, str) else ""
    return s or default


def half_up(v: Any, div: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        return 0
    return 10 if v >= 10 * div else 0 if v <= 0 else int(v / div + 0.5)


def etime(ev: Mapping[str, Any]) -> datetime | None:
    raw = ev.get("event_timestamp")
    try:
        ts = datetime.fromisoformat(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        return None
    if ts is None:
        return None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


# (CEF key or label, LEEF key, expected value from the event, JSON-valued)
Row = tuple[str, str, Callable[[Mapping[str, Any]], str | None], bool]


def entity_type(ev: Mapping[str, Any], stream: str = "") -> str | None:
    t = txt(ev.get("type")) or txt(ev.get("entity_type"))
    return t if t is not None or "." not in stream else stream.split(".", 1)[1]


def detection_rows(ev: Mapping[str, Any], stream: str) -> list[Row]:
    host = entity_type(ev) == "host"
    raw_detail = ev.get("detail")
    detail: Mapping[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
    port: Any = detail.get("dst_port")
    return [
        ("externalId", "externalId", lambda e: integer(e.get("id")), False),
        ("cat", "cat", lambda e: txt(e.get("category")), False),
        (
            "shost" if host else "suser",
            "srcHostName" if host else "usrName",
            lambda e: txt(e.get("entity_uid")),
            False,
        ),
        ("entityType", "entityType", lambda e: entity_type(e), False),
        ("detectionId", "detectionId", lambda e: integer(e.get("detection_id")), False),
        ("threat", "threat", lambda e: integer(e.get("threat")), False),
        ("certainty", "certainty", lambda e: integer(e.get("certainty")), False),
        ("vectraSeverity", "vectraSeverity", lambda e: integer(e.get("severity")), False),
        ("entityId", "entityId", lambda e: integer(e.get("entity_id")), False),
        ("detectionUrl", "detectionUrl", lambda e: txt(e.get("detection_href")), False),
        ("entityUrl", "entityUrl", lambda e: txt(e.get("url")), False),
        ("mitre", "mitre", lambda e: jlist(e.get("mitre")), True),
        ("triaged", "triaged", lambda e: boolean(e.get("triaged")), False),
        ("dst", "dst", lambda e: ip(detail.get("dst_ip")), False),
        ("dpt", "dstPort", lambda e: integer(port) if integer(port) and 0 <= port <= 65535 else None, False),
        # v3.5 size=detailed: the source slot the entity left free, then the destination
        (
            "suser" if host else "shost",
            "usrName" if host else "srcHostName",
            lambda e: ref_name(e.get("src_account" if host else "src_host")),
            False,
        ),
        ("src", "src", lambda e: ip(e.get("src_external_host")), False),
        ("dhost", "dstHostName", lambda e: ref_name(e.get("dst_host")), False),
        ("duser", "dstUserName", lambda e: ref_name(e.get("dst_account")), False),
        ("destinationDnsDomain", "dstDomain", lambda e: ref_name(e.get("dst_domain"), "domain"), False),
        ("start", "startTime", lambda e: millis(detail.get("first_timestamp")), False),
        (
            "investigationStatus",
            "investigationStatus",
            lambda e: txt(e.get("status")) or txt(e.get("investigation_status")),
            False,
        ),
        ("changeType", "changeType", lambda e: txt(e.get("change_type")), False),
    ]


def ref_name(v: Any, key: str = "name") -> str | None:
    return txt(v.get(key)) if isinstance(v, dict) else None


def millis(v: Any) -> str | None:
    ts = etime({"event_timestamp": v})
    return None if ts is None else str(int((ts - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000))


def detection_header(ev: Mapping[str, Any], stream: str) -> tuple[str, str, str, int]:
    dtype = ev.get("detection_type")
    if not (isinstance(dtype, str) and dtype):
        dtype = ev.get("d_type_vname")
    name = dtype if isinstance(dtype, str) and dtype else "Vectra detection"
    sev = max(half_up(ev.get("severity"), 1), half_up(ev.get("threat"), 10), half_up(ev.get("certainty"), 10))
    return "RUX Detections", f"detection.{slug(dtype)}", name, sev


def entity_rows(ev: Mapping[str, Any], stream: str) -> list[Row]:
    et = entity_type(ev, stream)
    host = et == "host"
    imp = integer(ev.get("importance")) or integer(ev.get("entity_importance"))
    last = ev.get("last_detection")
    last_type = last.get("type") if isinstance(last, dict) else ev.get("last_detection_type")
    return [
        ("externalId", "externalId", lambda e: integer(e.get("id")), False),
        ("cat", "cat", lambda e: txt(e.get("category")), False),
        (
            "shost" if host else "suser",
            "srcHostName" if host else "usrName",
            lambda e: txt(e.get("name")),
            False,
        ),
        ("entityType", "entityType", lambda e: et, False),
        ("urgencyScore", "urgencyScore", lambda e: integer(e.get("urgency_score")), False),
        ("breadthContrib", "breadthContrib", lambda e: integer(e.get("breadth_contrib")), False),
        ("velocityContrib", "velocityContrib", lambda e: integer(e.get("velocity_contrib")), False),
        ("isPrioritized", "isPrioritized", lambda e: boolean(e.get("is_prioritized")), False),
        ("entityUrl", "entityUrl", lambda e: txt(e.get("url")), False),
        (
            "activeDetectionTypes",
            "activeDetectionTypes",
            lambda e: jlist(e.get("active_detection_types")),
            True,
        ),
        ("entitySeverity", "entitySeverity", lambda e: txt(e.get("severity")), False),
        ("importance", "importance", lambda e: imp, False),
        ("attackRating", "attackRating", lambda e: integer(e.get("attack_rating")), False),
        ("lastDetectionType", "lastDetectionType", lambda e: txt(last_type), False),
        ("msg", "msg", lambda e: txt(e.get("urgency_reason")), False),
    ]


def entity_header(ev: Mapping[str, Any], stream: str) -> tuple[str, str, str, int]:
    et = entity_type(ev, stream)
    labels = {"low": 3, "medium": 5, "high": 8, "critical": 10}
    s = ev.get("severity")
    sev = max(
        labels.get(s.strip().lower(), 0) if isinstance(s, str) else 0, half_up(ev.get("urgency_score"), 10)
    )
    kind = {"host": "Host", "account": "Account"}.get(et or "", "Entity")
    return "RUX Entity Scoring", f"entity_scoring.{slug(et)}", f"{kind} score change", sev


def audit_rows(ev: Mapping[str, Any], stream: str) -> list[Row]:
    return [
        ("externalId", "externalId", lambda e: integer(e.get("id")), False),
        ("cat", "cat", lambda e: txt(e.get("event_object")), False),
        ("act", "action", lambda e: txt(e.get("event_action")), False),
        ("outcome", "outcome", lambda e: txt(e.get("result_status")), False),
        ("suser", "usrName", lambda e: txt(e.get("username")), False),
        ("suid", "userId", lambda e: integer(e.get("user_id")), False),
        ("spriv", "role", lambda e: txt(e.get("user_role")), False),
        ("src", "src", lambda e: ip(e.get("source_ip")), False),
        ("msg", "msg", lambda e: txt(e.get("message")), False),
        ("userType", "userType", lambda e: txt(e.get("user_type")), False),
        ("apiClientId", "apiClientId", lambda e: txt(e.get("api_client_id")), False),
        ("vectraVersion", "vectraVersion", lambda e: txt(e.get("version")), False),
        ("eventData", "eventData", lambda e: jlist(e.get("event_data")), True),
    ]


def audit_header(ev: Mapping[str, Any], stream: str) -> tuple[str, str, str, int]:
    obj, act = txt(ev.get("event_object")), txt(ev.get("event_action"))
    name = " ".join(p for p in (obj, act) if p) or "Audit event"
    status = ev.get("result_status")
    sev = 5 if isinstance(status, str) and status.strip().lower() == "failure" else 1
    return "RUX Audit", f"audit.{slug(obj, 'none')}.{slug(act, 'none')}", name, sev


TABLES = {
    "detections": (detection_rows, detection_header),
    "entity_scoring": (entity_rows, entity_header),
    "audit": (audit_rows, audit_header),
}


def is_control(ch: str) -> bool:
    """docs/formats.md "Control characters": C0 (U+0000-U+001F) and DEL."""
    return ch < " " or ch == "\x7f"


def picture(ch: str) -> str:
    """docs/formats.md: a control character's Unicode Control Picture (U+2400 + code, DEL U+2421)."""
    return "\u2421" if ch == "\x7f" else chr(0x2400 + ord(ch))


def json_escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}"


def leef_clean(value: str, delimiter: str, is_json: bool) -> str:
    """docs/formats.md "LEEF values": the delimiter and every control character kept out of every value:
    JSON escapes in JSON; otherwise the delimiter, CR and LF as spaces, other controls as pictures."""
    out = []
    for ch in value:
        if is_json and (ch == delimiter or is_control(ch)):
            out.append(json_escape(ch))
        elif ch in (delimiter, "\r", "\n"):
            out.append(" ")
        else:
            out.append(picture(ch) if is_control(ch) else ch)
    return "".join(out)


def leef_header_clean(value: str, delimiter: str) -> str:
    """docs/formats.md: a LEEF header field with '|', CR, LF and the delimiter as '_', other controls as
    pictures."""
    return "".join(
        "_" if ch in ("|", "\r", "\n", delimiter) else picture(ch) if is_control(ch) else ch for ch in value
    )


def cef_clean(value: str, is_json: bool) -> str:
    """docs/formats.md "CEF values", as a parser reads them back (its \\n and \\r give CR and LF): other
    control characters as JSON escapes in JSON, as pictures otherwise."""
    return "".join(
        ch if not is_control(ch) or ch in "\r\n" else json_escape(ch) if is_json else picture(ch)
        for ch in value
    )


def cef_header_clean(value: str, n: int) -> str:
    """docs/formats.md "CEF header": cut to n characters, CR and LF as spaces, other controls as pictures."""
    return "".join(" " if ch in "\r\n" else picture(ch) if is_control(ch) else ch for ch in value[:n])


def check_cef(message: bytes, ev: Mapping[str, Any], stream: str, *, raw: bool) -> cefparse.Cef:
    assert b"\n" not in message and b"\r" not in message
    p = cefparse.parse_syslog(message)
    assert (p.pri, p.host) == (14, "conn-1")
    c = p.cef
    rows, header = TABLES[stream.split(".")[0]]
    product, signature, name, sev = header(ev, stream)
    assert (c.version, c.vendor, c.product, c.device_version) == (0, "Vectra AI", product, __version__)
    assert (c.signature, c.severity) == (signature, sev)
    assert c.name == cef_header_clean(name, 512)
    got = c.labelled()
    want: dict[str, str] = {}
    for key, _, getter, is_json in rows(ev, stream):
        value = getter(ev)
        if value is not None:
            want[key] = cef_clean(value, is_json)
            if is_json:
                assert json.loads(want[key]) == json.loads(value)  # lossless
    ts = etime(ev)
    if ts is not None:
        want["rt"] = str(int((ts - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000))
    if raw:
        want["rawEvent"] = cef_clean(encode_event(ev), True)
        assert json.loads(got["rawEvent"]) == ev
    assert got == want
    return c


def check_leef(
    message: bytes, ev: Mapping[str, Any], stream: str, delimiter: str, *, raw: bool
) -> leefparse.Leef:
    assert b"\n" not in message and b"\r" not in message
    p = leefparse.parse_syslog(message)
    assert (p.pri, p.host) == (14, "conn-1")
    lf = p.leef
    rows, header = TABLES[stream.split(".")[0]]
    product, signature, _, sev = header(ev, stream)
    assert (lf.version, lf.vendor, lf.product, lf.product_version) == (
        "2.0",
        "Vectra AI",
        product,
        __version__,
    )
    assert (lf.event_id, lf.delimiter) == (signature, delimiter)
    want: dict[str, str] = {"sev": str(max(1, sev))}
    for _, key, getter, is_json in rows(ev, stream):
        value = getter(ev)
        if value is not None:
            want[key] = leef_clean(value, delimiter, is_json)
            if is_json:
                assert json.loads(want[key]) == json.loads(value)  # lossless
    ts = etime(ev)
    if ts is not None:
        want["devTime"] = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"
        want["devTimeFormat"] = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
    if raw:
        want["rawEvent"] = leef_clean(encode_event(ev), delimiter, True)
        assert json.loads(lf.attributes["rawEvent"]) == ev
    assert lf.attributes == want
    return lf


# --- the real samples ------------------------------------------------------------------------------

REAL = [
    (stream, i, ev)
    for stream, evs in SAMPLES.items()
    if not stream.startswith("_")
    for i, ev in enumerate(evs)
]


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize(("stream", "i", "ev"), REAL, ids=[f"{s}-{i}" for s, i, _ in REAL])
def test_real_samples_map_to_the_documented_fields(
    stream: str, i: int, ev: dict[str, Any], raw: bool
) -> None:
    key = STREAM_OF[stream] if stream != "entity_scoring" else f"entity_scoring.{ev.get('type', 'account')}"
    payload = encode_event(ev)
    c = check_cef(Formatter(server("cef", include_raw_event=raw)).format(payload, key, NOW), ev, key, raw=raw)
    for d in ("\t", "^"):
        fmt = Formatter(server("leef", include_raw_event=raw, leef_delimiter=d))
        check_leef(fmt.format_bytes(payload.encode(), key, NOW), ev, key, d, raw=raw)
    # the promises of docs/formats.md on these samples, spelled out
    got = c.labelled()
    if stream == "detections":
        assert got["cat"] == ev["category"] and c.name == ev["detection_type"]
        assert got["detectionUrl"] == ev["detection_href"] and got["entityUrl"] == ev["url"]
        assert got["suser" if ev["type"] == "account" else "shost"] == ev["entity_uid"]
        assert json.loads(got.get("mitre", "[]")) == ev.get("mitre", [])
        if "summary" in ev:  # v3.5 size=detailed: the other side of the activity is named too
            dst = ev["dst_host"] or ev["dst_account"]
            assert dst["name"] in (got.get("dhost"), got.get("duser"))
            assert got["destinationDnsDomain"] == ev["dst_domain"]["domain"]
            assert got["investigationStatus"] == ev["status"] and got["changeType"] == ev["change_type"]
    elif stream == "entity_scoring":
        assert got["urgencyScore"] == str(ev["urgency_score"]) and got["isPrioritized"] in ("true", "false")
        assert got["breadthContrib"] == str(ev["breadth_contrib"]) and got["velocityContrib"] == str(
            ev["velocity_contrib"]
        )
        if ev["name"]:
            assert ev["name"] in (got.get("suser"), got.get("shost"))
    else:
        assert (got["suser"], got["spriv"], got["src"]) == (ev["username"], ev["user_role"], ev["source_ip"])
        assert (got["cat"], got["act"], got["outcome"]) == (
            ev["event_object"],
            ev["event_action"],
            ev["result_status"],
        )


def test_sample_lines_are_exactly_as_documented() -> None:
    """The README's sample lines (one per format), byte for byte."""
    ev = SAMPLES["detections"][0]
    payload = encode_event(ev)
    assert Formatter(server("cef")).format(payload, "detections", NOW).decode() == (
        "<14>Mar  5 07:08:09 conn-1 CEF:0|Vectra AI|RUX Detections|" + __version__ + "|"
        "detection.azure_ad_redundant_access_creation|Azure AD Redundant Access Creation|5|"
        "rt=1663000295000 externalId=28538 cat=command_and_control "
        "suser=O365:ServicePrincipal_3fb87dda-882a-49e1-88b9-67d2499b2fd4 cs1Label=entityType cs1=account "
        "cn1Label=detectionId cn1=959 cn2Label=threat cn2=50 cn3Label=certainty cn3=50 "
        "flexNumber1Label=vectraSeverity flexNumber1=5 flexNumber2Label=entityId flexNumber2=1 "
        "cs2Label=detectionUrl cs2=https://207031206993.uw2.devportal.vectra.ai/detections/959?detail_id\\=94341 "
        "cs3Label=entityUrl cs3=https://207031206993.uw2.devportal.vectra.ai/detections/959 "
        'cs4Label=mitre cs4=["T1526"] cs5Label=triaged cs5=false'
    )
    audit = SAMPLES["audit"][1]
    assert Formatter(server("leef")).format(encode_event(audit), "audit", NOW).decode() == "\t".join(
        [
            "<14>Mar  5 07:08:09 conn-1 LEEF:2.0|Vectra AI|RUX Audit|"
            + __version__
            + "|audit.detection_tag.created|x09|"
            "devTime=2025-03-03T06:42:20.000+0000",
            "devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
            "sev=1",
            "externalId=45854",
            "cat=detection_tag",
            "action=created",
            "outcome=success",
            "usrName=john.doe@net.co",
            "userId=22284",
            "role=Security Analyst",
            "src=81.2.69.142",
            "msg=Tag testdev has been added to detections with ids [172]",
            "userType=JWT",
            "vectraVersion=202502.14.0",
            'eventData={"account_note":{"note_id":"684","account_id":"57"}}',
        ]
    )


@pytest.mark.parametrize(("stream", "i", "ev"), REAL, ids=[f"{s}-{i}" for s, i, _ in REAL])
def test_pycef_reads_what_the_strict_parser_reads(stream: str, i: int, ev: dict[str, Any]) -> None:
    key = STREAM_OF[stream]
    message = Formatter(server("cef", include_raw_event=True)).format(encode_event(ev), key, NOW).decode()
    strict = cefparse.parse_syslog(message.encode()).cef
    theirs = pycef.parse(message)
    assert theirs is not None
    assert (theirs["DeviceVendor"], theirs["DeviceProduct"], theirs["DeviceVersion"]) == (
        strict.vendor,
        strict.product,
        strict.device_version,
    )
    assert (theirs["DeviceEventClassID"], theirs["Name"], theirs["Severity"]) == (
        strict.signature,
        strict.name,
        str(strict.severity),
    )
    header = {
        "CEFVersion",
        "DeviceVendor",
        "DeviceProduct",
        "DeviceVersion",
        "DeviceEventClassID",
        "Name",
        "DeviceName",
        "Severity",
        "DeviceSeverity",
    }
    # pycef keeps escapes as they are and puts labelled slots under their labels, as our labelled() does
    ext = {k: cefparse.unescape_value(v) for k, v in theirs.items() if k not in header}
    assert ext == strict.labelled()
    assert json.loads(ext["rawEvent"]) == ev


# --- escaping under hypothesis ---------------------------------------------------------------------

NASTY = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("=|\\\t\r\n ^~#;!`@$%&*? \x00\x1b\x7f\x85\u2028\u2029é中😀\"'")),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=40,
)
VALUE = st.one_of(
    NASTY,
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(NASTY, max_size=4),
    st.dictionaries(NASTY, NASTY, max_size=3),
)
FIELDS = {
    "detections": [
        "id", "category", "threat", "certainty", "severity", "triaged", "detection_type", "d_type_vname",
        "detection_id", "detection_href", "entity_id", "entity_uid", "type", "entity_type", "url", "mitre",
        "event_timestamp",
    ],
    "entity_scoring": [
        "id", "entity_id", "name", "type", "entity_type", "breadth_contrib", "velocity_contrib", "importance",
        "entity_importance", "is_prioritized", "severity", "urgency_score", "urgency_reason", "attack_rating",
        "active_detection_types", "category", "url", "event_timestamp", "last_detection_type",
    ],
    "audit": [
        "id", "user_id", "username", "user_type", "api_client_id", "user_role", "version", "source_ip",
        "event_timestamp", "message", "result_status", "event_data", "event_object", "event_action",
    ],
}  # fmt: skip
TIMESTAMPS = st.one_of(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.isoformat() + "Z"
    ),
    NASTY,
)


@st.composite
def events(draw: st.DrawFn, stream: str) -> dict[str, Any]:
    ev: dict[str, Any] = {}
    for name in FIELDS[stream]:
        if draw(st.booleans()):
            ev[name] = draw(TIMESTAMPS if name == "event_timestamp" else VALUE)
    if stream == "detections" and draw(st.booleans()):
        ev["detail"] = {
            "dst_ip": draw(st.one_of(st.ip_addresses().map(str), NASTY)),
            "dst_port": draw(st.integers(-5, 70000)),
        }
    if stream == "entity_scoring" and draw(st.booleans()):
        ev["last_detection"] = {"id": None, "type": draw(VALUE), "url": None}
        ev.pop("last_detection_type", None)
    if stream == "audit" and draw(st.booleans()):
        ev["source_ip"] = str(draw(st.ip_addresses()))
    return ev


@pytest.mark.parametrize("stream", ["detections", "entity_scoring.account", "entity_scoring.host", "audit"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), raw=st.booleans(), delimiter=st.sampled_from(LEEF_DELIMITERS))
def test_any_event_parses_back_to_its_mapping(
    stream: str, data: st.DataObject, raw: bool, delimiter: str
) -> None:
    ev = data.draw(events(stream.split(".")[0]))
    payload = encode_event(ev)
    c = Formatter(server("cef", include_raw_event=raw)).format_bytes(payload.encode(), stream, NOW)
    check_cef(c, ev, stream, raw=raw)
    lf = Formatter(server("leef", include_raw_event=raw, leef_delimiter=delimiter)).format(
        payload, stream, NOW
    )
    check_leef(lf, ev, stream, delimiter, raw=raw)


KEYS = ["externalId", "cat", "msg", "cs1", "cn2", "flexString1", "suser"]


@settings(max_examples=300, deadline=None)
@given(
    product=NASTY.filter(bool),
    signature=NASTY.filter(bool),
    name=NASTY.filter(bool),
    values=st.lists(NASTY.filter(bool), min_size=len(KEYS), max_size=len(KEYS)),
    labels=st.lists(NASTY.filter(bool), min_size=len(KEYS), max_size=len(KEYS)),
    raw=NASTY,
    delimiter=st.sampled_from(LEEF_DELIMITERS),
)
def test_every_field_escapes_and_parses_back(
    product: str, signature: str, name: str, values: list[str], labels: list[str], raw: str, delimiter: str
) -> None:
    """Arbitrary text in every header field, every value and every label: the strict parsers read back
    exactly the intended text, and the record stays one line."""
    fields = [
        Field(k, k, v, lab if k[:2] in ("cs", "cn", "fl") else None)
        for k, v, lab in zip(KEYS, values, labels, strict=True)
    ]
    m = Mapped(product, signature, name, 7, NOW, fields, raw)
    text = cef.render(m)
    assert not any(is_control(ch) for ch in text)  # no raw control character at all, CR and LF included
    c = cefparse.parse(text)

    assert (c.product, c.signature, c.name, c.severity) == (
        cef_header_clean(product, 63),
        cef_header_clean(signature, 1023),
        cef_header_clean(name, 512),
        7,
    )
    want = {"rt": str(int(NOW.timestamp() * 1000))}
    for f in fields:
        if f.label is not None:
            want[f"{f.cef}Label"] = cef_clean(f.label, False)
        want[f.cef] = cef_clean(f.value, False)
    if raw:
        want |= {"cs6Label": "rawEvent", "cs6": cef_clean(raw, True)}
    assert c.extension == want
    ltext = leef.render(m, delimiter)
    # the delimiter between attributes is the only control character a LEEF record holds
    assert not any(is_control(ch) for ch in ltext.replace(delimiter, ""))
    lp = leefparse.parse(ltext)
    assert lp.delimiter == delimiter

    assert (lp.product, lp.event_id) == (
        leef_header_clean(product, delimiter),
        leef_header_clean(signature, delimiter),
    )
    lwant = {
        "devTime": "2024-03-05T07:08:09.000+0000",
        "devTimeFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
        "sev": "7",
    }
    lwant |= {f.leef: leef_clean(f.value, delimiter, False) for f in fields}
    if raw:
        lwant["rawEvent"] = leef_clean(raw, delimiter, True)
    assert lp.attributes == lwant


@pytest.mark.parametrize("score", [float("inf"), float("-inf"), 10**400, -(10**400), 1e308, 99, 94, 95])
def test_severity_of_any_number(score: float) -> None:
    ev = {"urgency_score": score, "threat": score, "certainty": 0}
    want = 10 if score >= 100 else 0 if score <= 0 else (score + 5) // 10
    for stream in ("detections", "entity_scoring.host"):
        msg = Formatter(server("cef")).format(json.dumps(ev), stream, NOW)
        assert cefparse.parse_syslog(msg).cef.severity == want


def test_escapes_are_exactly_the_specs() -> None:
    assert cef.escape_value("a=b\\c|d\ne\rf") == "a\\=b\\\\c|d\\ne\\rf"
    assert cef.escape_header("a|b\\c=d\ne", 99) == "a\\|b\\\\c=d e"
    assert leef.declare("\t") == "x09" and leef.declare("^") == "^"
    enc = leef.LeefEncoder("^", include_raw=True)
    assert enc.value("a^b\tc\nd", False) == "a b\u2409c d"
    assert json.loads(enc.value(json.dumps(["a^b"]), True)) == ["a^b"]
    # control characters: CEF's own escapes for CR and LF, pictures for the rest, JSON escapes in JSON
    assert cef.escape_value("a\x00b\tc\x1bd\x7fe") == "a\u2400b\u2409c\u241bd\u2421e"
    assert cef.escape_value('["\x00\x7f"]', True) == '["\\\\u0000\\\\u007f"]'
    assert cef.escape_header("a\x00b\tc\rd", 99) == "a\u2400b\u2409c d"
    tab = leef.LeefEncoder("\t", include_raw=True)
    assert tab.value("a\x00b\tc\x7f", False) == "a\u2400b c\u2421"
    assert tab.value('["\x00\t\x7f"]', True) == '["\\u0000\\u0009\\u007f"]'


CONTROL_CHARS = [chr(c) for c in range(0x20)] + ["\x7f"]


@pytest.mark.parametrize("ch", CONTROL_CHARS, ids=[f"U+{ord(c):04X}" for c in CONTROL_CHARS])
def test_every_control_character_in_every_place(ch: str) -> None:
    """Each C0 control character and DEL, in every header field, every value, every label and the raw
    event: no raw control byte in the record (LEEF's delimiter between attributes aside), and the
    documented replacement, read back by the strict parsers and by pycef."""
    text = f"a{ch}b"
    fields = [
        Field(k, k, text, f"l{ch}" if k[:2] in ("cs", "cn", "fl") else None, k == "cs4")
        for k in KEYS + ["cs4"]
    ]
    raw = json.dumps({"v": "x"}).replace("x", f"x{ch}")  # a control character inside a JSON string
    m = Mapped(f"P{ch}", f"S{ch}", f"N{ch}", 3, NOW, fields, raw)
    line = cef.render(m)
    assert not any(is_control(c) for c in line)
    c = cefparse.parse(line)
    shown = " " if ch in "\r\n" else picture(ch)
    assert (c.product, c.signature, c.name) == (f"P{shown}", f"S{shown}", f"N{shown}")
    in_text = ch if ch in "\r\n" else picture(ch)  # CEF's \n and \r read back as LF and CR
    in_json = ch if ch in "\r\n" else json_escape(ch)
    for f in fields:
        assert c.extension[f.cef] == f"a{in_json if f.json else in_text}b"
        if f.label is not None:
            assert c.extension[f"{f.cef}Label"] == f"l{in_text}"
    assert c.extension["cs6"] == raw.replace(ch, in_json)
    if ch not in "\r\n":  # (a raw CR or LF cannot be in JSON text: only in a payload that is not JSON)
        assert json.loads(c.extension["cs6"]) == json.loads(raw.replace(ch, json_escape(ch)))  # lossless
    theirs = pycef.parse(f"<14>Mar  5 07:08:09 conn-1 {line}")
    assert theirs is not None and theirs["Name"] == c.name
    for delimiter in LEEF_DELIMITERS:
        lt = leef.render(m, delimiter)
        assert not any(is_control(c) for c in lt.replace(delimiter, ""))
        lp = leefparse.parse(lt)
        head = "_" if ch in ("\r", "\n", delimiter) else picture(ch)
        assert (lp.product, lp.event_id) == (f"P{head}", f"S{head}")
        value = " " if ch in ("\r", "\n", delimiter) else picture(ch)
        for f in fields:
            assert lp.attributes[f.leef] == (f"a{json_escape(ch)}b" if f.json else f"a{value}b")
        assert lp.attributes["rawEvent"] == raw.replace(ch, json_escape(ch))
        assert json.loads(lp.attributes["rawEvent"]) == json.loads(raw.replace(ch, json_escape(ch)))


# --- odd payloads never fail the batch ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["cef", "leef"])
@pytest.mark.parametrize(
    "payload",
    [
        '{"id": 1, "detection_type": "\\ud800 lone"}',
        "[1, 2]",
        "not json\nat all",
        "{}",
        '{"id": 123456789012345678901234567890}',
    ],
)
def test_odd_payloads_still_make_one_parseable_line(fmt: str, payload: str) -> None:
    for stream in ("detections", "audit", "health", "lockdown", "entity_scoring.host"):
        msg = Formatter(server(fmt)).format(payload, stream, NOW)
        assert b"\n" not in msg and b"\r" not in msg
        msg.decode("utf-8")
        if fmt == "cef":
            c = cefparse.parse_syslog(msg).cef
            ext = c.labelled()
        else:
            ext = leefparse.parse_syslog(msg).leef.attributes
        # a payload with no mapping (not an object, or a stream without one) is carried whole
        if not payload.startswith("{") or stream in ("health", "lockdown"):
            assert ext["rawEvent"] == (payload.replace("\n", "\\u000a") if fmt == "leef" else payload)
        assert not any(is_control(ch) for ch in msg.decode().replace("\t", ""))


def test_generic_streams_are_mapped_by_name_with_the_full_event() -> None:
    ev = {"id": 7, "event_timestamp": "2025-01-01T00:00:00Z", "message": "sensor offline", "severity": 4}
    c = cefparse.parse_syslog(Formatter(server("cef")).format(encode_event(ev), "health", NOW)).cef
    assert (c.product, c.signature, c.name, c.severity) == ("RUX Health", "health", "Vectra health event", 4)
    assert c.labelled() == {
        "rt": "1735689600000",
        "externalId": "7",
        "msg": "sensor offline",
        "rawEvent": encode_event(ev),
    }


# --- UDP: a cut message is still one valid record ----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(text=NASTY, limit=st.integers(480, 1500), fmt=st.sampled_from(["cef", "leef"]))
def test_udp_truncation_never_splits_an_escape_or_a_character(text: str, limit: int, fmt: str) -> None:
    ev = {"id": 1, "detection_type": "X", "category": "c", "blob": (text + "\\=é😀") * 40}
    s = server(fmt, "UDP", include_raw_event=True, max_message_size=limit)
    msg = Formatter(s).format(encode_event(ev), "detections", NOW)
    cut = fit_datagram(msg, s)
    assert cut is not None and len(cut) <= limit
    cut.decode("utf-8")
    if fmt == "cef":
        cefparse.parse_syslog(cut)
    else:
        leefparse.parse_syslog(cut)


# --- config -------------------------------------------------------------------------------------------


def test_defaults_keep_the_old_behaviour() -> None:
    s = ServerConfig.model_validate(
        {"name": "a", "server_protocol": "TCP", "server_host": "h", "server_port": 1}
    )
    assert (s.format, s.include_raw_event, s.leef_delimiter) == ("legacy", False, "\t")


@pytest.mark.parametrize("bad", ["=", "|", "ab", "", " ", ",", 5])
def test_leef_delimiter_rules(bad: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is not a LEEF delimiter"):
        server("leef", leef_delimiter=bad)


# --- the writer: segments path == per-event path -----------------------------------------------------


def writer(srv: ServerConfig, tmp_path: Path) -> ServerWriter:
    pool = WriterPool([srv], SimpleNamespace(), configuration([srv]), tmp_path)
    return pool.writer(srv.name)


@pytest.mark.parametrize(
    "transport",
    [
        {"protocol": "TCP", "framing": "lf"},
        {"protocol": "TCP", "framing": "octet-counting"},
        {"protocol": "TLS", "framing": "lf"},
        {"protocol": "UDP"},
        {"protocol": "UDP", "max_message_size": 600},
        {"protocol": "UDP", "max_message_size": 600, "udp_oversize": "drop"},
    ],
    ids=lambda t: "-".join(map(str, t.values())),
)
@pytest.mark.parametrize("fmt", ["cef", "leef"])
async def test_writer_segments_path_matches_per_event_format(
    tmp_path: Path, transport: dict[str, Any], fmt: str
) -> None:
    """The writer formats a batch of payload-bytes segments; for these payload-dependent formats each
    message must be `Formatter.format` of its event, framed and fitted per message."""
    q = await DurableQueue.open(tmp_path / "q", ["s"])
    try:
        await q.commit_page("audit", SAMPLES["audit"], 100_000)
        await q.commit_page("detections", SAMPLES["detections"], 100_000)
        hosts = [e for e in SAMPLES["entity_scoring"] if e.get("type") == "host"]
        await q.commit_page("entity_scoring.host", hosts, 100)
        batch = await q.read_batch("s", 50)
        assert batch is not None
        t = dict(transport)
        srv = server(fmt, t.pop("protocol"), include_raw_event=True, **t)
        prepared = writer(srv, tmp_path).prepare(batch)
    finally:
        await q.close()
    events = [(seg.stream, p) for seg in batch.segments for p in seg.payloads]
    assert len(events) == len(SAMPLES["audit"]) + len(SAMPLES["detections"]) + len(hosts)
    udp = srv.server_protocol == "UDP"
    messages = prepared.frames if udp else unframe(b"".join(prepared.frames), srv.framing)
    ref = Formatter(srv)
    want = [fit_datagram(ref.format(p.decode(), stream, NOW), srv) for stream, p in events]
    # the writer takes its own send time: compare without the syslog header's timestamp

    def strip(m: bytes) -> bytes:
        return re.sub(rb"^<14>\w{3} [ \d]\d \d\d:\d\d:\d\d ", b"", m)

    assert [strip(m) for m in messages] == [strip(m) for m in want if m is not None]
    assert (prepared.events, prepared.sent) == (len(events), len(messages))
    if "max_message_size" not in transport:

        def parse_raw(m: bytes) -> str:
            if fmt == "cef":
                return cefparse.parse_syslog(m).cef.labelled()["rawEvent"]
            return leefparse.parse_syslog(m).leef.attributes["rawEvent"]

        assert [json.loads(parse_raw(m)) for m in messages] == [json.loads(p) for _, p in events]


def test_readme_sample_lines_are_what_siemconn_sends() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    samples = [
        ln.strip().replace("<tab>", "\t")
        for ln in readme.splitlines()
        if ln.startswith("    <14>Mar  5 07:08:09 conn-1 ")
    ]
    cef_line = (
        Formatter(server("cef")).format(encode_event(SAMPLES["detections"][0]), "detections", NOW).decode()
    )
    leef_line = Formatter(server("leef")).format(encode_event(SAMPLES["audit"][1]), "audit", NOW).decode()
    assert samples == [cef_line, leef_line]


def test_integers_beyond_64_bits_stay_exact() -> None:
    big = 2**70 + 1
    ev = {"id": big, "detection_id": -big, "threat": 10**30, "detection_type": "X"}
    got = cefparse.parse_syslog(Formatter(server("cef")).format(json.dumps(ev), "detections", NOW)).cef
    assert (got.labelled()["externalId"], got.labelled()["detectionId"]) == (str(big), str(-big))
    assert got.severity == 10
