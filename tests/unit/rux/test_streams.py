"""siemconn.rux.streams: the stream table and query parameters (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from support.configs import configuration

from siemconn.config import Configuration
from siemconn.rux.streams import ALL_SPECS, StreamSpec, api_path, build_params, stream_specs

NOW = datetime(2025, 3, 4, 12, 30, 45, 123456, tzinfo=UTC)


cfg = configuration


def test_keys_and_paths() -> None:
    keys = ["audit", "detections", "entity_scoring.account", "entity_scoring.host", "health", "lockdown"]
    assert [s.key for s in ALL_SPECS] == keys
    assert [s.path for s in ALL_SPECS] == [
        "events/audits",
        "events/detections",
        "events/entity_scoring",
        "events/entity_scoring",
        "health",
        "lockdown",
    ]
    assert [s.is_snapshot for s in ALL_SPECS] == [False, False, False, False, True, True]
    assert api_path(StreamSpec("audit"), "v3.3") == "/api/v3.3/events/audits"
    assert api_path(StreamSpec("entity_scoring", "host"), "v3.4") == "/api/v3.4/events/entity_scoring"
    assert api_path(StreamSpec("health"), "v3.4") == "/api/v3.4/health"
    assert api_path(StreamSpec("lockdown"), "v3.3") == "/api/v3.3/lockdown"


def test_roles() -> None:
    assert StreamSpec("audit").role == "Auditor"
    assert StreamSpec("detections").role == "Read-Only"
    assert StreamSpec("entity_scoring", "account").role == "Read-Only"
    assert StreamSpec("health").role == "Auditor"
    assert StreamSpec("lockdown").role == "Read-Only"


def test_probe_params_ask_for_one_event() -> None:
    from datetime import UTC, datetime

    from siemconn.rux.streams import probe_params

    now = datetime(2026, 12, 1, tzinfo=UTC)
    p = probe_params(StreamSpec("entity_scoring", "host"), cfg(), now)
    assert p["limit"] == "1" and p["type"] == "host" and p["from"] == "0"
    assert probe_params(StreamSpec("lockdown"), cfg(), now) == {}


def test_stream_specs() -> None:
    assert stream_specs("audit") == [StreamSpec("audit")]
    assert stream_specs("detections") == [StreamSpec("detections")]
    both = [StreamSpec("entity_scoring", "account"), StreamSpec("entity_scoring", "host")]
    assert stream_specs("entity_scoring") == both
    assert stream_specs("lockdown") == [StreamSpec("lockdown")]
    assert stream_specs("health") == [StreamSpec("health")]
    with pytest.raises(ValueError, match="unknown stream"):
        stream_specs("lockdowns")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="account' or 'host"):
        StreamSpec("entity_scoring")
    with pytest.raises(ValueError, match="takes no entity_type"):
        StreamSpec("audit", "host")
    with pytest.raises(ValueError, match="unknown stream"):
        StreamSpec("audits")
    spec = StreamSpec("detections")
    assert hash(spec) == hash(StreamSpec("detections"))  # frozen, usable as a dict key


def test_first_run_sends_lookback_and_from_zero() -> None:
    p = build_params(StreamSpec("detections"), cfg(), None, NOW)
    assert p == {"from": "0", "event_timestamp_gte": "2025-03-03T12:30:45Z", "limit": "1000"}


def gte(c: Configuration, checkpoint: int | None, now: datetime) -> str:
    return build_params(StreamSpec("audit"), c, checkpoint, now).get("event_timestamp_gte", "")


def test_first_run_lookback_zero_starts_now_and_fractional_hours() -> None:
    assert gte(cfg(initial_lookback_hours=0), None, NOW) == ("2025-03-04T12:30:45Z")
    assert gte(cfg(initial_lookback_hours=1.5), None, NOW) == ("2025-03-04T11:00:45Z")


def test_first_run_time_is_utc_whatever_the_zone_of_now() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert gte(cfg(), None, paris) == "2025-03-03T12:30:45Z"
    naive = NOW.replace(tzinfo=None)  # naive = UTC
    assert gte(cfg(), None, naive) == "2025-03-03T12:30:45Z"


def test_with_checkpoint_sends_only_from() -> None:
    p = build_params(StreamSpec("audit"), cfg(page_size=250), 4242, NOW)
    assert p == {"from": "4242", "limit": "250"}
    assert build_params(StreamSpec("audit"), cfg(), 0, NOW) == {"from": "0", "limit": "1000"}


def test_entity_scoring_sends_type() -> None:
    assert build_params(StreamSpec("entity_scoring", "host"), cfg(), 7, NOW) == {
        "from": "7",
        "limit": "1000",
        "type": "host",
    }
    assert build_params(StreamSpec("entity_scoring", "account"), cfg(), 7, NOW)["type"] == "account"


def test_optional_filters_only_when_set() -> None:
    c = cfg(include_triaged=False, include_info_category=True, include_score_decreases=True)
    assert build_params(StreamSpec("detections"), c, 1, NOW) == {
        "from": "1",
        "limit": "1000",
        "include_triaged": "false",
        "include_info_category": "true",
    }
    assert build_params(StreamSpec("entity_scoring", "account"), c, 1, NOW) == {
        "from": "1",
        "limit": "1000",
        "type": "account",
        "include_score_decreases": "true",
    }
    assert build_params(StreamSpec("audit"), c, 1, NOW) == {"from": "1", "limit": "1000"}
    none = cfg()
    assert "include_triaged" not in build_params(StreamSpec("detections"), none, 1, NOW)
    assert "include_score_decreases" not in build_params(StreamSpec("entity_scoring", "host"), none, 1, NOW)


def test_v35_serves_detections_the_rest_stays_at_v34() -> None:
    """API v3.5 has events/detections only; under api_version v3.5 every other stream is pulled at v3.4."""
    from siemconn.rux.streams import stream_version

    paths = [api_path(s, "v3.5") for s in ALL_SPECS]
    assert paths == [
        "/api/v3.4/events/audits",
        "/api/v3.5/events/detections",
        "/api/v3.4/events/entity_scoring",
        "/api/v3.4/events/entity_scoring",
        "/api/v3.4/health",
        "/api/v3.4/lockdown",
    ]
    assert [stream_version(s, "v3.3") for s in ALL_SPECS] == ["v3.3"] * 6


def test_v35_detections_ask_for_id_order_and_the_size() -> None:
    regular = cfg(api_version="v3.5")
    assert build_params(StreamSpec("detections"), regular, 5, NOW) == {
        "from": "5",
        "limit": "1000",
        "ordering": "id",
    }
    rich = cfg(api_version="v3.5", detection_size="detailed", include_triaged=False)
    assert build_params(StreamSpec("detections"), rich, None, NOW) == {
        "from": "0",
        "event_timestamp_gte": "2025-03-03T12:30:45Z",
        "limit": "1000",
        "include_triaged": "false",
        "ordering": "id",
        "size": "detailed",
    }
    assert (
        build_params(StreamSpec("detections"), cfg(api_version="v3.5", detection_size="regular"), 5, NOW)[
            "size"
        ]
        == "regular"
    )
    # the streams pulled at v3.4 get nothing of v3.5
    assert build_params(StreamSpec("audit"), rich, 5, NOW) == {"from": "5", "limit": "1000"}
    assert "ordering" not in build_params(StreamSpec("detections"), cfg(api_version="v3.4"), 5, NOW)
