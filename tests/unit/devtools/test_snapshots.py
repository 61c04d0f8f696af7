"""siemconn.devtools.snapshots and the fake tenant's snapshot endpoints over real HTTP: health is one object
with every section updated, lockdown a bare array that changes over time (locks expire and churn), and
roles and faults apply to both."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from support.e2e import CLIENT_ID, SECRET, serve_fake
from support.snapshots import HEALTH_SECTIONS

from siemconn.devtools.fake_rux import FakeRux, Fault
from siemconn.devtools.snapshots import Lockdowns

LOCKDOWN_FIELDS = {
    "id",
    "type",
    "entity_id",
    "entity_name",
    "lock_event_timestamp",
    "locked_by",
    "certainty",
    "unlock_event_timestamp",
}


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=5, seed_detections=7, seed_lockdown=2)


def _token(fake: FakeRux) -> str:
    r = httpx.post(
        fake.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, SECRET)
    )
    return str(r.json()["access_token"])


def _get(fake: FakeRux, path: str, tok: str | None) -> httpx.Response:
    return httpx.get(fake.url + path, headers={"Authorization": f"Bearer {tok}"} if tok else {})


def test_fake_health_is_one_object_with_every_section_updated(fake: FakeRux) -> None:
    tok = _token(fake)
    for version in ("v3.3", "v3.4"):
        r = _get(fake, f"/api/{version}/health/", tok)
        assert r.status_code == 200
        body = r.json()
        assert isinstance(body, dict) and set(body) == HEALTH_SECTIONS
        for name, section in body.items():
            if name == "sensors":
                assert section and all("updated_at" in s for s in section)
            else:
                assert section["updated_at"].endswith("Z"), name
    assert _get(fake, "/api/v3.4/health", None).status_code == 401


def test_fake_lockdown_is_a_bare_array_that_changes_over_time(fake: FakeRux) -> None:
    tok = _token(fake)
    body = _get(fake, "/api/v3.4/lockdown", tok).json()
    assert isinstance(body, list) and len(body) == 2
    assert all(set(e) == LOCKDOWN_FIELDS for e in body)
    new = httpx.post(
        fake.url + "/_fake/lockdown", params={"action": "lock", "type": "host", "entity_id": 7}
    ).json()
    assert new["entity_id"] == 7 and new["type"] == "host"
    assert new in _get(fake, "/api/v3.3/lockdown", tok).json()
    ext = httpx.post(
        fake.url + "/_fake/lockdown",
        params={"action": "extend", "type": "host", "entity_id": 7, "seconds": 60},
    ).json()
    assert ext["unlock_event_timestamp"] > new["unlock_event_timestamp"]
    r = httpx.post(fake.url + "/_fake/lockdown", params={"action": "unlock", "type": "host", "entity_id": 7})
    assert r.json() == {"unlocked": True}
    assert all(e["entity_id"] != 7 for e in _get(fake, "/api/v3.4/lockdown", tok).json())


def test_lockdowns_expire_and_churn() -> None:
    ld = Lockdowns(seed=3)
    now = time.time()
    ld.lock("host", 1, duration=10, now=now)
    ld.lock("account", 2, duration=100, now=now)
    assert [e["entity_id"] for e in ld.entries(now + 5)] == [1, 2]
    assert [e["entity_id"] for e in ld.entries(now + 50)] == [2]  # the host's lockdown ran out
    seen: set[int] = set()
    sizes: set[int] = set()
    for _ in range(30):
        ld.churn()
        cur = ld.entries()
        seen.update(e["id"] for e in cur)
        sizes.add(len(cur))
    assert len(seen) > 3 and max(sizes) <= 3 and len(sizes) > 1  # entities come and go


def test_fake_roles_and_faults_apply_to_snapshot_endpoints(fake: FakeRux) -> None:
    tok = _token(fake)
    fake.configure(roles=["Read-Only"])
    assert _get(fake, "/api/v3.4/health", tok).status_code == 403  # health needs Auditor
    assert _get(fake, "/api/v3.4/lockdown", tok).status_code == 200
    fake.configure(roles=["Auditor"])
    assert _get(fake, "/api/v3.4/lockdown", tok).status_code == 403  # lockdown needs Read-Only
    fake.configure(roles=None)
    fake.add_fault(Fault(path="lockdown", status=503), Fault(path="health", body="not json", status=200))
    assert _get(fake, "/api/v3.4/lockdown", tok).status_code == 503
    assert _get(fake, "/api/v3.4/health", tok).text == "not json"
    assert _get(fake, "/api/v3.4/lockdown", tok).status_code == 200
