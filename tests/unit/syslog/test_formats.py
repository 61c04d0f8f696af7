"""siemconn.syslog.formats: the registry. It names exactly the formats config.json accepts, every entry is
a format class, nothing outside the format modules branches on a format's name, and a new format is one
module plus one registry line: a format defined here, in the test, and added to a copy of the registry,
goes through `Formatter`, the batch path, the size budget and the heartbeat without any other change."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from support.syslogparse import unframe

from siemconn.config import DEFAULT_FORMAT, FORMAT_NAMES, ServerConfig
from siemconn.devtools.demo import demo_config
from siemconn.events.batch import Batch, Segment
from siemconn.events.encoder import encode_event
from siemconn.syslog.budget import SIEM_MARKER_KEY, Oversizer
from siemconn.syslog.format import Formatter
from siemconn.syslog.formats import FORMATS, FormatClass, MappedFormat, SyslogFormat
from siemconn.syslog.formats.base import pri
from siemconn.syslog.heartbeat import HEARTBEAT_KEY, HeartbeatFacts, heartbeat_message
from siemconn.syslog.mapping import Mapped, decode, map_event
from siemconn.syslog.trim import MARKER
from siemconn.syslog.wire import prepare_batch

SRC = Path(__file__).resolve().parents[3] / "src" / "siemconn"
NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


# --- the registry and the config ---------------------------------------------------------------


def test_the_registry_names_the_formats_config_accepts_in_the_same_order() -> None:
    assert tuple(FORMATS) == FORMAT_NAMES
    assert DEFAULT_FORMAT in FORMATS and server().format == DEFAULT_FORMAT
    for name in FORMAT_NAMES:
        assert server(format=name).format == name
    with pytest.raises(ValidationError):
        server(format="toy")


def test_every_entry_is_a_format_class_of_its_kind() -> None:
    mapped = {name for name, cls in FORMATS.items() if issubclass(cls, MappedFormat)}
    assert mapped == {"cef", "leef"}
    for name, cls in FORMATS.items():
        assert issubclass(cls, SyslogFormat), name
        assert isinstance(Formatter(server(format=name), hostname="h").syntax, cls)


def test_the_demo_offers_every_registered_format(tmp_path: Path) -> None:
    for name in FORMATS:
        servers = demo_config(1, 2, tmp_path, name)["configuration"]
        assert isinstance(servers, dict)
        for entry in servers["server"]:
            assert ServerConfig.model_validate(entry).format == name


def _compared_format_names(tree: ast.AST) -> list[int]:
    """Lines where a format name is compared with (==, !=, in, not in) something."""
    names = set(FORMAT_NAMES)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            values = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                lines.append(node.lineno)
    return lines


def test_nothing_outside_the_format_modules_branches_on_a_format_name() -> None:
    """The per-format facts come from the format object (the header, the kind, the cut rule), so adding a
    format never means finding the `if server.format == ...` branches of other modules."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("syslog/formats/"):
            continue
        lines = _compared_format_names(ast.parse(path.read_text()))
        if lines:
            found[rel] = lines
    assert found == {}


def test_the_check_finds_a_planted_branch() -> None:
    tree = ast.parse('if server.format in ("cef", "leef"):\n    pass\nelif fmt == "legacy":\n    pass\n')
    assert _compared_format_names(tree) == [1, 3]


# --- a new format: one module (these classes) plus one registry line ----------------------------


class Toy(SyslogFormat):
    """A JSON format with a header of its own: ``<PRI>toy <stream> <unix seconds> ``."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        self._pri = pri(server)

    def header(self, stream: str, utc: datetime) -> str:
        return f"{self._pri}toy {stream} {int(utc.timestamp())} "


class KeyValue(MappedFormat):
    """A mapped format: ``KV|<signature>|key=value ...`` with the CEF keys and no escaping."""

    def __init__(self, server: ServerConfig, hostname: str | None) -> None:
        super().__init__(server, hostname)
        self._raw = server.include_raw_event

    def body(self, payload: str | bytes, stream: str) -> str:
        event, text = decode(payload)
        return self.render(map_event(event, stream, include_raw=self._raw, raw_json=text))

    def render(self, record: Mapped) -> str:
        pairs = [f"{f.cef}={f.value}" for f in record.fields]
        if record.raw:
            pairs.append(f"raw={record.raw}")
        return f"KV|{record.signature}|{' '.join(pairs)}"

    def field(self, key: str, json_text: str) -> str:
        return f" {key}={json_text}"


REGISTRY: dict[str, FormatClass] = {**FORMATS, "toy": Toy, "kv": KeyValue}  # the registry lines


def with_format(name: str, **kw: Any) -> ServerConfig:
    """A server of a format config.json does not know yet (its name would be added to FormatName)."""
    return server(**kw).model_copy(update={"format": name})


EVENT = {
    "id": 7,
    "event_timestamp": "2023-11-01T10:20:30Z",
    "category": "recon",
    "type": "host",
    "entity_uid": "h1",
}


def test_a_new_json_format_formats_events_through_formatter() -> None:
    f = Formatter(with_format("toy"), formats=REGISTRY)
    payload = encode_event(EVENT)
    want = b"<14>toy detections 1698884281 " + payload.encode()
    assert f.format(payload, "detections", NOW) == want
    assert f.format_bytes(payload.encode(), "detections", NOW) == want
    assert f.constant_header("detections", NOW) == b"<14>toy detections 1698884281 "  # the fast path
    assert Toy.cut(want, 10) == want[:10]


def test_a_new_json_format_goes_through_the_batch_the_budget_and_the_heartbeat() -> None:
    s = with_format("toy", max_message_size=480, oversize="trim")
    f = Formatter(s, formats=REGISTRY)
    small = encode_event(EVENT).encode()
    big = encode_event({**EVENT, "blob": "u" * 2000}).encode()
    batch = Batch("s1", [Segment("detections", [7, 8], [small, big])], 0, 2)
    prepared = prepare_batch(batch, s, f, NOW, Oversizer(s, f))
    lines = unframe(b"".join(prepared.frames), "lf")
    assert lines[0] == b"<14>toy detections 1698884281 " + small
    assert lines[1].startswith(b"<14>toy detections 1698884281 {") and len(lines[1]) < 480
    trimmed = json.loads(lines[1].split(b" ", 3)[3])
    assert trimmed[MARKER]["fields"] == ["blob"] and trimmed["id"] == 7
    facts = HeartbeatFacts("s1", "h", NOW, 60, (), 0, 0.0, 0, 0, 0)
    beat = heartbeat_message(f, facts)
    assert beat.startswith(b"<14>toy heartbeat 1698884281 {") and HEARTBEAT_KEY.encode() in beat


def test_a_new_mapped_format_gets_the_mapped_paths() -> None:
    s = with_format("kv", hostname="h", include_raw_event=True, max_message_size=480, oversize="trim")
    f = Formatter(s, formats=REGISTRY)
    assert f.constant_header("detections", NOW) is None  # a mapped body is no constant prefix + payload
    msg = f.format(encode_event(EVENT), "detections", NOW)
    assert msg.startswith(b"<14>Nov  2 00:18:01 h KV|detection.unknown|externalId=7 cat=recon shost=h1 ")
    assert msg.endswith(b"raw=" + encode_event(EVENT).encode())
    # trim: the raw event goes first, the marker is a field of its own (the format's `field`)
    big = encode_event({**EVENT, "blob": "x" * 600}).encode()
    fitted = Oversizer(s, f).fit(f.format_bytes(big, "detections", NOW), big, "detections", NOW)
    assert fitted.message is not None and fitted.action == "trimmed"
    assert b" raw=" not in fitted.message and f" {SIEM_MARKER_KEY}=".encode() in fitted.message
    # the heartbeat is a record the format renders
    facts = HeartbeatFacts("s1", "h", NOW, 60, (), 0, 0.0, 0, 0, 0)
    assert heartbeat_message(f, facts).startswith(b"<14>Nov  2 00:18:01 h KV|siemconn:heartbeat|")
