"""Field mappings for the SIEM-native formats (CEF, LEEF): one event in, a format-neutral record out.

A `Mapped` record holds what both formats need: the header's product, signature id, name and severity
(0-10), the event time, and an ordered list of `Field`s. Each field names its CEF key (a standard key,
or a custom slot such as ``cs1`` with its label), its LEEF key (a predefined attribute or a custom key),
and its value as text. `cef.py` and `leef.py` only escape and join; what goes where is decided here,
once, so the two formats always carry the same facts (docs/formats.md is the table of it).

One module per stream (`detections`, `entity_scoring`, `audit`); a stream without a module (health and
lockdown, once they exist, or anything unknown) gets `generic`: its name and signature from the stream,
`rt`/`devTime` from `event_timestamp`, `externalId` from `id`, and the full event JSON always, so nothing
is unreachable. Mapping functions are pure and total: any JSON value in any field gives a record, never
an exception (a field of the wrong type is left out; the raw event, when enabled, still has it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final

from siemconn.config import STREAM_DEFS
from siemconn.syslog.mapping import audit, detections, entity_scoring
from siemconn.syslog.mapping.common import (
    PRODUCTS,
    RAW_EVENT_LABEL,
    VENDOR,
    VERSION,
    Field,
    Mapped,
    Mapper,
    generic,
)

__all__ = [
    "MAPPING_MODULES",
    "PRODUCTS",
    "RAW_EVENT_LABEL",
    "VENDOR",
    "VERSION",
    "Field",
    "Mapped",
    "decode",
    "map_event",
]

# the mapping modules, by the name a stream's definition gives (siemconn.config.streams `mapper`)
MAPPING_MODULES: Final[Mapping[str, Mapper]] = MappingProxyType(
    {"detections": detections.map_event, "entity_scoring": entity_scoring.map_event, "audit": audit.map_event}
)
_MAPPERS: Final[Mapping[str, Mapper]] = MappingProxyType(
    {d.name: MAPPING_MODULES[d.mapper] for d in STREAM_DEFS if d.mapper is not None}
)


def map_event(event: Any, stream: str, *, include_raw: bool, raw_json: str) -> Mapped:
    """Map one decoded event of `stream`. `raw_json` is the event's JSON text, carried when `include_raw`
    is set, and always for a stream without a mapping or a payload that is not a JSON object."""
    base = stream.split(".")[0]
    if not isinstance(event, Mapping):
        product = PRODUCTS.get(base, "RUX")
        return Mapped(product, "unparsed", "Unparsed event", 1, None, [], raw_json)
    mapper = _MAPPERS.get(base)
    if mapper is not None:
        try:
            m = mapper(event, stream)
        except RecursionError:  # a list or object nested deeper than json.dumps goes
            mapper = None
    if mapper is None:
        m = generic(event, stream)
    if mapper is None or include_raw:
        return replace(m, raw=raw_json)
    return m


def decode(payload: str | bytes) -> tuple[Any, str]:
    """The event decoded from its stored JSON, and the JSON as text; (None, text) if it does not parse.

    The standard library's decoder, not orjson: orjson reads an integer beyond 64 bits as a float,
    which would change the number that a field carries."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    try:
        return json.loads(text), text
    except (ValueError, RecursionError):
        return None, text
