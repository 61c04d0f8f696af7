"""detections: one event per detection and per update of it (docs/formats.md, "detections").

Signature id ``detection.<slug of detection_type>``; name ``detection_type``; severity the highest of the
event's own ``severity`` (0-10 as is), ``threat`` / 10 and ``certainty`` / 10 (rounded half up).
The entity is the actor of the behaviour: an account is the source user (``suser`` / ``usrName``), a
host the source host (``shost`` / ``srcHostName``).

v3.5 ``size=detailed`` events add context, mapped only where a standard key means the same thing: the
source slot the entity left free (``src_host`` of an account detection, ``src_account`` of a host
detection), ``src_external_host`` as ``src`` when it is an address, ``dst_host`` / ``dst_account`` /
``dst_domain`` as the destination host, user and DNS domain, ``detail.first_timestamp`` as ``start``,
and the triage state (``status``, else ``investigation_status``; ``change_type``) in the flex strings.
Regular events carry none of these keys, so their output is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from siemconn.events.eventtime import as_event_time
from siemconn.syslog.mapping.common import (
    Fields,
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def severity(event: Mapping[str, Any]) -> int:
    """CEF severity 0-10: max(severity, round(threat / 10), round(certainty / 10)), each clamped."""
    return max(
        scaled(event.get("severity"), 1), scaled(event.get("threat"), 10), scaled(event.get("certainty"), 10)
    )


def _name(value: Any, key: str = "name") -> str | None:
    """`value[key]` as text when `value` is an object (the detailed entity and domain references)."""
    return as_text(value.get(key)) if isinstance(value, Mapping) else None


def _millis(value: Any) -> str | None:
    """An ISO-8601 time as milliseconds since the epoch (CEF's `rt` form), else None."""
    ts = as_event_time(value)
    return None if ts is None else str((ts - _EPOCH) // _MS)


def _detailed(f: Fields, event: Mapping[str, Any], etype: str | None, detail: Mapping[str, Any]) -> None:
    """The v3.5 detailed context (module docstring); absent keys add nothing."""
    if etype == "host":
        f.add("suser", "usrName", _name(event.get("src_account")))
    else:
        f.add("shost", "srcHostName", _name(event.get("src_host")))
    f.add("src", "src", as_ip(event.get("src_external_host")))
    f.add("dhost", "dstHostName", _name(event.get("dst_host")))
    f.add("duser", "dstUserName", _name(event.get("dst_account")))
    f.add("destinationDnsDomain", "dstDomain", _name(event.get("dst_domain"), "domain"))
    f.add("start", "startTime", _millis(detail.get("first_timestamp")))
    status = as_text(event.get("status")) or as_text(event.get("investigation_status"))
    f.add("flexString1", "investigationStatus", status, "investigationStatus")
    f.add("flexString2", "changeType", as_text(event.get("change_type")), "changeType")


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
    _detailed(f, event, etype, detail)
    return stream_record("detections", event, f"detection.{slug(dtype)}", name, severity(event), f)
