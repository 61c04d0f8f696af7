"""health and lockdown end to end below the process level: the fake tenant's endpoints over real HTTP,
the client's snapshot/probe calls, `siemconn check` per stream, and the service's snapshot pulls into a
real queue (changes only, state committed with them, 403 on one stream leaving the others flowing)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.e2e import CLIENT_ID, SECRET, connector_config, serve_fake
from support.snapshots import HEALTH_SECTIONS

from siemconn.cli import main
from siemconn.config import load_settings
from siemconn.devtools.fake_rux import FakeRux, Fault
from siemconn.devtools.snapshots import Lockdowns
from siemconn.errors import RuxPermissionError, RuxResponseError
from siemconn.queue import DurableQueue
from siemconn.rux.client import RuxClient
from siemconn.rux.lockdown import MARKER, UNLOCKED
from siemconn.rux.streams import StreamSpec
from siemconn.service import Service

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


# --- the fake tenant ---------------------------------------------------------------------------


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


# --- client ---------------------------------------------------------------------------------


def _settings(
    tmp_path: Path, fake: FakeRux, servers: list[dict[str, Any]] | None = None, **extra: Any
) -> Any:
    p = tmp_path / "config.json"
    servers = servers or [
        {"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}
    ]
    p.write_text(json.dumps(connector_config(tmp_path, servers, **extra)))
    return load_settings(p, {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET})


async def test_client_snapshot_and_probe(tmp_path: Path, fake: FakeRux) -> None:
    s = _settings(tmp_path, fake, api_version="v3.4")
    async with RuxClient(s.credentials, s.configuration) as client:
        assert set(await client.snapshot(StreamSpec("health"))) == HEALTH_SECTIONS
        assert len(await client.snapshot(StreamSpec("lockdown"))) == 2
        assert await client.probe(StreamSpec("detections")) == "HTTP 200, 1 event (limit=1)"
        assert await client.probe(StreamSpec("lockdown")) == "HTTP 200, 2 entities in lockdown"
        assert fake.requests[-2].params["limit"] == "1"
        fake.configure(roles=["Read-Only"])
        with pytest.raises(RuxPermissionError, match=r"Auditor role.*\"scheduler\": \{\"health\": null\}"):
            await client.snapshot(StreamSpec("health"))
        fake.configure(roles=None)
        fake.add_fault(Fault(path="health", body="<html>", status=200))
        with pytest.raises(RuxResponseError, match="not JSON"):
            await client.snapshot(StreamSpec("health"))


# --- check ----------------------------------------------------------------------------------


def test_check_tries_every_enabled_stream_and_names_the_role(
    tmp_path: Path, fake: FakeRux, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET}.items():
        monkeypatch.setenv(k, v)
    p = tmp_path / "config.json"
    sched = {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": None, "lockdown": "* * * * *"}
    doc = connector_config(
        tmp_path, [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}]
    )
    doc["configuration"]["scheduler"] = sched
    p.write_text(json.dumps(doc))
    assert main(["check", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "ok     stream audit: HTTP 200, 1 event (limit=1)" in out
    assert "ok     stream detections: HTTP 200, 1 event (limit=1)" in out
    assert "ok     stream lockdown: HTTP 200, 2 entities in lockdown" in out
    assert "ok     stream entity_scoring: off (not polled)" in out
    assert "ok     stream health: off (not polled)" in out
    assert not any(r.path.endswith("entity_scoring") for r in fake.requests)
    fake.configure(roles=["Read-Only"])  # no Auditor: audit fails, the others pass
    assert main(["check", "--config", str(p)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAILED stream audit: HTTP 403: the API client lacks the Auditor role; add it in the Vectra UI" in out
    )
    assert '"scheduler": {"audit": null}' in out
    assert "ok     stream detections" in out and "ok     stream lockdown" in out
    fake.configure(roles=["Auditor"])
    assert main(["check", "--config", str(p)]) == 1
    out = capsys.readouterr().out
    assert "FAILED stream detections: HTTP 403: the API client lacks the Read-Only role" in out
    assert "FAILED stream lockdown: HTTP 403: the API client lacks the Read-Only role" in out
    assert "ok     stream audit" in out
    assert main(["status", "--config", str(p)]) == 0
    assert "streams off: entity_scoring, health" in capsys.readouterr().out


# --- service pulls --------------------------------------------------------------------------


async def _service(tmp_path: Path, fake: FakeRux, **extra: Any) -> Service:
    s = _settings(tmp_path, fake, **extra)
    svc = Service(s)
    svc.queue = await DurableQueue.open(s.data_dir, ["u"])
    svc.client = RuxClient(s.credentials, s.configuration)
    return svc


async def _payloads(q: DurableQueue) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    while (b := await q.read_batch("u", 100)) is not None:
        out.extend((e.stream, json.loads(e.payload)) for e in b.events)
        await q.ack(b)
    return out


async def test_health_pull_forwards_the_object_once_per_poll(tmp_path: Path, fake: FakeRux) -> None:
    svc = await _service(tmp_path, fake)
    assert svc.queue is not None and svc.client is not None
    try:
        assert await svc.pull_snapshot(StreamSpec("health")) == 1
        assert await svc.pull_snapshot(StreamSpec("health")) == 1
        got = await _payloads(svc.queue)
        assert [s for s, _ in got] == ["health", "health"]
        assert all(set(p) == HEALTH_SECTIONS for _, p in got)
        fake.add_fault(Fault(path="health", body="[1, 2]", status=200))
        with pytest.raises(RuxResponseError, match="expected a JSON object"):
            await svc.pull_snapshot(StreamSpec("health"))
        assert await svc.queue.depth("u") == 0
    finally:
        await svc.client.aclose()
        await svc.queue.close()


async def test_lockdown_pull_forwards_changes_only_and_keeps_state_on_bad_answers(
    tmp_path: Path, fake: FakeRux
) -> None:
    svc = await _service(tmp_path, fake)
    assert svc.queue is not None and svc.client is not None
    spec = StreamSpec("lockdown")
    try:
        assert await svc.pull_snapshot(spec) == 2  # the two seeded entries appear
        assert await svc.pull_snapshot(spec) == 0  # same list: nothing
        first = fake.lockdowns.entries()
        fake.lockdowns.unlock(first[0]["type"], first[0]["entity_id"])
        # an error or a non-array answer is never read as "everything left"
        fake.add_fault(
            Fault(path="lockdown", body='{"detail": "x"}', status=200),
            Fault(path="lockdown", status=503, count=5),
        )
        with pytest.raises(RuxResponseError, match="expected a JSON array"):
            await svc.pull_snapshot(spec)
        with pytest.raises(Exception, match="503"):
            await svc.pull_snapshot(spec)
        assert await svc.pull_snapshot(spec) == 1
        got = await _payloads(svc.queue)
        assert [p for _, p in got[:2]] == first
        assert got[2][1] == {
            **first[0],
            MARKER: UNLOCKED,
            "siemconn_observed_at": got[2][1]["siemconn_observed_at"],
        }
    finally:
        await svc.client.aclose()
        await svc.queue.close()
    # the last-seen list survives a restart: the same list is no change
    svc = await _service(tmp_path, fake)
    assert svc.queue is not None and svc.client is not None
    try:
        assert await svc.pull_snapshot(spec) == 0
    finally:
        await svc.client.aclose()
        await svc.queue.close()


async def test_403_on_one_stream_leaves_the_others_flowing(tmp_path: Path, fake: FakeRux) -> None:
    fake.configure(roles=["Read-Only"])  # audit and health 403; detections and lockdown allowed
    svc = await _service(tmp_path, fake)
    assert svc.queue is not None and svc.client is not None
    try:
        for stream in ("audit", "detections", "health", "lockdown"):
            await svc.pull(svc.runners[stream])
        got = await _payloads(svc.queue)
        streams = {s for s, _ in got}
        assert streams == {"detections", "lockdown"}
        assert sum(1 for s, _ in got if s == "detections") == 7
    finally:
        await svc.client.aclose()
        await svc.queue.close()


def test_lockdown_change_survives_a_failed_commit(tmp_path: Path, fake: FakeRux) -> None:
    """A poll whose commit failed leaves the state as it was: the next poll produces the same changes."""

    async def scenario() -> None:
        svc = await _service(tmp_path, fake)
        assert svc.queue is not None and svc.client is not None
        try:
            assert await svc.pull_snapshot(StreamSpec("lockdown")) == 2
            fake.lockdowns.lock("host", 4242, name="new-host")
            real = svc.queue.commit_page

            async def failing(*a: Any, **kw: Any) -> int:
                raise asyncio.CancelledError  # as if the process died before the commit

            svc.queue.commit_page = failing  # type: ignore[method-assign]  # die before the commit
            with pytest.raises(asyncio.CancelledError):
                await svc.pull_snapshot(StreamSpec("lockdown"))
            svc.queue.commit_page = real  # type: ignore[method-assign]  # undo the patch
            assert await svc.pull_snapshot(StreamSpec("lockdown")) == 1
            got = await _payloads(svc.queue)
            assert [p["entity_id"] for _, p in got].count(4242) == 1
        finally:
            await svc.client.aclose()
            await svc.queue.close()

    asyncio.run(scenario())


def test_check_under_v35_names_each_endpoint_that_answered(
    tmp_path: Path, fake: FakeRux, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """api_version v3.5: detections answer at v3.5 with the size asked for, every other enabled stream
    at v3.4; each check line names its endpoint."""
    for k, v in {"BASE_URL": fake.url, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": SECRET}.items():
        monkeypatch.setenv(k, v)
    p = tmp_path / "config.json"
    sched = {s: "* * * * *" for s in ("audit", "detections", "entity_scoring", "health", "lockdown")}
    doc = connector_config(
        tmp_path,
        [{"name": "u", "server_protocol": "udp", "server_host": "127.0.0.1", "server_port": 9}],
        api_version="v3.5",
        detection_size="detailed",
    )
    doc["configuration"]["scheduler"] = sched
    p.write_text(json.dumps(doc))
    assert main(["check", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    det = "/api/v3.5/events/detections, 1 event (limit=1, ordering=id, size=detailed)"
    assert f"ok     stream detections: HTTP 200 from {det}" in out
    assert "ok     stream audit: HTTP 200 from /api/v3.4/events/audits, 1 event (limit=1)" in out
    for t in ("account", "host"):
        assert f"ok     stream entity_scoring.{t}: HTTP 200 from /api/v3.4/events/entity_scoring" in out
    assert "ok     stream lockdown: HTTP 200 from /api/v3.4/lockdown, 2 entities in lockdown" in out
    assert "ok     stream health: HTTP 200 from /api/v3.4/health, health object" in out
    asked = [r for r in fake.requests if r.path == "/api/v3.5/events/detections"]
    assert asked and asked[-1].params["size"] == "detailed" and asked[-1].params["ordering"] == "id"
