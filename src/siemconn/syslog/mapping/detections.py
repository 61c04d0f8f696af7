"""detections: one event per detection and per update of it (docs/formats.md, "detections").

Signature id ``detection.<slug of detection_type>``; name ``detection_type``; severity the highest of the
event's own ``severity`` (0-10 as is), ``threat`` / 10 and ``certainty`` / 10 (rounded half up).
The entity is the actor of the behaviour: an account is the source user (``suser`` / ``usrName``), a
host the source host (``shost`` / ``srcHostName``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from siemconn.syslog.mapping.common import (
    Mapped,
    as_int,
    as_ip,
    as_text,
    entity_fields,
    entity_type,
    json_text,
    scaled,
    slug,
    stream_record,
)

__all__ = ["map_event", "severity"]


def severity(event: Mapping[str, Any]) -> int:
    """CEF severity 0-10: max(severity, round(threat / 10), round(certainty / 10)), each clamped."""
    return max(
        scaled(event.get("severity"), 1), scaled(event.get("threat"), 10), scaled(event.get("certainty"), 10)
    )


def map_event(event: Mapping[str, Any], stream: str) -> Mapped:
    """Map one detection event."""
    dtype = event.get("detection_type")
    if not isinstance(dtype, str) or not dtype:
        dtype = event.get("d_type_vname")
    name = dtype if isinstance(dtype, str) and dtype else "Vectra detection"
    etype = entity_type(event)
    detail = event.get("detail")
    detail = detail if isinstance(detail, Mapping) else {}
    f = entity_fields(event, etype, event.get("entity_uid"))
    f.add("cn1", "detectionId", as_text(as_int(event.get("detection_id"))), "detectionId")
    f.add("cn2", "threat", as_text(as_int(event.get("threat"))), "threat")
    f.add("cn3", "certainty", as_text(as_int(event.get("certainty"))), "certainty")
    f.add("flexNumber1", "vectraSeverity", as_text(as_int(event.get("severity"))), "vectraSeverity")
    f.add("flexNumber2", "entityId", as_text(as_int(event.get("entity_id"))), "entityId")
    f.add("cs2", "detectionUrl", as_text(event.get("detection_href")), "detectionUrl")
    f.add("cs3", "entityUrl", as_text(event.get("url")), "entityUrl")
    f.add("cs4", "mitre", json_text(event.get("mitre")), "mitre", json=True)
    f.add(
        "cs5",
        "triaged",
        as_text(event.get("triaged")) if isinstance(event.get("triaged"), bool) else None,
        "triaged",
    )
    f.add("dst", "dst", as_ip(detail.get("dst_ip")))
    port = as_int(detail.get("dst_port"))
    f.add("dpt", "dstPort", str(port) if port is not None and 0 <= port <= 65535 else None)
    return stream_record("detections", event, f"detection.{slug(dtype)}", name, severity(event), f)
