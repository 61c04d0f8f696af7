"""Realistic RUX event generators for the fake tenant (shapes of the published samples).

`EventFactory` is deterministic for a seed. Each generated event keeps its canonical document
(v3.4 field names) and renders and caches its JSON bytes per API version on first use, so the fake
server serves pages by concatenating cached bytes.

A v3.5 detection asked for with ``size=detailed`` carries the context of the detailed samples
(Cortex XSOAR's Vectra RUX pack): ``entity_name``; ``src_account``, ``src_host``, ``dst_account``,
``dst_host`` as ``{name, id, urgency_score, importance, url}`` or null; ``src_external_host`` and
``dst_domain`` (``{domain}``) or null; ``summary``, ``filters``, ``data_source``, ``status``,
``change_type``, ``assignment`` (nested users, or null), ``reason``, ``notes`` (a list of note
objects, often empty), ``tags``, ``is_targeting_key_asset`` and ``detail.first_timestamp``. The extra
context is derived from the event alone (a generator seeded with its ids), so it is the same on every
request and does not change what the seeded factory generates.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["EventFactory", "GeneratedEvent", "STREAM_ENDPOINTS", "detailed", "fmt_ts", "render"]

STREAM_ENDPOINTS: tuple[str, ...] = ("audits", "detections", "entity_scoring")

_DETECTION_TYPES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # (detection_type, category, entity type, mitre)
    (
        "Hidden HTTPS Tunnel",
        "command_and_control",
        "host",
        ("T1043", "T1094", "T1024", "T1132", "T1001", "T1008", "T1071", "T1032", "T1105", "T1108"),
    ),
    ("Data Smuggler", "exfiltration", "host", ("T1030", "T1041")),
    ("Suspicious Remote Desktop", "command_and_control", "host", ("T1219",)),
    ("Internal Stage Loader", "lateral_movement", "host", ("T1570", "T1105")),
    ("Port Sweep", "reconnaissance", "host", ("T1046",)),
    ("Outbound DoS", "botnet", "host", ("T1498",)),
    ("Azure AD Redundant Access Creation", "command_and_control", "account", ("T1526",)),
    ("M365 Unusual eDiscovery Search", "exfiltration", "account", ("T1114", "T1213")),
    ("AWS S3 Enumeration", "reconnaissance", "account", ("T1619", "T1580")),
    ("Azure AD Admin Account Creation", "lateral_movement", "account", ("T1136.003", "T1098")),
    ("Novel Admin Protocol Usage", "info", "host", ()),
    ("Novel MFA Agent", "info", "account", ()),
)
_HOSTS = (
    "deltics-1",
    "JHancock-pc",
    "Windows10_Jump",
    "srv-db-01.corp.example",
    "mac-élodie",
    "büro-drucker-3",
    "k8s-node-7",
    "ws-東京-042",
    "dc01",
    "",
)
_ACCOUNTS = (
    "O365:john.doe@example.org",
    "O365:józef.müller@exämple.org",
    "AWS:None/us-1-east/config:AWSConfig",
    "O365:ServicePrincipal_3fb87dda-882a-49e1-88b9-67d2499b2fd4",
    "O365:田中太郎@example.jp",
    "AAD:svc-backup@corp.example",
    "O365:sara.o'neil@example.com",
)
_USERS = (
    (1, "admin", "API_CLIENT", "Security Analyst"),
    (22284, "john.doe@net.co", "JWT", "Security Analyst"),
    (22285, "zoë.åkesson@example.se", "JWT", "Super Admin"),
    (17, "qradar_dev_audit", "API_CLIENT", "super_admins"),
    (42, "d.ørsted@example.dk", "JWT", ""),
)
_AUDIT_KINDS = (
    ("user", "login", "log in", "success"),
    ("user", "login", "log in failed: wrong password ✗", "failure"),
    ("api_client", "created", "", "success"),
    ("api_client", "updated", "", "success"),
    ("user", "created", "", "success"),
    ("data_source", "created", "create sensor AWS-SE-PROD", "success"),
    (
        "data_source",
        "updated",
        "update data source for sensor 250d9726-4586-4d9d-9b7d-baf4831168a2",
        "success",
    ),
    ("detection_tag", "created", "Tag testdev has been added to detections with ids [172]", "success"),
    (
        "account_tags",
        "updated",
        "[table:linked_account][id:1] with tags [] was changed to ['tag1', 'tag2']",
        "success",
    ),
    ("", "", "change dns settings from {} to {}", ""),
)
_URGENCY_REASONS = (
    "Ransomware: This entity was prioritized because it was implicated in an active ransomware detection",
    "Attack Rating: This entity was prioritized because its attack rating is above the threshold",
    "Privilege: This entity reached a high privilege level — review “admin” activity",
)


def _ri(r: random.Random, a: int, b: int) -> int:
    """random.randint, 5x cheaper (generation speed matters when seeding 100k events)."""
    return a + int(r.random() * (b - a + 1))


def fmt_ts(ts: float) -> str:
    """Epoch seconds -> the API's output format YYYY-MM-DDTHH:MM:SSZ."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class GeneratedEvent:
    """One event of the fake tenant, with its filter attributes and cached JSON renderings."""

    stream: str  # audits | detections | entity_scoring
    id: int
    ts: float
    doc: dict[str, Any]
    attrs: dict[str, Any]
    _bodies: dict[str, bytes] = field(default_factory=dict, repr=False)

    def body(self, version: str, size: str = "regular", *, cache: bool = True) -> bytes:
        """The event's JSON bytes as served by `version` (v3.3 / v3.4 / v3.5), cached unless `cache` is
        False (a lean tenant); `size` "detailed" (v3.5 detections only) adds the detailed context."""
        legacy = version == "v3.3"
        rich = size == "detailed" and version == "v3.5" and self.stream == "detections"
        key = "v3.5-detailed" if rich else "v3.3" if legacy else "v3.4"
        b = self._bodies.get(key)
        if b is None:
            b = orjson.dumps(detailed(self.doc) if rich else render(self.stream, self.doc, legacy))
            if cache:
                self._bodies[key] = b
        return b


def render(stream: str, doc: dict[str, Any], legacy: bool) -> dict[str, Any]:
    """The document as an API version shows it: v3.3 adds `entity_type` and uses v3.3 entity names."""
    if not legacy:
        return doc
    if stream == "detections":
        out = dict(doc)
        out["entity_type"] = doc["type"]
        return out
    if stream == "entity_scoring":
        out = {
            k: v
            for k, v in doc.items()
            if k not in ("type", "importance", "last_detection", "attack_rating", "urgency_reason")
        }
        out["entity_type"] = doc["type"]
        out["entity_importance"] = doc["importance"]
        ld = doc.get("last_detection") or {}
        out["last_detection_id"] = "" if ld.get("id") is None else ld["id"]
        out["last_detection_type"] = ld.get("type") or ""
        out["last_detection_url"] = ld.get("url") or ""
        return out
    return doc


_IMPORTANCE = ("Low", "Medium", "High")
_STATUSES = ("open", "open", "open", "acknowledged", "escalated", "paused", "closed")
_CHANGE_TYPES = ("new", "append", "adjust", "triage", "investigation_status")
_ANALYSTS = ("soc.analyst@example.org", "zoë.åkesson@example.se", "api_client_xsoar")
_TAGS = ("crown-jewel", "pci", "red-team", "vip", "büro", "needs-review")
_NOTES = (
    "Known scanner, owner contacted",
    "False positive: backup job — see ticket #4711",
    "Escalated to IR; host isolated",
    'User says "it was me"\nclosing after review',
)


def _entity_ref(r: random.Random, base: str, kind: str, entity_id: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "id": entity_id,
        "urgency_score": _ri(r, 0, 100),
        "importance": r.choice(_IMPORTANCE),
        "url": f"{base}/{kind}/{entity_id}",
    }


def detailed(doc: dict[str, Any]) -> dict[str, Any]:
    """A v3.4-named detection document as v3.5 serves it with ``size=detailed`` (module docstring)."""
    r = random.Random(doc["id"] * 1_000_003 + doc["detection_id"])
    url = doc["url"]
    base = url.rsplit("/", 2)[0]
    host = doc["type"] == "host"
    uid = doc["entity_uid"]
    me = _entity_ref(r, base, "hosts" if host else "accounts", doc["entity_id"], uid)
    other_host = _entity_ref(r, base, "hosts", _ri(r, 1, 2000), r.choice(_HOSTS) or "unnamed-host")
    other_account = _entity_ref(r, base, "accounts", _ri(r, 1, 2000), r.choice(_ACCOUNTS))
    src_host = me if host else (other_host if r.random() < 0.3 else None)
    src_account = None if host and r.random() < 0.6 else (other_account if host else me)
    dst_host = other_host if host and r.random() < 0.5 else None
    dst_account = other_account if not host and r.random() < 0.5 else None
    detail = dict(doc["detail"])
    first = detail.get("first_timestamp") or doc["event_timestamp"]
    detail["first_timestamp"] = first
    detail["last_timestamp"] = doc["event_timestamp"]
    detail["src_account"] = src_account
    detail["src_host"] = src_host
    detail["dst_account"] = dst_account
    detail["dst_host"] = dst_host
    dst_ip = detail.get("dst_ip")
    domain = detail.get("target_domain") or r.choice(("login.microsoftonline.com", "s3.amazonaws.com", None))
    status = r.choice(_STATUSES)
    assigned = r.random() < 0.4
    when = doc["event_timestamp"]
    notes = [
        {
            "id": _ri(r, 1, 99999),
            "date_created": when,
            "date_modified": None,
            "created_by": r.choice(_ANALYSTS),
            "modified_by": None,
            "note": r.choice(_NOTES),
        }
        for _ in range(r.choice((0, 0, 0, 1, 2)))
    ]
    out = dict(doc)
    out["detail"] = detail
    out.update(
        {
            "entity_name": uid,
            "src_account": src_account,
            "src_host": src_host,
            "src_external_host": f"198.51.100.{_ri(r, 1, 254)}" if not host and r.random() < 0.7 else None,
            "dst_account": dst_account,
            "dst_host": dst_host,
            "dst_domain": {"domain": domain} if domain else None,
            "summary": {
                "ips": [dst_ip] if dst_ip else [],
                "domains": [domain] if domain else [],
                "hosts": [h["name"] for h in (src_host, dst_host) if h],
                "accounts": [a["name"] for a in (src_account, dst_account) if a],
                "ports": [detail["dst_port"]] if "dst_port" in detail else [],
                "external_targets": [domain] if domain else [],
                "dns": [],
                "protocols": [str(detail["app_protocol"]).upper()] if "app_protocol" in detail else [],
            },
            "filters": {
                "triaged": doc["triaged"],
                "filtered_by_user": doc["triaged"] and r.random() < 0.5,
                "filtered_by_ai": False,
                "filtered_by_rule": doc["triaged"],
                "is_custom_model": False,
            },
            "data_source": {
                "type": "network" if host else r.choice(("o365", "azure_ad", "aws")),
                "sensor_name": r.choice(("Sensor-Zürich-01", "AWS-SE-PROD", "M365-tenant")),
                "sensor_id": uuid.UUID(int=r.getrandbits(128)).hex[:8],
            },
            "unresolved_priority": status == "open" and r.random() < 0.3,
            "status": status,
            "change_type": r.choice(_CHANGE_TYPES),
            "is_prioritized": doc["threat"] >= 50,
            "assignment": (
                {
                    "id": _ri(r, 1, 5000),
                    "date_assigned": when,
                    "date_resolved": when if status == "closed" else None,
                    "assigned_to": {"username": r.choice(_ANALYSTS)},
                    "resolved_by": {"username": r.choice(_ANALYSTS)} if status == "closed" else None,
                    "assigned_by": {"username": r.choice(_ANALYSTS)},
                    "outcome": {"title": "Benign True Positive", "category": "benign_true_positive"}
                    if status == "closed"
                    else None,
                }
                if assigned
                else None
            ),
            "reason": r.choice((None, None, "Rule: scheduled scanner", "Prioritized: key asset")),
            "notes": notes,
            "tags": r.sample(_TAGS, r.choice((0, 0, 1, 2))),
            "external_reference_id": None if r.random() < 0.8 else f"INC{_ri(r, 100000, 999999)}",
            "process_context_data": None,
            "is_targeting_key_asset": r.random() < 0.15,
        }
    )
    return out


class EventFactory:
    """Deterministic generator of audits, detections and entity_scoring events."""

    def __init__(
        self, seed: int = 0, tenant_url: str = "https://demo.uw2.portal.vectra.ai", big_every: int = 100
    ) -> None:
        self._rng = random.Random(seed)
        self._tenant = tenant_url.rstrip("/")
        self._big_every = max(0, big_every)
        self._detection_seq = 1000
        self._detail_seq = 90000
        self._scores: dict[tuple[str, int], int] = {}
        self._open: list[tuple[int, str, int, str, str]] = []  # detection_id, dtype, entity id, etype, uid

    def _big(self, event_id: int) -> bool:
        return self._big_every > 0 and event_id % self._big_every == 7

    def make(self, stream: str, event_id: int, ts: float, entity_type: str | None = None) -> GeneratedEvent:
        if stream == "audits":
            return self.audit(event_id, ts)
        if stream == "detections":
            return self.detection(event_id, ts)
        if stream == "entity_scoring":
            return self.entity_scoring(event_id, ts, entity_type)
        raise ValueError(f"unknown stream {stream!r}")

    # --- audits ------------------------------------------------------------------------------

    def audit(self, event_id: int, ts: float) -> GeneratedEvent:
        r = self._rng
        user_id, username, user_type, role = r.choice(_USERS)
        obj, action, message, status = r.choice(_AUDIT_KINDS)
        event_data: dict[str, Any] = {}
        if obj == "api_client":
            event_data = {
                "api_client": {
                    "client_id": uuid.UUID(int=r.getrandbits(128)).hex[:20],
                    "name": f"siem_{r.choice(('audit', 'detections', 'entity_scoring'))}",
                    "description": "SIEM connector — créé par l'équipe SOC",
                    "role": r.choice(("auditor", "read_only")),
                }
            }
        elif obj == "user":
            event_data = {
                "user": {
                    "username": username,
                    "role": role or "super_admins",
                    "session": {
                        "ip": f"81.2.69.{_ri(r, 1, 254)}",
                        "mfa": r.random() < 0.8,
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                    },
                }
            }
        elif obj == "data_source":
            event_data = {
                "data_source": {
                    "data_source_type": "aws",
                    "api_type": "AWS",
                    "data_source_id": "ua671zu4",
                    "data_source_serial_number": "250d9726-4586-4d9d-9b7d-baf4831168a2",
                    "name": "AWS-SE-PROD",
                    "region": "ca-central-1",
                    "generate_detections": None,
                    "anonymize": True,
                },
                "aws_account_id": None,
            }
        elif obj == "detection_tag":
            event_data = {"account_note": {"note_id": str(_ri(r, 1, 999)), "account_id": str(_ri(r, 1, 99))}}
        if self._big(event_id):
            event_data["updated_data"] = {
                f"rule_{i}": {
                    "enabled": bool(i % 2),
                    "name": f"règle n°{i}",
                    "ips": [f"10.{i % 250}.{j}.1" for j in range(20)],
                }
                for i in range(60)
            }
        doc = {
            "id": event_id,
            "user_id": user_id,
            "username": username,
            "user_type": user_type,
            "api_client_id": str(uuid.UUID(int=r.getrandbits(128))) if user_type == "API_CLIENT" else None,
            "user_role": role,
            "version": r.choice(("2022.0.0", "202502.14.0", "202506.3.1")),
            "source_ip": f"89.160.20.{_ri(r, 1, 254)}",
            "event_timestamp": fmt_ts(ts),
            "message": message,
            "result_status": status,
            "event_data": event_data,
            "event_object": obj,
            "event_action": action,
        }
        return GeneratedEvent(
            "audits", event_id, ts, doc, {"user_id": user_id, "event_object": obj, "event_action": action}
        )

    # --- detections --------------------------------------------------------------------------

    def detection(self, event_id: int, ts: float) -> GeneratedEvent:
        r = self._rng
        if self._open and r.random() < 0.5:  # an update of an open detection
            detection_id, dtype, entity_id, etype, uid = r.choice(self._open)
        else:
            self._detection_seq += 1
            dtype, _, etype, _ = r.choice(_DETECTION_TYPES)
            entity_id = _ri(r, 1, 2000)
            uid = r.choice(_HOSTS) if etype == "host" else r.choice(_ACCOUNTS)
            detection_id = self._detection_seq
            self._open.append((detection_id, dtype, entity_id, etype, uid))
            if len(self._open) > 200:
                self._open.pop(0)
        _, category, _, mitre = next(d for d in _DETECTION_TYPES if d[0] == dtype)
        self._detail_seq += 1
        triaged = r.random() < 0.1
        detail: dict[str, Any] = {}
        if etype == "host" and r.random() < 0.8:
            detail = {
                "app_protocol": r.choice(("https", "http", "rdp", "smb", "dns")),
                "target_domain": r.choice(("cdn.example.net", "update.exämple.com", None, "203.0.113.9")),
                "dst_ip": f"203.0.113.{_ri(r, 1, 254)}",
                "dst_host": r.choice(("api.example.net", None)),
                "dst_port": r.choice((443, 80, 3389, 445, 53)),
                "bytes_received": _ri(r, 0, 10**9),
                "bytes_sent": _ri(r, 0, 10**9),
                "first_timestamp": fmt_ts(ts - _ri(r, 60, 86400)),
                "src_hosts": [
                    {"id": entity_id, "name": uid, "ip": f"10.0.{_ri(r, 0, 255)}.{_ri(r, 1, 254)}"}
                ],
                "dst_hosts": [
                    {
                        "ip": f"203.0.113.{_ri(r, 1, 254)}",
                        "name": r.choice((None, "edge.example.net")),
                        "port": r.choice((443, 8443, 80)),
                        "bytes_sent": _ri(r, 0, 10**7),
                        "geo": {
                            "country": r.choice(("US", "DE", "JP", "BR")),
                            "asn": _ri(r, 1, 65000),
                            "org": r.choice(("Example Hosting GmbH", "Ｅｘａｍｐｌｅ KK", "Acme Cloud")),
                        },
                    }
                    for _ in range(_ri(r, 1, 4))
                ],
                "ja3_hashes": [uuid.UUID(int=r.getrandbits(128)).hex for _ in range(_ri(r, 0, 2))],
            }
        elif etype == "account" and r.random() < 0.7:
            detail = {
                "operations": r.sample(
                    (
                        "Add member to role.",
                        "Update application.",
                        "Consent to application.",
                        "SearchCreated",
                        "ListBuckets",
                        "GetBucketAcl",
                    ),
                    2,
                ),
                "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
                "source_ips": [f"81.2.69.{_ri(r, 1, 254)}" for _ in range(_ri(r, 1, 3))],
                "first_timestamp": fmt_ts(ts - _ri(r, 60, 86400)),
                "location": r.choice(("Zürich, CH", "São Paulo, BR", "東京, JP", None)),
                "resources": [
                    {
                        "id": str(uuid.UUID(int=r.getrandbits(128))),
                        "name": r.choice(
                            ("Mailbox Export", "Tenant Settings", "s3://prod-logs-bucket", "Ärztebriefe")
                        ),
                        "accessed": _ri(r, 1, 500),
                    }
                    for _ in range(_ri(r, 1, 4))
                ],
            }
        if self._big(event_id):
            detail["src_hosts"] = [
                {
                    "id": i,
                    "name": f"hôte-{i:04d}.corp.example",
                    "ip": f"10.{i // 250}.{i % 250}.7",
                    "sessions": _ri(r, 1, 999),
                }
                for i in range(300)
            ]
        base = self._tenant
        kind = "hosts" if etype == "host" else "accounts"
        doc = {
            "id": event_id,
            "category": category,
            "threat": r.choice((0, 0, 0, 50, 78)),
            "certainty": r.choice((0, 0, 50, 88)),
            "triaged": triaged,
            "detection_type": dtype,
            "url": f"{base}/{kind}/{entity_id}",
            "d_type_vname": dtype,
            "detection_id": detection_id,
            "detection_href": f"{base}/detections/{detection_id}?detail_id={self._detail_seq}",
            "entity_id": entity_id,
            "type": etype,
            "entity_uid": uid,
            "event_timestamp": fmt_ts(ts),
            "mitre": list(mitre),
            "detail": detail,
            "severity": r.choice((0, 4, 5, 8)),
        }
        return GeneratedEvent(
            "detections",
            event_id,
            ts,
            doc,
            {"type": etype, "triaged": triaged, "info": category == "info", "detection_id": detection_id},
        )

    # --- entity scoring ----------------------------------------------------------------------

    def entity_scoring(self, event_id: int, ts: float, entity_type: str | None = None) -> GeneratedEvent:
        r = self._rng
        etype = entity_type or r.choice(("account", "host"))
        entity_id = _ri(r, 1, 300)
        name = r.choice(_ACCOUNTS) if etype == "account" else r.choice(_HOSTS)
        score = _ri(r, 0, 100)
        previous = self._scores.get((etype, entity_id))
        decrease = previous is not None and score < previous and r.random() < 0.3
        if previous is not None and score < previous and not decrease:
            score = min(100, previous + _ri(r, 0, 5))
        self._scores[(etype, entity_id)] = score
        active = r.sample([d[0] for d in _DETECTION_TYPES if d[2] == etype], _ri(r, 0, 4))
        base = self._tenant
        kind = "hosts" if etype == "host" else "accounts"
        ld_id = _ri(r, 100, 50000) if active and r.random() < 0.85 else None
        doc: dict[str, Any] = {
            "id": event_id,
            "entity_id": entity_id,
            "name": name,
            "breadth_contrib": _ri(r, 0, 3),
            "importance": _ri(r, 0, 2),
            "type": etype,
            "is_prioritized": score >= 50,
            "severity": "High" if score >= 70 else "Medium" if score >= 40 else "Low",
            "urgency_score": score,
            "velocity_contrib": _ri(r, 0, 3),
            "attack_rating": _ri(r, 0, 10),
            "active_detection_types": active,
            "category": "ACCOUNT SCORING" if etype == "account" else "HOST_SCORING",
            "url": f"{base}/{kind}/{entity_id}",
            "event_timestamp": fmt_ts(ts),
            "last_detection": {
                "id": ld_id,
                "type": active[0] if active else "",
                "url": f"{base}/detections/{ld_id}" if ld_id is not None else None,
            },
        }
        if score >= 50:
            doc["urgency_reason"] = r.choice(_URGENCY_REASONS)
        if self._big(event_id):
            doc["active_detection_types"] = [f"{d[0]} #{i}" for i in range(40) for d in _DETECTION_TYPES][
                :400
            ]
        return GeneratedEvent("entity_scoring", event_id, ts, doc, {"type": etype, "decrease": decrease})
