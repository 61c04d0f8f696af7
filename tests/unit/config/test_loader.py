"""Config loader: every field rule, file errors, env, secrets, and the reference's config unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siemconn.cli import main
from siemconn.config import load_configuration, load_local_settings, load_settings
from siemconn.errors import ConfigError

SECRET = "s3cr3t-Value-0123456789"
ENV = {"BASE_URL": "https://tenant.uw2.portal.vectra.ai/", "CLIENT_ID": "cid", "CLIENT_SECRET": SECRET}

# The reference connector's own config.json, unchanged (one TCP server, every minute, retry_count 2).
REFERENCE = {
    "configuration": {
        "server": [
            {
                "name": "server1",
                "server_protocol": "TCP",
                "server_host": "siem.example.com",
                "server_port": 514,
            }
        ],
        "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
        "retry_count": 2,
    }
}


def write(tmp_path: Path, doc: Any) -> Path:
    p = tmp_path / "config.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def with_server(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["server"][0].update(changes)
    return doc


def problems(tmp_path: Path, doc: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, doc), ENV if env is None else env)
    return ei.value.problems


def test_reference_config_validates_unchanged(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, REFERENCE), ENV)
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


@pytest.mark.parametrize("proto", ["tcp", "Udp", "TLS", "tls", "relp", "Relp"])
def test_protocol_any_case(tmp_path: Path, proto: str) -> None:
    s = load_settings(write(tmp_path, with_server(server_protocol=proto)), ENV)
    assert s.servers[0].server_protocol == proto.upper()


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("name", "bad name", "is not a server name"),
        ("name", "", "is not a server name"),
        ("name", 5, "is not a server name"),
        ("server_protocol", "http", "is not a protocol; expected TCP, UDP, TLS or RELP"),
        ("tls", "yes", "is not a TLS switch"),
        ("window_size", 0, "is not a RELP window"),
        ("udp_rate_limit", -1, "is not a UDP rate"),
        ("udp_rate_limit", 1.5, "is not a UDP rate"),
        ("server_host", "not a host!", "is not a host"),
        ("server_host", "", "is not a host"),
        ("server_host", "999.1.1.1", "is not a host"),
        ("server_port", 0, "is not a port; expected an integer 1-65535"),
        ("server_port", 70000, "is not a port; expected an integer 1-65535"),
        ("server_port", "514", "is not a port"),
        ("server_port", 514.5, "is not a port"),
        ("server_port", True, "is not a port"),
        ("format", "xml", "expected one of"),
        ("framing", "nul", "expected one of"),
        ("facility", 24, "is not a syslog facility"),
        ("severity", "loud", "is not a syslog severity"),
        ("app_name", "has space", "is not an app-name"),
        ("structured_data", "nope", "STRUCTURED-DATA"),
        ("max_message_size", 10, "is not a message size"),
        ("colour", "blue", "is not a known option"),
    ],
)
def test_server_field_rules(tmp_path: Path, field: str, value: Any, expect: str) -> None:
    msgs = problems(tmp_path, with_server(**{field: value}))
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith(f"configuration.server[0].{field}")
    assert expect in msgs[0]
    if field != "colour":
        assert json.dumps(value) in msgs[0] or value == ""


def test_relp_options_and_defaults(tmp_path: Path) -> None:
    from siemconn.config import DEFAULT_RELP_WINDOW, DEFAULT_UDP_RATE_LIMIT

    s = load_settings(write(tmp_path, with_server(server_protocol="relp", tls="on", window_size=64)), ENV)
    server = s.servers[0]
    assert (server.server_protocol, server.tls, server.window_size, server.uses_tls) == (
        "RELP",
        True,
        64,
        True,
    )
    assert server.label == "server1 (RELP+TLS siem.example.com:514)"
    plain = load_settings(write(tmp_path, with_server(server_protocol="RELP")), ENV).servers[0]
    assert (plain.tls, plain.window_size, plain.uses_tls) == (False, DEFAULT_RELP_WINDOW, False)
    udp = load_settings(write(tmp_path, with_server(server_protocol="UDP")), ENV).servers[0]
    assert udp.udp_rate_limit == DEFAULT_UDP_RATE_LIMIT


@pytest.mark.parametrize(
    ("changes", "expect"),
    [
        (
            {"server_protocol": "TCP", "tls": True},
            'tls applies to RELP servers; for syslog over TLS set server_protocol "TLS"',
        ),
        ({"server_protocol": "RELP", "framing": "octet-counting"}, "does not apply to RELP"),
    ],
)
def test_relp_option_combinations(tmp_path: Path, changes: dict[str, Any], expect: str) -> None:
    msgs = problems(tmp_path, with_server(**changes))
    assert len(msgs) == 1 and expect in msgs[0], msgs


def test_a_udp_rate_too_slow_for_a_batch_is_refused(tmp_path: Path) -> None:
    doc = with_server(server_protocol="UDP", udp_rate_limit=10)
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and "udp_rate_limit 10 sends one batch of 500 events in 50 s" in msgs[0], msgs
    doc["configuration"]["batch_size"] = 100
    assert load_settings(write(tmp_path, doc), ENV).servers[0].udp_rate_limit == 10


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "::1", "[2001:db8::1]", "siem", "siem-01.corp.example.com", "localhost"]
)
def test_valid_hosts(tmp_path: Path, host: str) -> None:
    assert load_settings(write(tmp_path, with_server(server_host=host)), ENV).servers[
        0
    ].server_host == host.strip("[]")


def test_names_must_be_unique(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["server"].append(dict(doc["configuration"]["server"][0]))
    msgs = problems(tmp_path, doc)
    assert any("'server1' is used twice" in m for m in msgs)


def test_servers_required_nonempty(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["server"] = []
    assert problems(tmp_path, doc) == ["configuration.server: [] is empty; expected at least one entry"]


@pytest.mark.parametrize("spec", ["* * * *", "61 * * * *", "* * * * * * *", "", "@reboot", "@every", 5])
def test_bad_cron(tmp_path: Path, spec: Any) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["scheduler"]["audit"] = spec
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith("configuration.scheduler.audit")
    assert "is not a cron expression" in msgs[0]


@pytest.mark.parametrize("spec", ["*/5 * * * *", "0 0 * * 1-5", "*/10 * * * * *"])
def test_good_cron_including_seconds_field(tmp_path: Path, spec: str) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["scheduler"]["detections"] = spec
    assert load_settings(write(tmp_path, doc), ENV).configuration.scheduler.detections == spec


@pytest.mark.parametrize("value", [-1, 0, 5])
def test_retry_count_ints(tmp_path: Path, value: int) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["retry_count"] = value
    assert load_settings(write(tmp_path, doc), ENV).configuration.retry_count == value


@pytest.mark.parametrize("value", ["2", 2.5, None, True])
def test_retry_count_bad(tmp_path: Path, value: Any) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["retry_count"] = value
    msgs = problems(tmp_path, doc)
    assert msgs and msgs[0].startswith("configuration.retry_count")


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("api_version", "v2.5", "expected one of"),
        ("detection_size", "huge", "expected one of"),
        ("page_size", 5000, "expected an integer 1-1000"),
        ("initial_lookback_hours", -1, "is not a lookback"),
        ("timezone", "Mars/Base", "is not a time zone"),
        ("metrics_address", "9108", "is not an address"),
        ("include_triaged", "yes", "is not a boolean"),
        ("min_free_disk_mb", -5, "is not a size"),
        ("unknown_option", 1, "is not a known option"),
    ],
)
def test_top_level_options(tmp_path: Path, key: str, value: Any, expect: str) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"][key] = value
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith(f"configuration.{key}") and expect in msgs[0]


@pytest.mark.parametrize("value", ["x" * 300, "Europe", "Etc", "UTC/..", "\x00"])
def test_timezone_the_os_refuses_is_a_config_error(tmp_path: Path, value: str) -> None:
    """A name the file system refuses (too long, a directory of zones) is reported like any unknown zone."""
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["timezone"] = value
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1 and msgs[0].startswith("configuration.timezone") and "is not a time zone" in msgs[0]
    with pytest.raises(ConfigError) as ei:
        load_configuration(write(tmp_path, doc))
    assert "configuration.timezone" in str(ei.value) and "is not a time zone" in str(ei.value)


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


def test_missing_env_vars_all_reported(tmp_path: Path) -> None:
    msgs = problems(tmp_path, REFERENCE, env={})
    assert msgs == [
        "env BASE_URL is not set; expected the Vectra portal URL, e.g. https://tenant.uw2.portal.vectra.ai",
        "env CLIENT_ID is not set; expected the API client id",
        "env CLIENT_SECRET is not set; expected the API client secret (or CLIENT_SECRET_FILE pointing to a file)",
    ]


def test_base_url_must_be_http(tmp_path: Path) -> None:
    msgs = problems(tmp_path, REFERENCE, env={**ENV, "BASE_URL": "tenant.portal.vectra.ai"})
    assert msgs == [
        'env BASE_URL: "tenant.portal.vectra.ai" is not a URL; expected https://HOST such as '
        "https://tenant.uw2.portal.vectra.ai"
    ]


def test_client_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    env = {"BASE_URL": "http://127.0.0.1:1", "CLIENT_ID": "cid", "CLIENT_SECRET_FILE": str(f)}
    s = load_settings(write(tmp_path, REFERENCE), env)
    assert s.credentials.client_secret.get_secret_value() == SECRET
    msgs = problems(tmp_path, REFERENCE, env={**env, "CLIENT_SECRET_FILE": str(tmp_path / "absent")})
    assert len(msgs) == 1 and "CLIENT_SECRET_FILE" in msgs[0] and "cannot be read" in msgs[0]


def test_secret_never_in_repr_or_errors(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, REFERENCE), ENV)
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    bad = with_server(server_port=0)
    text = str(pytest.raises(ConfigError, load_settings, write(tmp_path, bad), ENV).value)
    assert SECRET not in text


def test_check_prints_five_mistakes_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["server"][0].update(
        server_protocol="SCTP", server_port=70000, server_host="bad host"
    )
    doc["configuration"]["scheduler"]["audit"] = "every minute"
    doc["configuration"]["retry_count"] = "two"
    rc = main(["check", "--config", str(write(tmp_path, doc))])
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
    doc = with_server(fromat="rfc5424")
    doc["configuration"]["retyr_count"] = 2
    doc["configuration"]["scheduler"]["detection"] = "* * * * *"
    msgs = problems(tmp_path, doc)
    assert 'configuration.server[0].fromat is not a known option; did you mean "format"?' in msgs
    assert 'configuration.retyr_count is not a known option; did you mean "retry_count"?' in msgs
    assert 'configuration.scheduler.detection is not a known option; did you mean "detections"?' in msgs


def test_unknown_key_without_a_near_one_says_so(tmp_path: Path) -> None:
    msgs = problems(tmp_path, with_server(zzzzzz=1))
    assert msgs == [
        "configuration.server[0].zzzzzz: 1 is not a known option; "
        "check its spelling against the README's configuration reference"
    ]


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("70 * * * * *", "field 1 (seconds) '70' is out of range"),
        ("* * * * * 70", "the seconds field comes FIRST"),
        ("* * * * * */10", "did you mean '*/10 * * * * *'?"),
        ("61 * * * *", "field 1 (minute) '61'"),
        ("@reboot", "pull_at_startup"),
        ("@every 5m", "unknown nickname"),
    ],
)
def test_cron_errors_name_the_field(tmp_path: Path, spec: str, expect: str) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["scheduler"]["audit"] = spec
    (msg,) = problems(tmp_path, doc)
    assert expect in msg, msg


@pytest.mark.parametrize(
    ("nick", "spec"), [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@WEEKLY", "0 0 * * 0")]
)
def test_cron_nicknames_are_accepted(tmp_path: Path, nick: str, spec: str) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["scheduler"]["audit"] = nick
    assert load_settings(write(tmp_path, doc), ENV).configuration.scheduler.audit == spec


def test_environment_problems_are_headed_as_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, REFERENCE), {"CLIENT_ID": "cid"})
    text = ei.value.render()
    assert text.startswith("environment: 2 problems\n"), text
    assert "config.json" not in text
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, with_server(server_port=0)), {"CLIENT_ID": "cid"})
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
    s = load_local_settings(write(tmp_path, REFERENCE))
    assert s.servers[0].name == "server1"
    assert not hasattr(s, "credentials")
    with pytest.raises(ConfigError) as ei:
        load_local_settings(write(tmp_path, with_server(fromat="x")))
    assert ei.value.environment_problems == []


@pytest.mark.parametrize(
    "url", ["http://tenant.uw2.portal.vectra.ai", "HTTP://10.0.0.5:8080", "http://[2001:db8::1]"]
)
def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path, url: str) -> None:
    msgs = problems(tmp_path, REFERENCE, env={**ENV, "BASE_URL": url})
    assert len(msgs) == 1 and msgs[0].startswith("env BASE_URL:")
    assert "expected https://" in msgs[0] and "loopback" in msgs[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:1",
        "http://[::1]:9",
        "https://[2001:db8::1]",
    ],
)
def test_plain_http_to_loopback_and_https_anywhere_are_allowed(tmp_path: Path, url: str) -> None:
    assert load_settings(write(tmp_path, REFERENCE), {**ENV, "BASE_URL": url}).credentials.base_url == url


def test_max_response_mb(tmp_path: Path) -> None:
    doc = {"configuration": {**REFERENCE["configuration"], "max_response_mb": 0}}
    assert "max_response_mb" in problems(tmp_path, doc)[0]
    assert load_configuration(write(tmp_path, REFERENCE)).max_response_mb == 8


def test_v35_and_detection_size(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["api_version"] = "v3.5"
    c = load_settings(write(tmp_path, doc), ENV).configuration
    assert (c.api_version, c.detection_size) == ("v3.5", None)  # size not sent: the API's default
    doc["configuration"]["detection_size"] = "detailed"
    assert load_settings(write(tmp_path, doc), ENV).configuration.detection_size == "detailed"


@pytest.mark.parametrize("version", [None, "v3.3", "v3.4"])
def test_detection_size_needs_v35(tmp_path: Path, version: str | None) -> None:
    """size is a v3.5 parameter: asking for it on an older version is an error naming both options."""
    doc = json.loads(json.dumps(REFERENCE))
    doc["configuration"]["detection_size"] = "detailed"
    if version is not None:
        doc["configuration"]["api_version"] = version
    msgs = problems(tmp_path, doc)
    assert len(msgs) == 1
    assert "detection_size 'detailed'" in msgs[0] and f"api_version is '{version or 'v3.3'}'" in msgs[0]
    assert 'set "api_version": "v3.5" or remove detection_size' in msgs[0]
