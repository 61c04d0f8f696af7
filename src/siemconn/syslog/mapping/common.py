"""What every stream mapping shares: the record types, value coercions and the generic mapping.

Times (`event_timestamp`, a detection's `first_timestamp`) are read by `siemconn.events.eventtime`'s
`as_event_time`, the one rule every consumer of an event's time uses."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from siemconn import __version__
from siemconn.config import STREAM_DEFS
from siemconn.events.eventtime import EVENT_TIME_FIELD, as_event_time

__all__ = [
    "PRODUCTS",
    "RAW_EVENT_LABEL",
    "VENDOR",
    "VERSION",
    "Field",
    "Fields",
    "Mapped",
    "Mapper",
    "as_int",
    "as_ip",
    "as_text",
    "entity_fields",
    "entity_type",
    "event_fields",
    "generic",
    "json_text",
    "scaled",
    "slug",
    "stream_record",
]

VENDOR = "Vectra AI"
VERSION = __version__
RAW_EVENT_LABEL = "rawEvent"

# header product per stream (the part of the stream key before the first dot)
PRODUCTS: Final[Mapping[str, str]] = MappingProxyType(
    {**{d.name: d.product for d in STREAM_DEFS}, "send_test": "siemconn"}
)

_SLUG_RE = re.compile(r"[^a-z0-9]+")


class Field(NamedTuple):
    """One fact of the event. `cef` is a CEF key; for a custom slot (cs1-cs6, cn1-cn3, flexString1-2,
    flexNumber1-2) `label` is written as its ``<key>Label``. `leef` is the LEEF key. `value` is the text
    before any escaping. A named tuple: one is built per field per event, and tuples build fastest."""

    cef: str
    leef: str
    value: str
    label: str | None = None
    json: bool = False  # the value is JSON text (LEEF may then escape a delimiter inside it losslessly)


@dataclass(frozen=True)
class Mapped:
    """A mapped event: header parts, time, fields in output order, and the raw JSON if asked for."""

    product: str
    signature: str
    name: str
    severity: int  # 0-10 (CEF); LEEF's sev is max(1, severity)
    time: datetime | None
    fields: list[Field] = field(default_factory=list)
    raw: str | None = None  # the full event JSON, always last on the line (cut first under UDP limits)


def slug(value: Any, default: str = "unknown") -> str:
    """A signature-id part: lower case ASCII letters and digits, other runs become one '_' (max 64)."""
    text = _SLUG_RE.sub("_", value.lower()).strip("_")[:64] if isinstance(value, str) else ""
    return text or default


def as_text(value: Any) -> str | None:
    """A scalar as text (booleans as true/false), None for null, "" and containers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)  # what json.dumps writes for an int, without its machinery
    if isinstance(value, float):
        return json.dumps(value)
    return None


def as_int(value: Any) -> int | None:
    """An integer (not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def as_ip(value: Any) -> str | None:
    """An IPv4 or IPv6 address in its canonical text, else None (CEF src/dst take addresses only)."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def json_text(value: Any) -> str | None:
    """Lists and objects as compact JSON (UTF-8 text, not ASCII-escaped); None when empty or not one."""
    if isinstance(value, list | dict) and value:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return None


def scaled(value: Any, divisor: int) -> int:
    """A 0-10 severity from a score: value / divisor rounded half up, clamped to 0-10; 0 if not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    # clamp before dividing and before int(): JSON can spell Infinity and integers of any size, and
    # int(inf) or a huge int / divisor raise
    if value >= 10 * divisor:
        return 10
    if value <= 0:
        return 0
    return int(value / divisor + 0.5)


class Fields:
    """An ordered field list builder that skips missing values."""

    def __init__(self) -> None:
        self.items: list[Field] = []

    def add(
        self, cef: str, leef: str, value: str | None, label: str | None = None, *, json: bool = False
    ) -> None:
        if value is not None and value != "":
            self.items.append(Field(cef, leef, value, label, json))


def event_fields(event: Mapping[str, Any]) -> Fields:
    """A field list opened with `externalId`, the event's integer `id`: every mapping's first field."""
    f = Fields()
    f.add("externalId", "externalId", as_text(as_int(event.get("id"))))
    return f


def entity_type(event: Mapping[str, Any]) -> str | None:
    """The type of the event's entity (``host``, ``account``): `type` (v3.4), else `entity_type` (v3.3)."""
    return as_text(event.get("type")) or as_text(event.get("entity_type"))


def entity_fields(event: Mapping[str, Any], etype: str | None, entity: Any) -> Fields:
    """`event_fields`, then what the entity streams (detections, entity scores) carry next, in this
    order: `cat`, the entity `entity` names (a host as the source host, anything else as the source
    user) and its type in cs1."""
    f = event_fields(event)
    f.add("cat", "cat", as_text(event.get("category")))
    if etype == "host":
        f.add("shost", "srcHostName", as_text(entity))
    else:
        f.add("suser", "usrName", as_text(entity))
    f.add("cs1", "entityType", etype, "entityType")
    return f


def stream_record(
    stream: str, event: Mapping[str, Any], signature: str, name: str, severity: int, fields: Fields
) -> Mapped:
    """The record of a stream with its own mapping: its header product, the time from `event_timestamp`."""
    return Mapped(
        PRODUCTS[stream], signature, name, severity, as_event_time(event.get(EVENT_TIME_FIELD)), fields.items
    )


def generic(event: Mapping[str, Any], stream: str) -> Mapped:
    """Any stream without its own mapping: header from the stream, id and time, and always the raw JSON."""
    base = stream.split(".")[0]
    f = event_fields(event)
    f.add("msg", "msg", as_text(event.get("message")))
    sev = event.get("severity")
    severity = scaled(sev, 1) if isinstance(sev, int | float) and not isinstance(sev, bool) else 1
    if base == "send_test":
        return Mapped("siemconn", "siemconn.send_test", "siemconn send-test", 1, None, f.items)
    product = PRODUCTS.get(base) or f"RUX {base.replace('_', ' ').title()}"
    name = f"Vectra {base.replace('_', ' ')} event"
    return Mapped(product, slug(stream), name, severity, as_event_time(event.get(EVENT_TIME_FIELD)), f.items)


Mapper = Callable[[Mapping[str, Any], str], Mapped]
