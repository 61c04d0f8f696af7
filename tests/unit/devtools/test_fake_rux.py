"""The fake RUX tenant over real HTTP: tokens, auth, stream semantics, filters, faults, control, CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from siemconn.devtools.events import EventFactory, render
from siemconn.devtools.fake_rux import INVALID_REFRESH_TEXT, REAUTH_TEXT, FakeRux, Fault, parse_timestamp

CID, SECRET = "fake-client-id", "fake-client-secret"


@pytest.fixture
def make_fake() -> Iterator[Callable[..., FakeRux]]:
    started: list[FakeRux] = []

    def make(**kw: Any) -> FakeRux:
        f = FakeRux(**kw).start()
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def token(http: httpx.Client, fake: FakeRux) -> dict[str, Any]:
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(CID, SECRET))
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def get(
    http: httpx.Client, fake: FakeRux, path: str, tok: str | None = None, **params: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return http.get(fake.url + path, params=params, headers=headers)


def ids(resp: httpx.Response) -> list[int]:
    return [e["id"] for e in resp.json()["events"]]


# --- tokens --------------------------------------------------------------------------------


def test_client_credentials_returns_all_token_fields(
    make_fake: Callable[..., FakeRux], http: httpx.Client
) -> None:
    fake = make_fake()
    body = token(http, fake)
    assert set(body) == {"access_token", "refresh_token", "expires_in", "refresh_expires_in", "token_type"}
    assert (
        body["expires_in"] == 21600 and body["refresh_expires_in"] == 86400 and body["token_type"] == "Bearer"
    )
    # credentials in the body are accepted too
    r = http.post(
        fake.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CID, "client_secret": SECRET},
    )
    assert r.status_code == 200


def test_bad_credentials_401_reauth_text(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake()
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(CID, "nope"))
    assert r.status_code == 401 and r.json() == {"error": REAUTH_TEXT}
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "password"}, auth=(CID, SECRET))
    assert r.status_code == 400


def test_refresh_grant_with_and_without_basic(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake()
    rt = token(http, fake)["refresh_token"]
    for auth in (httpx.Auth(), (CID, SECRET)):  # httpx.Auth(): no Authorization header
        r = http.post(
            fake.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": rt}, auth=auth
        )
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"access_token", "expires_in", "token_type"}  # no rotation by default
        assert get(http, fake, "/api/v3.4/events/audits", body["access_token"]).status_code == 200
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "bogus"})
    assert r.status_code == 400 and r.json() == {"error": INVALID_REFRESH_TEXT}


def test_refresh_rotation_and_expiry(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(rotate_refresh_token=True)
    rt = token(http, fake)["refresh_token"]
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": rt})
    new_rt = r.json()["refresh_token"]
    assert new_rt != rt
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": rt})
    assert r.status_code == 400  # the old one is gone
    fake.configure(refresh_expires_in=0)
    rt0 = token(http, fake)["refresh_token"]
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": rt0})
    assert r.status_code == 401 and "reauthenticating" in r.json()["error"]


def test_token_knobs(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(token_type="bearer", issue_refresh_token=False, token_expires_in=1799)
    body = token(http, fake)
    assert body == {"access_token": body["access_token"], "expires_in": 1799, "token_type": "bearer"}


def test_token_expiry(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(token_expires_in=0)
    at = token(http, fake)["access_token"]
    assert get(http, fake, "/api/v3.3/events/audits", at).status_code == 401


# --- API auth ----------------------------------------------------------------------------------


def test_bearer_is_case_insensitive_and_required(
    make_fake: Callable[..., FakeRux], http: httpx.Client
) -> None:
    fake = make_fake(seed_audit=3)
    at = token(http, fake)["access_token"]
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = http.get(fake.url + "/api/v3.3/events/audits", headers={"Authorization": f"{scheme} {at}"})
        assert r.status_code == 200
    assert get(http, fake, "/api/v3.3/events/audits").json() == {"detail": "Unauthorized"}
    assert get(http, fake, "/api/v3.3/events/audits", "not-a-token").status_code == 401
    fake.revoke_tokens()
    assert get(http, fake, "/api/v3.3/events/audits", at).status_code == 401


def test_roles_give_403(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(roles=["Read-Only"])
    at = token(http, fake)["access_token"]
    assert get(http, fake, "/api/v3.4/events/audits", at).status_code == 403
    assert get(http, fake, "/api/v3.4/events/detections", at).status_code == 200


# --- streams -------------------------------------------------------------------------------------


def test_paths_versions_and_trailing_slash(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_audit=2, seed_detections=2, seed_entity=20)
    at = token(http, fake)["access_token"]
    for v in ("v3.3", "v3.4"):
        for stream, extra in (("audits", {}), ("detections", {}), ("entity_scoring", {"type": "host"})):
            for slash in ("", "/"):
                r = get(http, fake, f"/api/{v}/events/{stream}{slash}", at, **extra)
                assert r.status_code == 200, (v, stream, slash)
                assert set(r.json()) == {"events", "next_checkpoint", "remaining_count"}
    assert get(http, fake, "/api/v3.5/events/detections", at).status_code == 200
    assert get(http, fake, "/api/v3.5/events/audits", at).json() == {"detail": "Not found."}
    assert get(http, fake, "/api/v3.4/events/lockdown", at).status_code == 404


def test_inclusive_from_and_next_checkpoint(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    """The ELASTIC mock's table: limit=2 over ids 1..5."""
    fake = make_fake(seed_detections=5)
    at = token(http, fake)["access_token"]
    gte = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = []
    frm = 0
    while True:
        body = get(
            http, fake, "/api/v3.4/events/detections", at, limit=2, event_timestamp_gte=gte, **{"from": frm}
        ).json()
        table.append(([e["id"] for e in body["events"]], body["next_checkpoint"], body["remaining_count"]))
        frm = body["next_checkpoint"]
        if body["remaining_count"] == 0:
            break
    assert table == [([1, 2], 3, 3), ([3, 4], 5, 1), ([5], 6, 0)]


def test_empty_page_next_checkpoint_knob(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_detections=5)
    at = token(http, fake)["access_token"]
    path = "/api/v3.3/events/detections"
    assert get(http, fake, path, at, **{"from": 9}).json() == {
        "events": [],
        "next_checkpoint": 9,
        "remaining_count": 0,
    }
    fake.configure(empty_next_checkpoint="null")
    assert get(http, fake, path, at, **{"from": 9}).json()["next_checkpoint"] is None
    fake.configure(empty_next_checkpoint="head")
    assert get(http, fake, path, at, **{"from": 9}).json()["next_checkpoint"] == 6


def test_limit_default_max_and_error_knob(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_audit=1200)
    at = token(http, fake)["access_token"]
    path = "/api/v3.4/events/audits"
    body = get(http, fake, path, at).json()
    assert len(body["events"]) == 500 and body["remaining_count"] == 700 and body["next_checkpoint"] == 501
    assert len(get(http, fake, path, at, limit=5000).json()["events"]) == 1000
    fake.configure(limit_over_max="error")
    r = get(http, fake, path, at, limit=5000)
    assert r.status_code == 400 and "_meta" in r.json()
    assert get(http, fake, path, at, limit="x").status_code == 400


def test_overlap_knob_repeats_one_event(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_detections=10, overlap=True)
    at = token(http, fake)["access_token"]
    body = get(http, fake, "/api/v3.4/events/detections", at, limit=4, **{"from": 1}).json()
    assert ids_of(body) == [1, 2, 3, 4] and body["next_checkpoint"] == 4


def ids_of(body: dict[str, Any]) -> list[int]:
    return [e["id"] for e in body["events"]]


def test_timestamp_window_lenient_formats(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake()
    base = datetime(2025, 3, 4, 6, 0, 0, tzinfo=UTC).timestamp()
    fake.append("audits", 10, timestamps=[base + 3600 * i for i in range(10)])  # 06:00 .. 15:00
    at = token(http, fake)["access_token"]
    path = "/api/v3.4/events/audits"
    for gte in (
        "2025-03-04T09:00:00Z",
        "2025-03-04T09:00:00.000000Z",
        "2025-03-04T09:00:00",
        "2025-03-04T10:00:00+01:00",
    ):
        assert ids(get(http, fake, path, at, event_timestamp_gte=gte)) == [4, 5, 6, 7, 8, 9, 10], gte
    r = get(
        http,
        fake,
        path,
        at,
        event_timestamp_gte="2025-03-04T09:00:00Z",
        event_timestamp_lte="2025-03-04T11:00:00Z",
    )
    assert ids(r) == [4, 5, 6]
    assert ids(get(http, fake, path, at, event_timestamp_gte="2025-03-04T09:00:00Z", **{"from": 6})) == [
        6,
        7,
        8,
        9,
        10,
    ]
    assert get(http, fake, path, at).json()["events"][0]["event_timestamp"] == "2025-03-04T06:00:00Z"
    r = get(http, fake, path, at, event_timestamp_gte="yesterday")
    assert r.status_code == 400 and "event_timestamp_gte" in r.json()


def test_out_of_order_timestamps_still_filter(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake()
    fake.append("audits", 3, timestamps=[3000.0, 1000.0, 2000.0])
    at = token(http, fake)["access_token"]
    assert ids(get(http, fake, "/api/v3.4/events/audits", at, event_timestamp_gte="1500")) == [1, 3]


def test_ordering(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_detections=10)
    at = token(http, fake)["access_token"]
    path = "/api/v3.5/events/detections"
    body = get(http, fake, path, at, limit=1, ordering="-event_timestamp").json()
    assert ids_of(body) == [10] and body["next_checkpoint"] == 11  # the AZ-CCF head trick
    assert ids(get(http, fake, path, at, limit=3, ordering="-id")) == [10, 9, 8]
    assert ids(get(http, fake, path, at, limit=3, ordering="id")) == [1, 2, 3]
    assert get(http, fake, path, at, ordering="name").status_code == 400


def test_entity_scoring_type_required_and_separated(
    make_fake: Callable[..., FakeRux], http: httpx.Client
) -> None:
    fake = make_fake(seed_entity=400)
    at = token(http, fake)["access_token"]
    path = "/api/v3.4/events/entity_scoring"
    r = get(http, fake, path, at)
    assert r.status_code == 400
    assert r.json()["_meta"] == {"message": "Invalid field(s) found", "level": "error"} and "type" in r.json()
    assert get(http, fake, path, at, type="user").status_code == 400
    acc = get(http, fake, path, at, type="account", limit=1000).json()["events"]
    host = get(http, fake, path, at, type="host", limit=1000).json()["events"]
    assert acc and host and {e["type"] for e in acc} == {"account"} and {e["type"] for e in host} == {"host"}
    assert not {e["id"] for e in acc} & {e["id"] for e in host}
    # v3.3 accepts the deprecated entity_type alias
    assert get(http, fake, "/api/v3.3/events/entity_scoring", at, entity_type="host").status_code == 200
    assert get(http, fake, path, at, entity_type="host").status_code == 400


def test_score_decreases_filter(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_entity=1500)
    at = token(http, fake)["access_token"]
    path = "/api/v3.4/events/entity_scoring"
    without = ids(get(http, fake, path, at, type="account", limit=1000, include_score_decreases="false"))
    default = ids(get(http, fake, path, at, type="account", limit=1000))
    with_dec = ids(get(http, fake, path, at, type="account", limit=1000, include_score_decreases="true"))
    assert without == default and set(without) < set(with_dec)


def test_v33_v34_entity_field_names(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_entity=50)
    at = token(http, fake)["access_token"]
    e33 = get(http, fake, "/api/v3.3/events/entity_scoring", at, type="host").json()["events"][0]
    e34 = get(http, fake, "/api/v3.4/events/entity_scoring", at, type="host").json()["events"][0]
    assert e33["id"] == e34["id"]
    assert {
        "entity_type",
        "entity_importance",
        "last_detection_id",
        "last_detection_type",
        "last_detection_url",
    } <= set(e33)
    assert not {"type", "importance", "last_detection"} & set(e33)
    assert {"type", "importance", "last_detection", "attack_rating"} <= set(e34) and "entity_type" not in e34
    assert set(e34["last_detection"]) == {"id", "type", "url"}


def test_detection_filters(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_detections=800)
    at = token(http, fake)["access_token"]
    path = "/api/v3.3/events/detections"
    every = get(http, fake, path, at, limit=1000).json()["events"]
    assert any(e["triaged"] for e in every) and any(e["category"] == "info" for e in every)
    assert all("entity_type" in e for e in every)
    untriaged = get(http, fake, path, at, limit=1000, include_triaged="false").json()["events"]
    assert untriaged and not any(e["triaged"] for e in untriaged)
    no_info = get(http, fake, path, at, limit=1000, include_info_category="false").json()["events"]
    assert no_info and not any(e["category"] == "info" for e in no_info)
    hosts = get(http, fake, path, at, limit=1000, type="host").json()["events"]
    assert hosts and {e["type"] for e in hosts} == {"host"}
    assert {
        e["type"] for e in get(http, fake, path, at, limit=1000, entity_type="account").json()["events"]
    } == {"account"}
    assert get(http, fake, path, at, include_triaged="maybe").status_code == 400
    # several events per detection
    did = max({e["detection_id"] for e in every}, key=lambda d: sum(e["detection_id"] == d for e in every))
    same = get(http, fake, path, at, limit=1000, detection_id=did).json()["events"]
    assert len(same) >= 2 and {e["detection_id"] for e in same} == {did}


def test_audit_filters(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_audit=300)
    at = token(http, fake)["access_token"]
    evs = get(
        http, fake, "/api/v3.4/events/audits", at, limit=1000, event_object="user", event_action="login"
    ).json()
    assert evs["events"] and all(
        e["event_object"] == "user" and e["event_action"] == "login" for e in evs["events"]
    )
    evs = get(http, fake, "/api/v3.4/events/audits", at, limit=1000, user_id=22284).json()["events"]
    assert evs and {e["user_id"] for e in evs} == {22284}


# --- generated events --------------------------------------------------------------------------------


def test_generated_events_are_realistic() -> None:
    f = EventFactory(seed=3)
    now = time.time()
    audits = [f.audit(i, now) for i in range(1, 401)]
    dets = [f.detection(i, now) for i in range(1, 401)]
    ents = [f.entity_scoring(i, now) for i in range(1, 401)]
    audit_fields = {
        "id",
        "user_id",
        "username",
        "user_type",
        "api_client_id",
        "user_role",
        "version",
        "source_ip",
    }
    assert all(
        audit_fields | {"event_timestamp", "message", "result_status", "event_data"} <= set(a.doc)
        for a in audits
    )
    assert any(a.doc["api_client_id"] is None for a in audits)
    det_fields = {
        "id",
        "category",
        "threat",
        "certainty",
        "triaged",
        "detection_type",
        "d_type_vname",
        "detection_href",
    }
    assert all(
        det_fields | {"entity_id", "entity_uid", "type", "url", "mitre", "detail", "severity"} <= set(d.doc)
        for d in dets
    )
    for d in dets:
        assert d.doc["detection_href"].endswith(
            f"/detections/{d.doc['detection_id']}?detail_id={d.doc['detection_href'].split('=')[-1]}"
        )
        assert d.doc["url"].rsplit("/", 2)[-2] == ("hosts" if d.doc["type"] == "host" else "accounts")
    assert all(isinstance(e.doc["severity"], str) and 0 <= e.doc["urgency_score"] <= 100 for e in ents)
    sizes = [len(e.body("v3.4")) for e in audits + dets + ents]
    assert max(sizes) > 10_000  # a few events of tens of KB
    assert any(b > 127 for e in dets for b in e.body("v3.4"))  # non-ASCII text
    assert dets[0].body("v3.3") is dets[0].body("v3.3")  # rendered once, cached
    assert render("detections", dets[0].doc, legacy=True)["entity_type"] == dets[0].doc["type"]
    assert EventFactory(seed=3).audit(1, now).doc == audits[0].doc  # deterministic for a seed


def test_seeded_events_are_within_lookback(make_fake: Callable[..., FakeRux]) -> None:
    fake = make_fake(seed_detections=100)
    at_least = (datetime.now(UTC) - timedelta(hours=24)).timestamp()
    with httpx.Client() as http:
        at = token(http, fake)["access_token"]
        evs = get(http, fake, "/api/v3.4/events/detections", at, limit=1000).json()["events"]
    assert len(evs) == 100 and all(parse_timestamp(e["event_timestamp"]) >= at_least for e in evs)


def test_parse_timestamp() -> None:
    assert parse_timestamp("2025-03-04T06:42:20Z") == datetime(2025, 3, 4, 6, 42, 20, tzinfo=UTC).timestamp()
    assert (
        parse_timestamp("2025-03-04T06:42:20.5z")
        == datetime(2025, 3, 4, 6, 42, 20, 500000, tzinfo=UTC).timestamp()
    )
    assert parse_timestamp("2025-03-04T06:42:20") == parse_timestamp("2025-03-04T06:42:20+00:00")
    with pytest.raises(ValueError):
        parse_timestamp("not a time")


# --- faults ------------------------------------------------------------------------------------------


def test_faults_429_5xx_html_drop_and_skip(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_audit=3)
    at = token(http, fake)["access_token"]
    path = "/api/v3.4/events/audits"
    fake.add_fault(Fault(path="audits", status=429, retry_after=5))
    r = get(http, fake, path, at)
    assert r.status_code == 429 and r.headers["Retry-After"] == "5"
    fake.add_fault(Fault(path="audits", status=429))
    assert "Retry-After" not in get(http, fake, path, at).headers
    fake.add_fault(Fault(path="audits", status=503, html=True))
    r = get(http, fake, path, at)
    assert r.status_code == 503 and r.headers["Content-Type"] == "text/html" and b"<html>" in r.content
    fake.add_fault(Fault(path="audits", status=None, drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        get(http, fake, path, at)
    fake.add_fault(Fault(path="audits", status=500, skip=1))
    assert [get(http, fake, path, at).status_code for _ in range(3)] == [200, 500, 200]
    fake.add_fault(Fault(path="/oauth2/token", status=429, retry_after=60))
    r = http.post(fake.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(CID, SECRET))
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert fake.state()["faults_pending"] == 0


def test_slow_and_stalled_responses(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_audit=3)
    at = token(http, fake)["access_token"]
    fake.add_fault(Fault(path="audits", status=None, delay=1.0))
    with pytest.raises(httpx.ReadTimeout):
        http.get(fake.url + "/api/v3.4/events/audits", headers={"Authorization": f"Bearer {at}"}, timeout=0.2)
    fake.add_fault(Fault(path="audits", status=None, stall=0.2))
    assert ids(get(http, fake, "/api/v3.4/events/audits", at)) == [1, 2, 3]  # complete after the stall


# --- control over HTTP -----------------------------------------------------------------------------------


def test_control_endpoints(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    fake = make_fake(seed_detections=5)
    u = fake.url
    r = http.post(u + "/_fake/events", params={"stream": "detections", "count": 3})
    assert (
        r.status_code == 200
        and r.json()["added"] == {"detections": [6, 8]}
        and r.json()["heads"]["detections"] == 9
    )
    r = http.post(u + "/_fake/events", params={"stream": "all", "count": 2})
    assert set(r.json()["added"]) == {"audits", "detections", "entity_scoring"}
    state = http.get(u + "/_fake/state").json()
    assert state["streams"]["detections"] == {"count": 10, "next_id": 11}
    assert state["heads"]["detections"] == 11 and state["heads"]["audit"] == 3
    assert http.get(u + "/_fake/ids", params={"stream": "detections"}).json()["ids"] == list(range(1, 11))
    at = token(http, fake)["access_token"]
    r = http.post(u + "/_fake/faults", json=[{"path": "detections", "status": 502, "count": 2}])
    assert r.json() == {"faults_pending": 2}
    assert get(http, fake, "/api/v3.4/events/detections", at).status_code == 502
    assert http.delete(u + "/_fake/faults").json() == {"faults_pending": 0}
    assert get(http, fake, "/api/v3.4/events/detections", at).status_code == 200
    assert http.post(u + "/_fake/faults", json={"bogus": 1}).status_code == 400
    assert http.post(u + "/_fake/revoke-tokens").status_code == 200
    assert get(http, fake, "/api/v3.4/events/detections", at).status_code == 401
    r = http.post(u + "/_fake/config", json={"empty_next_checkpoint": "null", "token_expires_in": 5})
    assert r.json()["empty_next_checkpoint"] == "null"
    assert http.post(u + "/_fake/config", json={"nope": 1}).status_code == 400
    assert token(http, fake)["expires_in"] == 5
    reqs = http.get(u + "/_fake/requests").json()["requests"]
    assert [(q["path"], q["status"]) for q in reqs][-2:] == [
        ("/api/v3.4/events/detections", 401),
        ("/oauth2/token", 200),
    ]
    state = http.get(u + "/_fake/state").json()
    assert state["requests"]["by_path_status"]["GET /api/v3.4/events/detections 502"] == 1
    assert state["tokens"]["issued"] == 2


def test_generator_mode_appends_events(make_fake: Callable[..., FakeRux]) -> None:
    fake = make_fake(generate_interval=0.05, generate_count=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and fake.state()["streams"]["audits"]["count"] < 4:
        time.sleep(0.05)
    counts = {s: v["count"] for s, v in fake.state()["streams"].items()}
    assert all(c >= 4 for c in counts.values()), counts


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_prints_url_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["--port", "0", "--client-id", "cli-id", "--client-secret", "cli-secret"]
    args += ["--seed-detections", "7", "--seed-entity", "20", "--token-expires-in", "99"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "siemconn.devtools.fake_rux", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"fake RUX listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert m, line
        url = m.group(1)
        with httpx.Client(timeout=10) as http:
            r = http.post(
                url + "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("cli-id", "cli-secret"),
            )
            assert r.json()["expires_in"] == 99
            at = r.json()["access_token"]
            r = http.get(url + "/api/v3.3/events/detections", headers={"Authorization": f"Bearer {at}"})
            assert [e["id"] for e in r.json()["events"]] == list(range(1, 8))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- v3.5 detections -----------------------------------------------------------------------------

_DETAILED_KEYS = {
    "entity_name",
    "src_account",
    "src_host",
    "src_external_host",
    "dst_account",
    "dst_host",
    "dst_domain",
    "summary",
    "filters",
    "data_source",
    "unresolved_priority",
    "status",
    "change_type",
    "is_prioritized",
    "assignment",
    "reason",
    "notes",
    "tags",
    "external_reference_id",
    "process_context_data",
    "is_targeting_key_asset",
}


def test_v35_sizes(make_fake: Callable[..., FakeRux], http: httpx.Client) -> None:
    """v3.5: no size or size=regular is the v3.4 document; size=detailed adds the detailed context
    (nulls, nested objects, notes lists) around the same regular fields; a bad size is a DRF 400."""
    fake = make_fake(seed_detections=300)
    at = token(http, fake)["access_token"]
    path = "/api/v3.5/events/detections"
    v34 = get(http, fake, "/api/v3.4/events/detections", at, limit=1000).json()
    assert get(http, fake, path, at, limit=1000).json() == v34
    assert get(http, fake, path, at, limit=1000, size="regular").json() == v34
    rich = get(http, fake, path, at, limit=1000, size="detailed").json()
    assert (rich["next_checkpoint"], rich["remaining_count"]) == (v34["next_checkpoint"], 0)
    assert [e["id"] for e in rich["events"]] == [e["id"] for e in v34["events"]]
    for plain, ev in zip(v34["events"], rich["events"], strict=True):
        assert set(ev) == set(plain) | _DETAILED_KEYS
        assert {k: v for k, v in ev.items() if k in plain and k != "detail"} == {
            k: v for k, v in plain.items() if k != "detail"
        }
        assert ev["detail"]["first_timestamp"] <= ev["event_timestamp"]
        me = ev["src_host"] if ev["type"] == "host" else ev["src_account"]
        assert (me["name"], me["id"]) == (ev["entity_uid"], ev["entity_id"])
        assert set(me) == {"name", "id", "urgency_score", "importance", "url"}
        assert isinstance(ev["notes"], list) and isinstance(ev["tags"], list)
        assert all(set(n) >= {"id", "date_created", "created_by", "note"} for n in ev["notes"])
    evs = rich["events"]
    # the variety of the public samples: nulls and nested objects both occur
    for key in ("src_host", "src_account", "dst_host", "dst_account", "dst_domain", "assignment"):
        assert any(e[key] is None for e in evs) and any(isinstance(e[key], dict) for e in evs), key
    assert any(e["notes"] for e in evs) and any(not e["notes"] for e in evs)
    assert any(e["assignment"] and e["assignment"]["assigned_to"]["username"] for e in evs)
    # the same event is the same on every request
    assert get(http, fake, path, at, limit=1000, size="detailed").json() == rich
    bad = get(http, fake, path, at, size="huge")
    assert bad.status_code == 400 and "size" in bad.json()


def test_time_ordering_skips_ids_and_id_ordering_does_not(
    make_fake: Callable[..., FakeRux], http: httpx.Client
) -> None:
    """The cursor is an event id: a page in event_timestamp order over out-of-order timestamps ends at
    a larger id than some ids it did not return, so paging from next_checkpoint skips them;
    ordering=id pages contiguously."""
    fake = make_fake()
    t = time.time() - 600
    fake.append("detections", 6, timestamps=[t + 5, t + 1, t + 6, t + 2, t + 7, t + 3])  # ids 1..6
    at = token(http, fake)["access_token"]
    path = "/api/v3.5/events/detections"

    def walk(**extra: Any) -> list[int]:
        seen: list[int] = []
        frm = 0
        while True:
            body = get(http, fake, path, at, limit=2, **{"from": frm}, **extra).json()
            seen += [e["id"] for e in body["events"]]
            if body["remaining_count"] <= 0:
                return seen
            frm = body["next_checkpoint"]

    assert walk(ordering="id") == [1, 2, 3, 4, 5, 6]
    assert sorted(walk(ordering="event_timestamp")) != [1, 2, 3, 4, 5, 6]  # ids skipped
    fake.configure(default_ordering="event_timestamp")
    assert walk() == walk(ordering="event_timestamp")


def test_a_lean_tenant_serves_the_same_bytes_without_keeping_them() -> None:
    """lean=True (the memory soak's million events): pages are byte-identical to a normal tenant's, and
    no rendered body is kept."""
    pages = []
    for lean in (False, True):
        with FakeRux(client_id="c", client_secret="s", seed=7, lean=lean) as f:
            f.append("detections", 5, timestamps=[1.7e9 + i for i in range(5)])
            token = httpx.post(
                f.url + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("c", "s")
            ).json()["access_token"]
            r = httpx.get(f.url + "/api/v3.4/events/detections", headers={"Authorization": f"Bearer {token}"})
            pages.append(r.content)
            kept = [ev._bodies for ev in f.generated()["detections"]]
            assert all(kept) if not lean else not any(kept)
    assert pages[0] == pages[1] and pages[0].count(b'"detection_id"') == 5
