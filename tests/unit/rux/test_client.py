"""RuxClient over real HTTP against the fake RUX tenant (and httpx.MockTransport for malformed answers): paging,
checkpoints, tokens, retries, bad answers, and the snapshot streams (health, lockdown)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from support.configs import configuration
from support.metricvalue import metric_value
from support.snapshots import HEALTH_SECTIONS

from siemconn.config import Configuration, Credentials
from siemconn.devtools.fake_rux import FakeRux, Fault, parse_timestamp
from siemconn.errors import (
    RuxAuthError,
    RuxPermissionError,
    RuxRateLimitedError,
    RuxResponseError,
    RuxUnavailableError,
)
from siemconn.logging import setup_logging
from siemconn.ops.metrics import Metrics
from siemconn.rux.answer import Answer
from siemconn.rux.client import Page, RuxClient
from siemconn.rux.page import parse_page
from siemconn.rux.streams import StreamSpec

SECRET = "s3cr3t-Th1s-Must-Never-Leak"
DET = StreamSpec("detections")
J = "application/json"


cfg = configuration


def creds(url: str, secret: str = SECRET, client_id: str = "siemconn-test") -> Credentials:
    return Credentials.model_validate({"BASE_URL": url, "CLIENT_ID": client_id, "CLIENT_SECRET": secret})


class Sleeps:
    """A fake asyncio.sleep that records the delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake_factory() -> Iterator[Callable[..., FakeRux]]:
    started: list[FakeRux] = []

    def make(**kw: Any) -> FakeRux:
        kw.setdefault("client_id", "siemconn-test")
        kw.setdefault("client_secret", SECRET)
        f = FakeRux(**kw).start()
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., RuxClient]]:
    clients: list[RuxClient] = []

    def make(fake_or_url: FakeRux | str, configuration: Configuration | None = None, **kw: Any) -> RuxClient:
        url = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.url
        secret = kw.pop("secret", SECRET)
        kw.setdefault("sleep", Sleeps())
        kw.setdefault("backoff_base", 0.01)
        kw.setdefault("backoff_cap", 0.05)
        c = RuxClient(creds(url, secret), configuration or cfg(), **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


async def collect(client: RuxClient, spec: StreamSpec, checkpoint: int | None) -> list[Page]:
    return [p async for p in client.pages(spec, checkpoint)]


def all_ids(pages: list[Page]) -> list[int]:
    return [e["id"] for p in pages for e in p.events]


def api_requests(fake: FakeRux) -> list[Any]:
    return [r for r in fake.requests if r.path.startswith("/api/")]


# --- paging ------------------------------------------------------------------------------


async def test_pages_10000_detections_in_1000_event_pages(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10_000)
    metrics = Metrics()
    client = make_client(fake, metrics=metrics)
    pages = await collect(client, DET, None)
    assert [len(p.events) for p in pages] == [1000] * 10
    assert all_ids(pages) == list(range(1, 10_001))
    assert [p.next_checkpoint for p in pages] == [1001 + 1000 * i for i in range(10)]
    assert pages[-1].next_checkpoint == fake.heads()["detections"] == 10_001
    assert all(p.spec == DET for p in pages)
    assert len(api_requests(fake)) == 10
    assert metric_value(metrics.events_fetched.labels(stream="detections")) == 10_000
    assert metric_value(metrics.api_requests.labels(status="200")) == 11  # 1 token + 10 pages


async def test_resume_from_checkpoint_and_nothing_new(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=3000)
    client = make_client(fake)
    pages = await collect(client, DET, 2501)
    assert all_ids(pages) == list(range(2501, 3001))
    assert pages[-1].next_checkpoint == 3001
    # at the head: an empty page that does not move the checkpoint yields nothing
    assert await collect(client, DET, 3001) == []
    fake.append("detections", 3)
    pages = await collect(client, DET, 3001)
    assert all_ids(pages) == [3001, 3002, 3003] and pages[-1].next_checkpoint == 3004


async def test_events_appended_during_paging_are_included(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=2000)
    client = make_client(fake)
    ids: list[int] = []
    async for page in client.pages(DET, 1):
        ids += [e["id"] for e in page.events]
        if len(ids) <= 2000:
            fake.append("detections", 300)
    assert ids == list(range(1, 2601))


async def test_shared_hold_keeps_one_parsed_page_alive_across_streams(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    """Two streams paging concurrently with one `hold`: a page is only handed out while no other stream's
    page is being processed, yet both streams complete with every event."""
    fake = fake_factory(seed_detections=3000, seed_audit=3000)
    client = make_client(fake)
    hold = asyncio.Lock()
    active: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    got: dict[str, list[int]] = {"detections": [], "audit": []}

    async def consume(spec: StreamSpec) -> None:
        async with contextlib.aclosing(client.pages(spec, 1, hold=hold)) as pages:
            async for page in pages:
                assert hold.locked()
                active.append(spec.key)
                if len(active) > 1:
                    overlaps.append(tuple(active))
                got[spec.key] += [e["id"] for e in page.events]
                await asyncio.sleep(0.01)  # "commit": the other stream's request may complete meanwhile
                active.remove(spec.key)

    await asyncio.gather(consume(DET), consume(StreamSpec("audit")))
    assert overlaps == []
    assert got["detections"] == list(range(1, 3001)) and got["audit"] == list(range(1, 3001))
    assert not hold.locked()


async def test_hold_is_released_when_the_caller_stops_early(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=3000)
    client = make_client(fake)
    hold = asyncio.Lock()
    async with contextlib.aclosing(client.pages(DET, 1, hold=hold)) as pages:
        async for _page in pages:
            assert hold.locked()
            break
    assert not hold.locked()
    # a failing request does not leave it held either
    fake.add_fault(Fault(path="detections", status=500, count=100))
    with pytest.raises(RuxUnavailableError):
        async with contextlib.aclosing(client.pages(DET, 1, hold=hold)) as pages:
            async for _page in pages:
                pass
    assert not hold.locked()


async def test_generator_requests_next_page_only_when_resumed(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=2500)
    client = make_client(fake)
    gen = client.pages(DET, 1)
    first = await gen.__anext__()
    assert len(first.events) == 1000
    assert len(api_requests(fake)) == 1  # the caller commits before the next request
    await gen.__anext__()
    assert len(api_requests(fake)) == 2
    await gen.aclose()
    assert len(api_requests(fake)) == 2


async def test_first_run_params_keep_lookback_on_every_page(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=2500, seed_span_seconds=3600)
    now = datetime.now(UTC)
    client = make_client(fake, cfg(initial_lookback_hours=2), wall_clock=lambda: now)
    pages = await collect(client, DET, None)
    assert all_ids(pages) == list(range(1, 2501))
    reqs = api_requests(fake)
    expected_gte = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r.params.get("from") for r in reqs] == ["0", "1001", "2001"]
    assert all(r.params["event_timestamp_gte"] == expected_gte for r in reqs)
    assert all(r.params["limit"] == "1000" for r in reqs)
    # a later run sends only from
    await collect(client, DET, pages[-1].next_checkpoint)
    assert "event_timestamp_gte" not in api_requests(fake)[-1].params


async def test_first_run_lookback_excludes_older_events(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=600, seed_span_seconds=6 * 3600)
    client = make_client(fake, cfg(initial_lookback_hours=1))
    pages = await collect(client, DET, None)
    ids = all_ids(pages)
    assert 0 < len(ids) < 600  # only the last hour
    cutoff = datetime.now(UTC) - timedelta(hours=1, minutes=1)
    assert all(parse_timestamp(e["event_timestamp"]) >= cutoff.timestamp() for p in pages for e in p.events)
    assert ids == list(range(ids[0], 601))  # the newest ones, none skipped


async def test_first_run_with_nothing_yields_no_page(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    """An empty first run must not commit from=0, which would replay all history next time."""
    fake = fake_factory()
    fake.append("detections", 50, timestamps=[time.time() - 48 * 3600] * 50)
    client = make_client(fake, cfg(initial_lookback_hours=1))
    assert await collect(client, DET, None) == []
    fake.configure(empty_next_checkpoint="null")
    assert await collect(client, DET, None) == []
    fake.configure(empty_next_checkpoint="head")  # a head cursor is progress: it is yielded
    pages = await collect(client, DET, None)
    assert [(p.events, p.next_checkpoint) for p in pages] == [([], 51)]


async def test_null_next_checkpoint_on_empty_page_keeps_checkpoint(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10, empty_next_checkpoint="null")
    client = make_client(fake)
    assert await collect(client, DET, 11) == []
    assert api_requests(fake)[-1].status == 200


async def test_null_next_checkpoint_with_events_uses_max_id_plus_one(
    make_client: Callable[..., RuxClient],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        events = [{"id": 7}, {"id": 9}, {"id": 8}]
        return httpx.Response(200, json={"events": events, "next_checkpoint": None, "remaining_count": 0})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 5)
    assert [p.next_checkpoint for p in pages] == [10]


async def test_server_checkpoint_never_moves_backwards(make_client: Callable[..., RuxClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(200, json={"events": [{"id": 50}], "next_checkpoint": 3, "remaining_count": 0})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 40)
    assert [p.next_checkpoint for p in pages] == [40]


async def test_overlap_between_pages_is_deduplicated(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=2500, overlap=True)
    client = make_client(fake)
    pages = await collect(client, DET, 1)
    assert all_ids(pages) == list(range(1, 2501))
    assert [r.params["from"] for r in api_requests(fake)] == ["1", "1000", "1999"]
    # the server's cursor: the next run repeats event 2500 and the queue dedupes it
    assert pages[-1].next_checkpoint == 2500


async def test_remaining_without_progress_ends_the_tick_without_failing_it(
    make_client: Callable[..., RuxClient],
) -> None:
    """remaining_count > 0 with a checkpoint that does not move: before, every tick failed (pull_failed,
    for ever); now what came is kept, paging ends for the tick, one request, and the next tick asks again."""
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        requests.append(request.url.params["from"])
        events = [{"id": 7, "event_timestamp": "2023-11-02T00:18:01Z"}] if len(requests) == 1 else []
        return httpx.Response(200, json={"events": events, "next_checkpoint": 5, "remaining_count": 10})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 5)
    assert all_ids(pages) == [7] and requests == ["5"]
    assert await collect(client, DET, 5) == [] and requests == ["5", "5"]


# --- API versions and entity types ---------------------------------------------------------


async def test_v33_and_v34_field_names(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=20, seed_entity=60)
    v33 = make_client(fake, cfg(api_version="v3.3"))
    v34 = make_client(fake, cfg(api_version="v3.4"))
    d33 = all_ids(await collect(v33, DET, 1)), await collect(v33, DET, 1)
    d34 = await collect(v34, DET, 1)
    assert all(e["entity_type"] == e["type"] for p in d33[1] for e in p.events)
    assert all("entity_type" not in e for p in d34 for e in p.events)
    host = StreamSpec("entity_scoring", "host")
    e33 = [e for p in await collect(v33, host, 1) for e in p.events]
    e34 = [e for p in await collect(v34, host, 1) for e in p.events]
    assert e33 and all(e["entity_type"] == "host" and "entity_importance" in e for e in e33)
    assert e34 and all(e["type"] == "host" and isinstance(e["last_detection"], dict) for e in e34)
    paths = {r.path for r in api_requests(fake)}
    assert paths == {
        "/api/v3.3/events/detections",
        "/api/v3.4/events/detections",
        "/api/v3.3/events/entity_scoring",
        "/api/v3.4/events/entity_scoring",
    }


async def test_entity_types_have_separate_checkpoints(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_entity=3000)
    client = make_client(fake, cfg(api_version="v3.4", page_size=500))
    acc = await collect(client, StreamSpec("entity_scoring", "account"), None)
    host = await collect(client, StreamSpec("entity_scoring", "host"), None)
    acc_ids, host_ids = all_ids(acc), all_ids(host)
    assert acc_ids == fake.ids("entity_scoring", "account")
    assert host_ids == fake.ids("entity_scoring", "host")
    assert not set(acc_ids) & set(host_ids)
    assert all(e["type"] == "account" for p in acc for e in p.events)
    assert acc[-1].next_checkpoint == fake.heads()["entity_scoring.account"]
    assert host[-1].next_checkpoint == fake.heads()["entity_scoring.host"]
    assert {r.params["type"] for r in api_requests(fake)} == {"account", "host"}


async def test_audit_stream(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_audit=120)
    client = make_client(fake, cfg(page_size=50))
    pages = await collect(client, StreamSpec("audit"), None)
    assert all_ids(pages) == list(range(1, 121))
    assert {r.path for r in api_requests(fake)} == {"/api/v3.3/events/audits"}


# --- tokens --------------------------------------------------------------------------------


def grants(fake: FakeRux) -> list[str | None]:
    return [r.grant_type for r in fake.requests if r.path == "/oauth2/token"]


async def test_token_revoked_mid_paging_refreshes_and_retries_once(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=3000)
    client = make_client(fake)
    ids: list[int] = []
    async for page in client.pages(DET, 1):
        ids += [e["id"] for e in page.events]
        if len(ids) == 1000:
            fake.expire_tokens()
    assert ids == list(range(1, 3001))
    assert grants(fake) == ["client_credentials", "refresh_token"]
    assert [r.status for r in api_requests(fake)] == [200, 401, 200, 200]
    refresh = [r for r in fake.requests if r.grant_type == "refresh_token"][0]
    assert refresh.basic_auth is False


async def test_token_renewed_before_expiry(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=3000, token_expires_in=600)
    clock = Clock()
    client = make_client(fake, clock=clock)
    ids: list[int] = []
    async for page in client.pages(DET, 1):
        ids += [e["id"] for e in page.events]
        clock.t += 541  # renewal is 60 s early (10 % of 600 s < 100 s)
    assert ids == list(range(1, 3001))
    assert grants(fake) == ["client_credentials", "refresh_token", "refresh_token"]
    assert all(r.status == 200 for r in api_requests(fake))  # no 401: renewed ahead


async def test_refresh_rejected_falls_back_to_client_credentials(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    for status in (400, 401):
        fake = fake_factory(seed_detections=2000, reject_refresh=status)
        client = make_client(fake)
        ids: list[int] = []
        async for page in client.pages(DET, 1):
            ids += [e["id"] for e in page.events]
            fake.expire_tokens()
        assert ids == list(range(1, 2001))
        assert grants(fake) == ["client_credentials", "refresh_token", "client_credentials"]


async def test_expired_refresh_token_uses_client_credentials(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10, token_expires_in=600, refresh_expires_in=1000)
    clock = Clock()
    client = make_client(fake, clock=clock)
    await client.authenticate()
    clock.t += 2000  # access and refresh tokens both past their lifetime
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 11))
    assert grants(fake) == ["client_credentials", "client_credentials"]


async def test_bad_credentials_raise_auth_error_without_retry(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10)
    sleeps = Sleeps()
    client = make_client(fake, secret="wrong-secret-value", sleep=sleeps)
    with pytest.raises(RuxAuthError) as info:
        await collect(client, DET, None)
    msg = str(info.value)
    assert "client id or secret rejected by " + fake.url in msg and "CLIENT_SECRET" in msg
    assert "wrong-secret-value" not in msg
    assert grants(fake) == ["client_credentials"] and sleeps.delays == []
    assert api_requests(fake) == []


async def test_403_names_stream_and_role(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_audit=5, roles=["Read-Only"])
    client = make_client(fake)
    with pytest.raises(RuxPermissionError, match=r"stream audit.*Auditor role"):
        await collect(client, StreamSpec("audit"), None)


async def test_persistent_401_raises_auth_error(make_client: Callable[..., RuxClient]) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(401, json={"detail": "Unauthorized"})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxAuthError, match="401 with a fresh token"):
        await collect(client, DET, 1)
    assert calls == ["/oauth2/token", "/api/v3.3/events/detections"] * 2


# --- faults ----------------------------------------------------------------------------------


async def test_429_waits_retry_after(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fault = Fault(path="detections", status=429, count=2, retry_after=7)
    fake = fake_factory(seed_detections=1500, faults=[fault])
    sleeps = Sleeps()
    client = make_client(fake, cfg(api_max_tries=3), sleep=sleeps)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 1501))
    assert sleeps.delays == [7, 7]


async def test_429_without_retry_after_waits_30s_and_caps_long_waits(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(
        seed_detections=10,
        faults=[Fault(path="detections", status=429), Fault(path="detections", status=429, retry_after=9999)],
    )
    sleeps = Sleeps()
    client = make_client(fake, sleep=sleeps)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 11))
    assert sleeps.delays == [30.0, 300.0]


async def test_429_on_token_endpoint(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10, faults=[Fault(path="/oauth2/token", status=429, retry_after=61)])
    sleeps = Sleeps()
    client = make_client(fake, sleep=sleeps)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 11))
    assert sleeps.delays == [61]
    assert grants(fake) == ["client_credentials", "client_credentials"]


async def test_429_too_often_raises_rate_limited_after_api_max_tries(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=2000, faults=[Fault(path="detections", status=429, count=10, skip=1)])
    sleeps = Sleeps()
    client = make_client(fake, cfg(api_max_tries=4), sleep=sleeps)
    got: list[Page] = []
    with pytest.raises(RuxRateLimitedError, match="429 4 times"):
        async for p in client.pages(DET, 1):
            got.append(p)
    assert all_ids(got) == list(range(1, 1001))  # the page before the error stays valid
    assert len(sleeps.delays) == 3


async def test_5xx_burst_backs_off_and_recovers(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(
        seed_detections=1200,
        faults=[
            Fault(path="detections", status=502, count=2, html=True),
            Fault(path="detections", status=503, count=1),
            Fault(path="detections", status=500, count=1, skip=4),
        ],
    )
    sleeps = Sleeps()
    client = make_client(fake, sleep=sleeps, backoff_base=1.0, backoff_cap=30.0)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 1201))
    assert len(sleeps.delays) == 4
    # exponential with jitter: attempt n waits within [d/2, d], d = min(30, 2**n)
    for n, d in enumerate(sleeps.delays[:3]):
        assert 2**n / 2 <= d <= 2**n
    assert [r.status for r in api_requests(fake)] == [502, 502, 503, 200, 500, 200]


async def test_5xx_forever_raises_unavailable(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10, faults=[Fault(path="detections", status=503, count=100)])
    sleeps = Sleeps()
    client = make_client(fake, sleep=sleeps, unavailable_tries=4)
    with pytest.raises(RuxUnavailableError, match="Vectra API server is down or unreachable: HTTP 503"):
        await collect(client, DET, 1)
    assert len(api_requests(fake)) == 4 and len(sleeps.delays) == 3


async def test_dropped_connection_is_retried(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fault = Fault(path="detections", status=None, drop=True, count=2)
    fake = fake_factory(seed_detections=1500, faults=[fault])
    client = make_client(fake)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 1501))
    assert [r.status for r in api_requests(fake)] == [0, 0, 200, 200]


async def test_slow_response_beyond_timeout_is_retried(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=10, faults=[Fault(path="detections", status=None, delay=1.5)])
    metrics = Metrics()
    client = make_client(fake, cfg(http_timeout=0.3), metrics=metrics)
    assert all_ids(await collect(client, DET, 1)) == list(range(1, 11))
    assert metric_value(metrics.api_requests.labels(status="timeout")) == 1


async def test_unreachable_server_raises_unavailable(make_client: Callable[..., RuxClient]) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    client = make_client(f"http://127.0.0.1:{port}", unavailable_tries=2)
    with pytest.raises(RuxUnavailableError, match="down or unreachable: ConnectError"):
        await client.authenticate()


# --- bad responses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b"<html>maintenance</html>", "text/html", "body is not JSON"),
        (b"3", J, "got a JSON int"),
        (b'{"next_checkpoint": 3, "remaining_count": 0}', "application/json", "'events' is missing"),
        (b'{"events": {}, "next_checkpoint": 3, "remaining_count": 0}', "application/json", "not a list"),
        (b'"maintenance"', J, "got a JSON str"),
        (b'{"events": null, "a": [], "b": []}', J, "no other list of events"),
        (b'{"errors": ["rate limited"], "next_checkpoint": 9}', J, "no other list of events"),
        (b"[1, 2]", J, "got a JSON list"),
    ],
)
async def test_bad_bodies_raise_response_error(
    make_client: Callable[..., RuxClient], body: bytes, ctype: str, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(200, content=body, headers={"Content-Type": ctype})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxResponseError) as info:
        await collect(client, DET, 1)
    text = str(info.value)
    assert message in text
    assert "/api/v3.3/events/detections" in text and "stream detections" in text
    assert "from=" not in text  # no query string in messages


@pytest.mark.parametrize(
    ("body", "checkpoint", "kinds"),
    [
        (
            b'{"events": [{"id": 5}], "next_checkpoint": "6", "remaining_count": "0"}',
            6,
            ["next_checkpoint:string", "remaining_count:string"],
        ),
        (
            b'{"events": [{"id": 5}], "next_checkpoint": 6.0}',
            6,
            ["next_checkpoint:float", "remaining_count:missing"],
        ),
        (
            b'{"events": [{"id": 5}], "next_checkpoint": 6, "remaining_count": -1}',
            6,
            ["remaining_count:negative"],
        ),
        (
            b'{"events": [{"id": 5}], "next_checkpoint": true, "remaining_count": 9}',
            6,
            ["next_checkpoint:boolean"],
        ),
        (
            b'{"events": [{"id": 5}], "next_checkpoint": 12.5, "remaining_count": 9}',
            6,
            ["next_checkpoint:float"],
        ),
        (
            b'{"events": [{"id": 5}], "next_checkpoint": 900, "remaining_count": 0}',
            6,
            [],
        ),  # plausibility rule
        (b'{"events": [{"id": "5"}], "next_checkpoint": null, "remaining_count": 0}', 6, ["event_id:str"]),
        (
            b'{"events": {"results": [{"id": 5}]}, "next_checkpoint": 6, "remaining_count": 0}',
            6,
            ["events:wrapped"],
        ),
        (b'{"results": [{"id": 5}], "next_checkpoint": 6, "remaining_count": 0}', 6, ["events:renamed"]),
        (
            b'{"data": {"events": [{"id": 5}], "next_checkpoint": 6, "remaining_count": 0}}',
            6,
            ["envelope:wrapped"],
        ),
        (b'[{"id": 5}]', 6, ["envelope:bare_array"]),
        (
            b'{"Events": [{"id": 5}], "nextCheckpoint": 6, "RemainingCount": 0}',
            6,
            ["events:renamed", "next_checkpoint:renamed", "remaining_count:renamed"],
        ),
    ],
)
async def test_deviating_envelopes_are_read_leniently(
    make_client: Callable[..., RuxClient], body: bytes, checkpoint: int, kinds: list[str]
) -> None:
    """The page's event is yielded once, the checkpoint is what the envelope means (or, where it is
    ambiguous, what the plausibility rule allows), and paging ends for the tick (no second request)."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        calls.append(str(request.url))
        return httpx.Response(200, content=body, headers={"Content-Type": J})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 1)
    assert [[ev["id"] for ev in p.events] for p in pages] in ([[5]], [["5"]])
    assert pages[-1].next_checkpoint == checkpoint
    assert len(calls) == 1
    parsed = parse_page(DET, "/p", Answer(200, "OK", httpx.Headers(), body))
    found = [d.kind for d in parsed.deviations]
    assert found == [k for k in kinds if not k.startswith("event_id:")]


async def test_an_element_that_is_not_an_object_is_quarantined_not_the_page(
    make_client: Callable[..., RuxClient],
) -> None:
    """`events: [1, {...}]` used to fail the whole page (and so the stream, forever): the object is queued,
    the 1 is handed over for the quarantine with its raw text, and the checkpoint moves."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(
            200, content=b'{"events": [1, {"id": 2}], "next_checkpoint": 3, "remaining_count": 0}'
        )

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 1)
    assert [p.events for p in pages] == [[{"id": 2}]] and pages[0].next_checkpoint == 3
    [r] = pages[0].rejects
    assert (r.raw, r.reason, r.event_id) == (b"1", "not_an_object", None)
    assert "events[0]" in r.detail


async def test_json_that_orjson_rejects_is_parsed(make_client: Callable[..., RuxClient]) -> None:
    big = 2**70

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        body = (
            f'{{"events": [{{"id": 4, "x": NaN, "big": {big}}}], "next_checkpoint": 5, "remaining_count": 0}}'
        )
        return httpx.Response(200, content=body.encode())

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    pages = await collect(client, DET, 4)
    assert pages[0].events[0]["big"] == big and pages[0].next_checkpoint == 5


async def test_4xx_from_api_is_a_response_error(make_client: Callable[..., RuxClient]) -> None:
    drf = {"type": "Invalid value given for paramater 'type'.", "_meta": {"message": "Invalid field(s)"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        if "audits" in request.url.path:
            return httpx.Response(404, json={"detail": "Not found."})
        return httpx.Response(400, json=drf)

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxResponseError, match=r"HTTP 400 for stream entity_scoring.host: .*paramater"):
        await collect(client, StreamSpec("entity_scoring", "host"), 1)
    with pytest.raises(RuxResponseError, match=r"HTTP 404 .*check api_version"):
        await collect(client, StreamSpec("audit"), 1)


# --- acceptance ----------------------------------------------------------------------------------


async def test_acceptance_every_event_once_in_order_despite_faults(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(
        seed_detections=10_000,
        faults=[
            Fault(path="detections", status=429, count=2, retry_after=1, skip=2),
            Fault(path="detections", status=502, count=2, skip=4),
            Fault(path="detections", status=None, drop=True, skip=6),
            Fault(path="detections", status=503, count=1, html=True, skip=8),
            Fault(path="/oauth2/token", status=429, count=1, retry_after=2, skip=1),
        ],
    )
    sleeps = Sleeps()
    client = make_client(fake, sleep=sleeps)
    ids: list[int] = []
    checkpoint: int | None = None
    committed = 0
    async for page in client.pages(DET, None):
        ids += [e["id"] for e in page.events]
        checkpoint = page.next_checkpoint
        committed += 1
        if committed in (3, 7):
            fake.expire_tokens()  # token expiry mid-paging
    assert ids == list(range(1, 10_001))
    assert checkpoint == fake.heads()["detections"] == 10_001
    statuses = [r.status for r in api_requests(fake)]
    assert statuses.count(429) == 2 and statuses.count(401) == 2
    assert statuses.count(0) == 1 and statuses.count(502) == 2
    assert fake.state()["faults_pending"] == 0
    assert 1 in sleeps.delays and 2 in sleeps.delays


# --- secrets never logged ---------------------------------------------------------------------------


async def test_logs_never_contain_secret_or_tokens(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_detections=3500, token_expires_in=600, rotate_refresh_token=True)
    out = io.StringIO()
    setup_logging(log_dir=None, fmt="json", level="DEBUG", stream=out)  # no secrets given: nothing to redact
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    seen_tokens: list[str] = []
    try:
        clock = Clock()
        client = make_client(fake, clock=clock, on_secret=seen_tokens.append)
        n = 0
        async for page in client.pages(DET, None):
            n += len(page.events)
            fake.expire_tokens()
            if n == 1000:  # renewal ahead of expiry, by refresh
                clock.t += 10_000
            elif n == 2000:  # refresh rejected -> client credentials
                clock.t += 10_000
                fake.configure(reject_refresh=400)
            elif n == 3000:  # the client does not know: 401 -> refresh -> retry
                fake.configure(reject_refresh=None)
        with pytest.raises(RuxAuthError):  # the bad-credentials path too
            await make_client(fake, secret=SECRET + "x").authenticate()
    finally:
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        structlog.reset_defaults()
    text = out.getvalue()
    assert n == 3500
    assert "access_token_obtained" in text and "access_token_refreshed" in text
    assert "refresh_token_rejected" in text and "api_unauthorized_retrying" in text
    assert len(seen_tokens) >= 6  # access + refresh tokens of several grants
    for secret in [SECRET, *seen_tokens]:
        assert secret not in text
    assert "fake-at-" not in text and "fake-rt-" not in text


async def test_a_checkpoint_beyond_64_bits_is_a_bad_response_not_a_crash(
    make_client: Callable[..., RuxClient],
) -> None:
    """The queue stores checkpoints as SQLite integers: one beyond 64 bits used to fail every commit."""
    body: dict[str, Any] = {"events": [{"id": 2**64 - 1}], "next_checkpoint": 2**64, "remaining_count": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(200, content=json.dumps(body).encode(), headers={"Content-Type": J})

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxResponseError, match="checkpoint 18446744073709551616 does not fit 64 bits"):
        await collect(client, DET, 1)
    body.update(next_checkpoint=None, events=[{"id": 2**64}])  # derived: max id + 1
    with pytest.raises(RuxResponseError, match="checkpoint 18446744073709551617 does not fit 64 bits"):
        await collect(client, DET, 1)


async def test_an_implausible_next_checkpoint_is_clamped_to_last_id_plus_one(
    make_client: Callable[..., RuxClient],
) -> None:
    """Issue: one answer with next_checkpoint 9223372036854775797 made every later event unreachable."""
    answers: list[dict[str, Any]] = [
        {"events": [{"id": 41}, {"id": 40}], "next_checkpoint": 9223372036854775797, "remaining_count": 0},
        {"events": [], "next_checkpoint": 9223372036854775797, "remaining_count": 0},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        return httpx.Response(200, json=answers.pop(0) if len(answers) > 1 else answers[0])

    client = make_client("https://tenant.example", cfg(page_size=100), transport=httpx.MockTransport(handler))
    assert [p.next_checkpoint for p in await collect(client, DET, 40)] == [42]
    # an empty page moves at most one limit past its from; on a first run it stores nothing
    assert [p.next_checkpoint for p in await collect(client, DET, 42)] == [142]
    assert await collect(client, DET, None) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"access_token": "at-1", "expires_in": 1' + b"0" * 400 + b"}",
            "unusable expires_in (an integer of",
        ),
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"access_token": "at-1", "expires_in": "soon"}', "unusable expires_in ('soon')"),
        (b'{"access_token": "at-1", "expires_in": 1e400}', "unusable expires_in"),
        (b'{"access_token": "at-1", "expires_in": -5}', "unusable expires_in (-5)"),
        (b'{"access_token": "at-1", "refresh_token": 7}', "refresh_token of type int"),
        (b'{"access_token": 12345}', "access_token of type int"),
        (b'{"access_token": "line\\nbreak-0123456789"}', "cannot be sent as a bearer token"),
        (b'["at-1"]', "a JSON list instead of an object"),
        (b"<html>", "not JSON"),
        (b'{"access_token": "' + b"a" * 70_000 + b'"}', "more than 65536 bytes"),
    ],
)
async def test_malformed_token_answers_are_response_errors(
    make_client: Callable[..., RuxClient], body: bytes, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxResponseError) as info:
        await client.authenticate()
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "line" not in str(info.value) and "0123456789" not in str(info.value)


async def test_an_error_body_echoing_the_token_is_redacted_before_it_is_cut(
    make_client: Callable[..., RuxClient],
) -> None:
    token = "at-" + "A1b2C3d4E5" * 4

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": token, "expires_in": 3600})
        return httpx.Response(400, content=("x" * 185 + request.headers["Authorization"]).encode())

    client = make_client("https://tenant.example", transport=httpx.MockTransport(handler))
    with pytest.raises(RuxResponseError) as info:
        await collect(client, DET, 1)
    assert (
        "***" in str(info.value)
        and token[:12] not in str(info.value)
        and "A1b2C3d4E5A1" not in str(info.value)
    )


async def test_a_too_large_answer_is_retried_with_a_smaller_limit(
    make_client: Callable[..., RuxClient],
) -> None:
    limits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "at-1", "expires_in": 3600})
        limit = request.url.params["limit"]
        limits.append(limit)
        if int(limit) > 20:
            return httpx.Response(200, content=b'{"events": [], "pad": "' + b"x" * (2 << 20) + b'"}')
        return httpx.Response(200, json={"events": [{"id": 5}], "next_checkpoint": 6, "remaining_count": 0})

    client = make_client(
        "https://tenant.example", cfg(max_response_mb=1), transport=httpx.MockTransport(handler)
    )
    pages = await collect(client, DET, 5)
    assert [p.next_checkpoint for p in pages] == [6]
    assert limits == ["1000", "250", "62", "15"]


async def test_a_reload_takes_the_http_client_over_when_http_timeout_is_unchanged(
    fake_factory: Callable[..., FakeRux],
) -> None:
    """A reload builds a new RuxClient with `previous`: it keeps the old one's HTTP client (TLS context,
    open connection) instead of building another, and the old one's aclose() leaves it open. A changed
    http_timeout builds a new one, and the old one closes its own."""
    fake = fake_factory(seed_detections=3)
    old = RuxClient(creds(fake.url), cfg())
    assert len(all_ids(await collect(old, DET, None))) == 3
    new = RuxClient(creds(fake.url), cfg(), previous=old)
    assert new.http_kept and new._http is old._http
    await old.aclose()
    assert not new._http.is_closed
    assert len(all_ids(await collect(new, DET, None))) == 3
    changed = RuxClient(creds(fake.url), cfg(http_timeout=new._http_timeout + 5), previous=new)
    assert not changed.http_kept and changed._http is not new._http
    await new.aclose()
    assert new._http.is_closed and not changed._http.is_closed
    await changed.aclose()
    assert changed._http.is_closed


# --- snapshot streams (health, lockdown) ----------------------------------------------------------


async def test_client_snapshot_and_probe(
    fake_factory: Callable[..., FakeRux], make_client: Callable[..., RuxClient]
) -> None:
    fake = fake_factory(seed_audit=5, seed_detections=7, seed_lockdown=2)
    client = make_client(fake, cfg(api_version="v3.4"))
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
