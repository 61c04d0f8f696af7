"""entity_scoring: one event per change of an account's or a host's score (docs/formats.md).

Signature id ``entity_scoring.<type>`` (``account`` / ``host``, from the event, else from the stream key
``entity_scoring.<type>``); severity the highest of the ``severity`` label (Low 3, Medium 5, High 8,
Critical 10) and ``urgency_score`` / 10 rounded half up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from siemconn.syslog.mapping.common import (
    Mapped,
    as_int,
    as_text,
    entity_fields,
    entity_type,
    json_text,
    scaled,
    slug,
    stream_record,
)

__all__ = ["SEVERITY_LABELS", "map_event", "severity"]

SEVERITY_LABELS: dict[str, int] = {"low": 3, "medium": 5, "high": 8, "critical": 10}


def severity(event: Mapping[str, Any]) -> int:
    """CEF severity 0-10: max(label value, round(urgency_score / 10))."""
    label = event.get("severity")
    from_label = SEVERITY_LABELS.get(label.strip().lower(), 0) if isinstance(label, str) else 0
    return max(from_label, scaled(event.get("urgency_score"), 10))


def map_event(event: Mapping[str, Any], stream: str) -> Mapped:
    """Map one entity scoring event (v3.4 names, with the v3.3 names as fallbacks)."""
    etype = entity_type(event)
    if etype is None and "." in stream:
        etype = stream.split(".", 1)[1]
    importance = as_int(event.get("importance"))
    if importance is None:
        importance = as_int(event.get("entity_importance"))
    last = event.get("last_detection")
    last_type = last.get("type") if isinstance(last, Mapping) else event.get("last_detection_type")
    f = entity_fields(event, etype, event.get("name"))
    f.add("cn1", "urgencyScore", as_text(as_int(event.get("urgency_score"))), "urgencyScore")
    f.add("cn2", "breadthContrib", as_text(as_int(event.get("breadth_contrib"))), "breadthContrib")
    f.add("cn3", "velocityContrib", as_text(as_int(event.get("velocity_contrib"))), "velocityContrib")
    prio = event.get("is_prioritized")
    f.add("cs2", "isPrioritized", as_text(prio) if isinstance(prio, bool) else None, "isPrioritized")
    f.add("cs3", "entityUrl", as_text(event.get("url")), "entityUrl")
    f.add(
        "cs4",
        "activeDetectionTypes",
        json_text(event.get("active_detection_types")),
        "activeDetectionTypes",
        json=True,
    )
    f.add("cs5", "entitySeverity", as_text(event.get("severity")), "entitySeverity")
    f.add("flexNumber1", "importance", as_text(importance), "importance")
    f.add("flexNumber2", "attackRating", as_text(as_int(event.get("attack_rating"))), "attackRating")
    f.add("flexString1", "lastDetectionType", as_text(last_type), "lastDetectionType")
    f.add("msg", "msg", as_text(event.get("urgency_reason")))
    kind = {"host": "Host", "account": "Account"}.get(etype or "", "Entity")
    return stream_record(
        "entity_scoring", event, f"entity_scoring.{slug(etype)}", f"{kind} score change", severity(event), f
    )
