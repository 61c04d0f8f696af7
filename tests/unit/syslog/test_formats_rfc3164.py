"""siemconn.syslog.formats.rfc3164: the BSD header with a TAG."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from siemconn.config import ServerConfig
from siemconn.syslog.formats.rfc3164 import Rfc3164

NOW = datetime(2023, 11, 2, 0, 18, 1, tzinfo=UTC)


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


def test_header_exact() -> None:
    f = Rfc3164(server(hostname="host-a", app_name="vectra-rux_1"), None)
    assert f.header("audit", NOW) == "<14>Nov  2 00:18:01 host-a vectrarux1: "
    assert f.header("detections", datetime(2023, 12, 25, 9, 5, 7, tzinfo=UTC)) == (
        "<14>Dec 25 09:05:07 host-a vectrarux1: "
    )


def test_tag_is_alphanumeric_at_most_32_else_siemconn() -> None:
    assert (
        Rfc3164(server(hostname="h", app_name="a" * 40), None).header("audit", NOW).endswith(f" {'a' * 32}: ")
    )
    assert Rfc3164(server(hostname="h", app_name="-_."), None).header("audit", NOW).endswith(" h siemconn: ")


def test_host_is_hostname_else_the_callers_default_else_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box 1")
    assert " given_host " in Rfc3164(server(), "given host").header("audit", NOW)
    assert " box_1 " in Rfc3164(server(), None).header("audit", NOW)
    assert " h " in Rfc3164(server(hostname="h"), "given").header("audit", NOW)
