"""siemconn.syslog.formats.legacy: the reference connector's header."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from siemconn.config import LEGACY_HOSTNAME, ServerConfig
from siemconn.syslog.formats.legacy import Legacy

NOW = datetime(2023, 11, 2, 0, 18, 1, 999999, tzinfo=UTC)


def server(**kw: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "name": "s1",
        "server_protocol": "TCP",
        "server_host": "127.0.0.1",
        "server_port": 514,
    }
    return ServerConfig.model_validate(base | kw)


def test_header_is_the_reference_line_to_the_second() -> None:
    assert Legacy(server(), None).header("detections", NOW) == f"<14>2023-11-02T00:18:01Z {LEGACY_HOSTNAME}: "


def test_the_host_is_hostname_else_the_fixed_name_never_this_machine() -> None:
    assert Legacy(server(hostname="edge-1"), None).header("audit", NOW) == "<14>2023-11-02T00:18:01Z edge-1: "
    assert Legacy(server(), "this-machine").header("audit", NOW).endswith(f" {LEGACY_HOSTNAME}: ")


def test_the_header_does_not_depend_on_the_stream_or_the_event() -> None:
    f = Legacy(server(facility="local0", severity="warning"), None)
    assert (
        f.header("audit", NOW)
        == f.header("entity_scoring.host", NOW)
        == (f"<132>2023-11-02T00:18:01Z {LEGACY_HOSTNAME}: ")
    )
    assert f.uses_event_time is False
