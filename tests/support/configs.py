"""A minimal valid `configuration` object for unit tests of the parts that take one."""

from __future__ import annotations

from typing import Any

from siemconn.config import Configuration


def configuration(**kw: Any) -> Configuration:
    """One UDP server, every stream every minute, retry_count 3; keyword arguments override options."""
    return Configuration.model_validate(
        {
            "server": [
                {"name": "a", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}
            ],
            "scheduler": {"audit": "* * * * *", "detections": "* * * * *", "entity_scoring": "* * * * *"},
            "retry_count": 3,
            **kw,
        }
    )
