"""The stream table: every per-stream fact in one definition (`StreamDef`), from which the names that
config.json's scheduler and a server's `streams` refer to, the API endpoint and role (siemconn.rux.streams),
the CEF/LEEF product and field mapping (siemconn.syslog.mapping) and the snapshot handling
(siemconn.service.pulling) are all taken. Adding a stream is one entry here, plus its scheduler key in
`SchedulerConfig` (a test checks that the two agree), and a mapping module if it gets one.

STREAMS is also the order every per-stream listing (enabled, disabled, status) follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "LIST_SNAPSHOT",
    "OBJECT_SNAPSHOT",
    "OFF",
    "REQUIRED_STREAMS",
    "STREAMS",
    "STREAM_DEFS",
    "STREAM_TABLE",
    "StreamDef",
]

OBJECT_SNAPSHOT: Final = "object"  # one JSON object per poll, queued as one event (health)
LIST_SNAPSHOT: Final = "list"  # a JSON array per poll, diffed against the last-seen list (lockdown)


@dataclass(frozen=True)
class StreamDef:
    """One stream. `snapshot` None: an event stream paged from a checkpoint; else how a poll's whole
    answer becomes events. `mapper`: the siemconn.syslog.mapping module with its CEF/LEEF fields
    (None: the generic mapping). `required`: its scheduler key must be in config.json (the reference's
    three streams); the others are off unless scheduled. `v35`: served by API v3.5 (the others stay at
    v3.4 under `api_version: v3.5`). `bulk`: what trimming removes first."""

    name: str
    endpoint: str  # the path below /api/<version>/
    role: str  # the Vectra API-client role it needs (Elastic's vectra_rux docs)
    product: str  # the CEF/LEEF header product
    mapper: str | None = None
    snapshot: Literal["object", "list"] | None = None
    entity_types: tuple[str, ...] = ()  # pulled once per entity type, each with its own checkpoint
    required: bool = False
    v35: bool = False
    # low-value members a message over its size budget loses first, in this order (a dotted path is a
    # member of a top-level object; siemconn.syslog.trim)
    bulk: tuple[str, ...] = ()


STREAM_DEFS: tuple[StreamDef, ...] = (
    StreamDef(
        "audit", "events/audits", "Auditor", "RUX Audit", mapper="audit", required=True, bulk=("event_data",)
    ),
    StreamDef(
        "detections",
        "events/detections",
        "Read-Only",
        "RUX Detections",
        "detections",
        required=True,
        v35=True,
        bulk=(
            "grouped_details",
            "summary",
            "detail.src_hosts",
            "detail.dst_hosts",
            "detail.resources",
            "detail.operations",
            "d_detection_details",
            "process_context_data",
            "filters",
            "notes",
        ),
    ),
    StreamDef(
        "entity_scoring",
        "events/entity_scoring",
        "Read-Only",
        "RUX Entity Scoring",
        "entity_scoring",
        entity_types=("account", "host"),
        required=True,
        bulk=("active_detection_types", "urgency_reason", "last_detection"),
    ),
    StreamDef(
        "health",
        "health",
        "Auditor",
        "RUX Health",
        snapshot=OBJECT_SNAPSHOT,
        bulk=("sensors", "connectivity", "trafficdrop", "network", "disk", "hostid"),
    ),
    StreamDef("lockdown", "lockdown", "Read-Only", "RUX Lockdown", snapshot=LIST_SNAPSHOT),
)
STREAM_TABLE: Final[Mapping[str, StreamDef]] = MappingProxyType({d.name: d for d in STREAM_DEFS})

STREAMS: tuple[str, ...] = tuple(d.name for d in STREAM_DEFS)
# the reference's three streams: their `scheduler` keys are required; health and lockdown are opt-in
REQUIRED_STREAMS: tuple[str, ...] = tuple(d.name for d in STREAM_DEFS if d.required)
OFF = "off"  # `"scheduler": {"audit": "off"}` (or null) turns a stream off
