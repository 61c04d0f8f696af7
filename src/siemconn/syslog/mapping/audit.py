"""audit: one event per user or API-client action in the Vectra UI or API (docs/formats.md, "audit").

Signature id ``audit.<slug of event_object>.<slug of event_action>`` (``none`` for an empty part);
name ``<event_object> <event_action>``; severity 5 when ``result_status`` is ``failure``, else 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from siemconn.syslog.mapping.common import (
    Mapped,
    as_int,
    as_ip,
    as_text,
    event_fields,
    json_text,
    slug,
    stream_record,
)

__all__ = ["map_event", "severity"]


def severity(event: Mapping[str, Any]) -> int:
    """CEF severity: 5 (medium) for a failed action, 1 (low) otherwise."""
    status = event.get("result_status")
    return 5 if isinstance(status, str) and status.strip().lower() == "failure" else 1


def map_event(event: Mapping[str, Any], stream: str) -> Mapped:
    """Map one audit event."""
    obj = as_text(event.get("event_object"))
    act = as_text(event.get("event_action"))
    name = " ".join(p for p in (obj, act) if p) or "Audit event"
    f = event_fields(event)
    f.add("cat", "cat", obj)
    f.add("act", "action", act)
    f.add("outcome", "outcome", as_text(event.get("result_status")))
    f.add("suser", "usrName", as_text(event.get("username")))
    f.add("suid", "userId", as_text(as_int(event.get("user_id"))))
    f.add("spriv", "role", as_text(event.get("user_role")))
    f.add("src", "src", as_ip(event.get("source_ip")))
    f.add("msg", "msg", as_text(event.get("message")))
    f.add("cs1", "userType", as_text(event.get("user_type")), "userType")
    f.add("cs2", "apiClientId", as_text(event.get("api_client_id")), "apiClientId")
    f.add("cs3", "vectraVersion", as_text(event.get("version")), "vectraVersion")
    f.add("cs4", "eventData", json_text(event.get("event_data")), "eventData", json=True)
    return stream_record(
        "audit", event, f"audit.{slug(obj, 'none')}.{slug(act, 'none')}", name, severity(event), f
    )
