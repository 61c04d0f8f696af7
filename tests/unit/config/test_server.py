"""siemconn.config.server: every field rule of one syslog server entry (`configuration.server[]`), its RELP
options, host syntax and its `streams`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.configs import ENV, problems, reference, write_config

from siemconn.config import (
    DEFAULT_RELP_WINDOW,
    DEFAULT_UDP_RATE_LIMIT,
    load_settings,
)


@pytest.mark.parametrize("proto", ["tcp", "Udp", "TLS", "tls", "relp", "Relp"])
def test_protocol_any_case(tmp_path: Path, proto: str) -> None:
    s = load_settings(write_config(tmp_path, reference(server_protocol=proto)), ENV)
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
    msgs = problems(tmp_path, reference(**{field: value}))
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith(f"configuration.server[0].{field}")
    assert expect in msgs[0]
    if field != "colour":
        assert json.dumps(value) in msgs[0] or value == ""


def test_relp_options_and_defaults(tmp_path: Path) -> None:
    s = load_settings(
        write_config(tmp_path, reference(server_protocol="relp", tls="on", window_size=64)), ENV
    )
    server = s.servers[0]
    assert (server.server_protocol, server.tls, server.window_size, server.uses_tls) == (
        "RELP",
        True,
        64,
        True,
    )
    assert server.label == "server1 (RELP+TLS siem.example.com:514)"
    plain = load_settings(write_config(tmp_path, reference(server_protocol="RELP")), ENV).servers[0]
    assert (plain.tls, plain.window_size, plain.uses_tls) == (False, DEFAULT_RELP_WINDOW, False)
    udp = load_settings(write_config(tmp_path, reference(server_protocol="UDP")), ENV).servers[0]
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
    msgs = problems(tmp_path, reference(**changes))
    assert len(msgs) == 1 and expect in msgs[0], msgs


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "::1", "[2001:db8::1]", "siem", "siem-01.corp.example.com", "localhost"]
)
def test_valid_hosts(tmp_path: Path, host: str) -> None:
    assert load_settings(write_config(tmp_path, reference(server_host=host)), ENV).servers[
        0
    ].server_host == host.strip("[]")


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
    assert problems(tmp_path, reference(streams=value)) == [message]
