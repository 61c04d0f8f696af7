"""Stream switches and per-server streams in config.json: off/null, opt-in health and lockdown, at least
one stream on, and clear errors for unknown stream names."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from siemconn.config import STREAMS, load_settings
from siemconn.errors import ConfigError

ENV = {"BASE_URL": "https://tenant.uw2.portal.vectra.ai", "CLIENT_ID": "cid", "CLIENT_SECRET": "s"}
BASE: dict[str, Any] = {
    "configuration": {
        "server": [{"name": "s1", "server_protocol": "TCP", "server_host": "10.0.0.5", "server_port": 514}],
        "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
        "retry_count": 2,
    }
}


def load(tmp_path: Path, scheduler: dict[str, Any] | None = None, **server: Any) -> Any:
    doc = copy.deepcopy(BASE)
    if scheduler is not None:
        doc["configuration"]["scheduler"] = scheduler
    doc["configuration"]["server"][0].update(server)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(doc))
    return load_settings(p, ENV).configuration


def problems(tmp_path: Path, scheduler: dict[str, Any] | None = None, **server: Any) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, scheduler, **server)
    return ei.value.problems


def test_reference_scheduler_has_the_three_streams_on_and_the_new_ones_off(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c.scheduler.enabled == ("audit", "detections", "entity_scoring")
    assert c.scheduler.disabled == ("health", "lockdown")
    assert c.server[0].streams is None
    assert c.server_streams(c.server[0]) == ("audit", "detections", "entity_scoring")


@pytest.mark.parametrize("off", [None, "off", "OFF", " Off "])
def test_null_or_off_turns_a_stream_off(tmp_path: Path, off: Any) -> None:
    c = load(tmp_path, {"audit": off, "detections": "* * * * *", "entity_scoring": "*/5 * * * *"})
    assert c.scheduler.audit is None
    assert c.scheduler.enabled == ("detections", "entity_scoring")
    assert "audit" in c.scheduler.disabled


def test_health_and_lockdown_are_opt_in(tmp_path: Path) -> None:
    sched = {"audit": None, "detections": None, "entity_scoring": None, "health": "*/5 * * * *"}
    c = load(tmp_path, {**sched, "lockdown": "* * * * *"})
    assert c.scheduler.enabled == ("health", "lockdown")
    assert c.scheduler.schedule("lockdown") == "* * * * *"


def test_every_stream_off_is_a_clear_error(tmp_path: Path) -> None:
    msgs = problems(tmp_path, {"audit": None, "detections": "off", "entity_scoring": None})
    assert msgs == [
        "configuration.scheduler: every stream is off; expected a cron expression for at least one of "
        + ", ".join(STREAMS)
    ]


def test_empty_string_is_still_not_a_cron_and_says_how_to_turn_off(tmp_path: Path) -> None:
    msgs = problems(tmp_path, {"audit": "", "detections": "* * * * *", "entity_scoring": "* * * * *"})
    assert len(msgs) == 1 and msgs[0].startswith('configuration.scheduler.audit: "" is not a cron expression')
    assert 'null / "off" to turn the stream off' in msgs[0]


def test_the_reference_keys_stay_required(tmp_path: Path) -> None:
    msgs = problems(tmp_path, {"detections": "* * * * *", "entity_scoring": "* * * * *"})
    assert msgs == ["configuration.scheduler.audit is missing; expected this field"]


def test_server_streams(tmp_path: Path) -> None:
    c = load(tmp_path, streams=["entity_scoring", "detections"])
    assert c.server[0].streams == ("entity_scoring", "detections")
    assert c.server[0].takes("detections") and not c.server[0].takes("audit")
    assert c.server_streams(c.server[0]) == ("detections", "entity_scoring")


def test_a_server_may_list_a_stream_that_is_off(tmp_path: Path) -> None:
    # queued events of a stream turned off still reach the servers that list it (the service warns)
    c = load(tmp_path, {"audit": None, "detections": "* * * * *", "entity_scoring": None}, streams=["audit"])
    assert c.server[0].streams == ("audit",) and c.server_streams(c.server[0]) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            ["audit", "detection"],
            'configuration.server[0].streams: ["audit", "detection"] holds "detection", which is not a '
            "stream; expected a list of audit, detections, entity_scoring, health, lockdown",
        ),
        (
            [],
            "configuration.server[0].streams: [] is empty; expected at least one of audit, detections, "
            "entity_scoring, health, lockdown, or leave it out (every stream)",
        ),
        (
            "audit",
            'configuration.server[0].streams: "audit" is not a list of streams; expected e.g. '
            '["detections", "audit"]',
        ),
        (
            ["audit", "audit"],
            'configuration.server[0].streams: ["audit", "audit"] lists "audit" twice; expected each stream once',
        ),
        (
            [1],
            "configuration.server[0].streams: [1] holds 1, which is not a stream; expected a list of audit, "
            "detections, entity_scoring, health, lockdown",
        ),
    ],
)
def test_bad_server_streams_name_the_field_and_the_value(tmp_path: Path, value: Any, message: str) -> None:
    assert problems(tmp_path, streams=value) == [message]
