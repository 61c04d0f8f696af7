"""A minimal valid `configuration` object for unit tests of the parts that take one."""

from __future__ import annotations

from typing import Any

from siemconn.config import Configuration, ServerConfig

__all__ = ["UDP_514", "configuration"]

UDP_514 = {"name": "a", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}


def configuration(servers: list[ServerConfig] | None = None, **kw: Any) -> Configuration:
    """Every stream every minute, retry_count 3 and one UDP server unless `servers` are given;
    keyword arguments override options."""
    return Configuration.model_validate(
        {
            "server": [s.model_dump() for s in servers] if servers else [UDP_514],
            "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
            "retry_count": 3,
            **kw,
        }
    )
