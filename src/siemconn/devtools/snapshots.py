"""The fake tenant's snapshot endpoints: `/health` (one object) and `/lockdown` (a bare array).

Shapes follow Elastic's public vectra_rux mock: health has `cpu`, `disk`, `memory`, `network`, `power`,
`sensors`, `system`, `trafficdrop`, `connectivity` and `hostid`, each with `updated_at`; a lockdown
entry has `id`, `type`, `entity_id`, `entity_name`, `lock_event_timestamp`, `locked_by`, `certainty` and
`unlock_event_timestamp`. `Lockdowns` locks and unlocks entities over time (`churn`), and lockdowns whose
`unlock_event_timestamp` has passed leave the list by themselves.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from siemconn.devtools.events import fmt_ts

__all__ = ["LockdownEntry", "Lockdowns", "health_body"]

_SENSORS = (
    ("EDR-Sensor-01", "VHE3f8a21b7", "10.10.1.21"),
    ("aws-us-east-1", "VHEc92b0d44", "172.31.4.18"),
    ("paris-dc-tap", "VHE71de9a02", "192.168.30.5"),
)
_HOSTS = ("deltics-1", "JHancock-pc", "Windows10_Jump", "srv-db-01.corp.example", "mac-élodie", "dc01")
_ACCOUNTS = ("O365:john.doe@example.org", "O365:józef.müller@exämple.org", "AAD:svc-backup@corp.example")
_LOCKERS = ("qradar_dev_lockdown", "john.doe@net.co", "zoë.åkesson@example.se", "Vectra Automated Response")


def health_body(now: float, rng: random.Random) -> dict[str, Any]:
    """One realistic /health object; the figures vary a little per call."""
    at = fmt_ts(now)
    idle = round(60 + rng.random() * 35, 1)
    user = round((100 - idle) * 0.7, 1)
    total_mem = 67_108_864_000
    used_mem = int(total_mem * (0.4 + rng.random() * 0.3))
    total_disk = 1_919_850_381_312
    used_disk = int(total_disk * (0.2 + rng.random() * 0.1))
    sensors = [
        {
            "id": i + 1,
            "name": name,
            "serial_number": serial,
            "ip_address": ip,
            "status": "paired",
            "last_seen": at,
            "product_name": "vSensor",
            "version": "8.9.0-14-46",
            "location": None,
            "updated_at": at,
        }
        for i, (name, serial, ip) in enumerate(_SENSORS)
    ]
    return {
        "connectivity": {
            "sensors": [
                {
                    "name": name,
                    "serial_number": serial,
                    "ip_address": ip,
                    "status": "OK",
                    "affected_metadata_hours": [],
                    "error": "",
                }
                for name, serial, ip in _SENSORS
            ],
            "updated_at": at,
        },
        "cpu": {
            "user_percent": user,
            "nice_percent": 0.0,
            "system_percent": round(100 - idle - user, 1),
            "idle_percent": idle,
            "updated_at": at,
        },
        "disk": {
            "degraded_raid_volume": {"error": "", "output": "", "status": "OK"},
            "disk_raid": {"error": "", "output": "", "status": "OK"},
            "disk_utilization": {
                "free_bytes": total_disk - used_disk,
                "usage_percent": round(100 * used_disk / total_disk, 1),
                "used_bytes": used_disk,
                "total_bytes": total_disk,
            },
            "raid_disks_missing": {"error": "", "output": "", "status": "OK"},
            "updated_at": at,
        },
        "hostid": {
            "artifact_counts": {
                "TestEDR": 0,
                "arp": 812,
                "dhcp": 340,
                "dns": 1277,
                "kerberos": 98,
                "zpa_user": 0,
            },
            "ip_always_percent": 87.5,
            "ip_sometimes_percent": 9.1,
            "ip_never_percent": 3.4,
            "updated_at": at,
        },
        "memory": {
            "free_bytes": total_mem - used_mem,
            "total_bytes": total_mem,
            "usage_percent": round(100 * used_mem / total_mem, 1),
            "used_bytes": used_mem,
            "updated_at": at,
        },
        "network": {
            "interfaces": {
                "brain": {
                    "eth0": {"link": "UP", "speed_mbps": 10000},
                    "eth1": {"link": "DOWN", "speed_mbps": 0},
                }
            },
            "traffic": {
                "brain": {
                    "aggregated_peak_traffic_mbps": round(200 + rng.random() * 300, 1),
                    "interface_peak_traffic": {
                        "eth0": {"peak_traffic_mbps": round(150 + rng.random() * 100, 1)}
                    },
                }
            },
            "vlans": {"count": 12, "link": "https://demo.uw2.portal.vectra.ai/api/v3.4/health/network/vlans"},
            "updated_at": at,
        },
        "power": {
            "power_supplies": {"PSU1": {"status": "OK"}, "PSU2": {"status": "OK"}},
            "status": "OK",
            "error": "",
            "updated_at": at,
        },
        "sensors": sensors,
        "system": {
            "serial_number": "VHB0a1b2c3d",
            "uptime": f"{int(now // 86400) % 400} days, 3:14:07",
            "version": {
                "last_update": fmt_ts(now - 86400 * 6),
                "model": "VMWARE",
                "vm_type": "vmware",
                "vectra_instance_type": "brain",
                "vectra_version": "8.9.0-14-46",
                "mode": "brain",
            },
            "updated_at": at,
        },
        "trafficdrop": {
            "sensors": [
                {"name": name, "serial_number": serial, "ip_address": ip, "status": "OK", "error": ""}
                for name, serial, ip in _SENSORS
            ],
            "updated_at": at,
        },
    }


@dataclass
class LockdownEntry:
    """One entity in lockdown, as the fake serves it."""

    id: int
    type: str  # account | host
    entity_id: int
    entity_name: str
    lock_ts: float
    locked_by: str
    certainty: int
    unlock_ts: float

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "entity_id": self.entity_id,
            "entity_name": self.entity_name,
            "lock_event_timestamp": fmt_ts(self.lock_ts),
            "locked_by": self.locked_by,
            "certainty": self.certainty,
            "unlock_event_timestamp": fmt_ts(self.unlock_ts),
        }


class Lockdowns:
    """The fake's lockdown list: lock, unlock, extend, expire, and random churn (thread-safe)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed ^ 0x10C)
        self._entries: dict[tuple[str, int], LockdownEntry] = {}
        self._next_id = 1

    def lock(
        self,
        entity_type: str = "host",
        entity_id: int | None = None,
        *,
        name: str | None = None,
        duration: float = 24 * 3600,
        locked_by: str | None = None,
        certainty: int | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Put an entity in lockdown (a no-op returning the entry if it already is); return the entry."""
        if entity_type not in ("account", "host"):
            raise ValueError(f"lockdown type {entity_type!r}; expected 'account' or 'host'")
        t = time.time() if now is None else now
        with self._lock:
            r = self._rng
            if entity_id is None:
                entity_id = 100 + int(r.random() * 900)
                while (entity_type, entity_id) in self._entries:
                    entity_id += 1
            key = (entity_type, entity_id)
            if key not in self._entries:
                names = _HOSTS if entity_type == "host" else _ACCOUNTS
                self._entries[key] = LockdownEntry(
                    id=self._next_id,
                    type=entity_type,
                    entity_id=entity_id,
                    entity_name=name if name is not None else names[int(r.random() * len(names))],
                    lock_ts=t,
                    locked_by=locked_by or _LOCKERS[int(r.random() * len(_LOCKERS))],
                    certainty=certainty if certainty is not None else 40 + int(r.random() * 60),
                    unlock_ts=t + duration,
                )
                self._next_id += 1
            return self._entries[key].doc()

    def unlock(self, entity_type: str, entity_id: int) -> bool:
        """Take an entity out of lockdown; False if it was not in it."""
        with self._lock:
            return self._entries.pop((entity_type, entity_id), None) is not None

    def extend(self, entity_type: str, entity_id: int, seconds: float) -> dict[str, Any]:
        """Move an entry's unlock_event_timestamp later (a field change)."""
        with self._lock:
            entry = self._entries[(entity_type, entity_id)]
            entry.unlock_ts += seconds
            return entry.doc()

    def entries(self, now: float | None = None) -> list[dict[str, Any]]:
        """The list as /lockdown serves it, oldest lock first; expired lockdowns leave it first."""
        t = time.time() if now is None else now
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.unlock_ts <= t]:
                del self._entries[key]
            return [e.doc() for e in sorted(self._entries.values(), key=lambda e: e.id)]

    def churn(self) -> None:
        """One random step of a tenant's day: lock an entity (or, with 3 or more locked, unlock one)."""
        with self._lock:
            locked = list(self._entries)
            unlock = len(locked) >= 3 or (locked and self._rng.random() < 0.4)
            victim = locked[int(self._rng.random() * len(locked))] if unlock and locked else None
            etype = "host" if self._rng.random() < 0.6 else "account"
        if victim is not None:
            self.unlock(*victim)
        else:
            self.lock(etype, duration=3600 + self._rng.random() * 86400)
