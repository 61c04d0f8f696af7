"""siemconn.config.loader: config.json and the environment read into settings, every problem reported at
once (file errors, missing fields, typos with the nearest key, the environment under its own heading),
only ConfigError raised whatever the file holds, and the reference connector's config unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.configs import ENV, REFERENCE, SECRET, problems, reference, write_config
from support.examples import examples

from siemconn.cli import main
from siemconn.config import (
    load_local_settings,
    load_settings,
)
from siemconn.errors import ConfigError


def test_reference_config_validates_unchanged(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, REFERENCE), ENV)
    c = s.configuration
    assert c.retry_count == 2
    assert (
        c.server[0].server_protocol == "TCP"
        and c.server[0].format == "legacy"
        and c.server[0].framing == "lf"
    )
    assert s.credentials.base_url == "https://tenant.uw2.portal.vectra.ai"  # trailing slash tolerated
    assert s.credentials.client_secret.get_secret_value() == SECRET
    assert c.api_version == "v3.3" and c.page_size == 1000 and c.initial_lookback_hours == 24
    assert c.include_triaged is None and c.timezone == "UTC"


def test_missing_fields_are_named(tmp_path: Path) -> None:
    msgs = problems(tmp_path, {"configuration": {"server": [{"name": "a"}]}})
    joined = "\n".join(msgs)
    for path in (
        "configuration.server[0].server_protocol is missing",
        "configuration.server[0].server_host is missing",
        "configuration.server[0].server_port is missing",
        "configuration.scheduler is missing",
        "configuration.retry_count is missing",
    ):
        assert path in joined


def test_invalid_json_line_and_column(tmp_path: Path) -> None:
    msgs = problems(tmp_path, '{\n  "configuration": {\n    "server": [,]\n  }\n}')
    assert len(msgs) == 1 and "invalid JSON at line 3, column 16" in msgs[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(tmp_path / "nope.json", ENV)
    assert "file not found" in str(ei.value) and "nope.json" in str(ei.value)


def test_top_level_not_object(tmp_path: Path) -> None:
    assert "is not an object" in problems(tmp_path, "[1, 2]")[0]


def test_check_prints_five_mistakes_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    doc = reference()
    doc["configuration"]["server"][0].update(
        server_protocol="SCTP", server_port=70000, server_host="bad host"
    )
    doc["configuration"]["scheduler"]["audit"] = "every minute"
    doc["configuration"]["retry_count"] = "two"
    rc = main(["check", "--config", str(write_config(tmp_path, doc))])
    captured = capsys.readouterr()
    assert rc == 2
    err = captured.err
    assert "5 problems" in err
    for line in (
        'configuration.server[0].server_protocol: "SCTP" is not a protocol',
        'configuration.server[0].server_host: "bad host" is not a host',
        "configuration.server[0].server_port: 70000 is not a port; expected an integer 1-65535",
        'configuration.scheduler.audit: "every minute" is not a cron expression',
        'configuration.retry_count: "two" is not a retry count',
    ):
        assert line in err
    assert SECRET not in captured.out + captured.err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _mutations() -> st.SearchStrategy[Any]:
    keys = st.sampled_from(
        ["configuration", "server", "scheduler", "retry_count", "name", "server_port", "x"]
    )
    mutated = st.builds(
        lambda k, v: {"configuration": {**REFERENCE["configuration"], k: v}}, keys, json_values
    )
    return st.one_of(json_values, mutated, st.text(max_size=50))


@settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_mutations())
def test_loader_only_raises_config_error(tmp_path: Path, doc: Any) -> None:
    p = tmp_path / "fuzz.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    try:
        load_settings(p, ENV)
    except ConfigError as exc:
        assert exc.problems and SECRET not in str(exc)


# --- messages a new user meets (issue 15, item 10) ------------------------------------------


def test_typo_suggests_the_nearest_key(tmp_path: Path) -> None:
    doc = reference(fromat="rfc5424")
    doc["configuration"]["retyr_count"] = 2
    doc["configuration"]["scheduler"]["detection"] = "* * * * *"
    msgs = problems(tmp_path, doc)
    assert 'configuration.server[0].fromat is not a known option; did you mean "format"?' in msgs
    assert 'configuration.retyr_count is not a known option; did you mean "retry_count"?' in msgs
    assert 'configuration.scheduler.detection is not a known option; did you mean "detections"?' in msgs


def test_unknown_key_without_a_near_one_says_so(tmp_path: Path) -> None:
    msgs = problems(tmp_path, reference(zzzzzz=1))
    assert msgs == [
        "configuration.server[0].zzzzzz: 1 is not a known option; "
        "check its spelling against the README's configuration reference"
    ]


def test_environment_problems_are_headed_as_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(write_config(tmp_path, REFERENCE), {"CLIENT_ID": "cid"})
    text = ei.value.render()
    assert text.startswith("environment: 2 problems\n"), text
    assert "config.json" not in text
    with pytest.raises(ConfigError) as ei:
        load_settings(write_config(tmp_path, reference(server_port=0)), {"CLIENT_ID": "cid"})
    head_file, *_ = ei.value.render().splitlines()
    assert head_file == f"{(tmp_path / 'config.json').absolute()}: 1 problem"
    assert "environment: 2 problems" in ei.value.render()


def test_missing_config_prints_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--config", "nope/config.json"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope' / 'config.json'}: file not found" in err


# --- commands that never call the API run without credentials (item 1) ---------------------


def test_local_settings_need_no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET", "CLIENT_SECRET_FILE"):
        monkeypatch.delenv(k, raising=False)
    s = load_local_settings(write_config(tmp_path, REFERENCE))
    assert s.servers[0].name == "server1"
    assert not hasattr(s, "credentials")
    with pytest.raises(ConfigError) as ei:
        load_local_settings(write_config(tmp_path, reference(fromat="x")))
    assert ei.value.environment_problems == []
