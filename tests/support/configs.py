"""Config documents for tests: a minimal valid `configuration` object for the parts that take one, and the
reference connector's config.json with the loader's problems for the config tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from siemconn.config import Configuration, ServerConfig, load_settings
from siemconn.errors import ConfigError

__all__ = ["ENV", "REFERENCE", "SECRET", "UDP_514", "configuration", "problems", "reference", "write_config"]

UDP_514 = {"name": "a", "server_protocol": "UDP", "server_host": "127.0.0.1", "server_port": 514}

SECRET = "s3cr3t-Value-0123456789"
ENV = {"BASE_URL": "https://tenant.uw2.portal.vectra.ai/", "CLIENT_ID": "cid", "CLIENT_SECRET": SECRET}

# The reference connector's own config.json, unchanged (one TCP server, every minute, retry_count 2).
REFERENCE: dict[str, Any] = {
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


def reference(scheduler: dict[str, Any] | None = None, **server: Any) -> dict[str, Any]:
    """A copy of REFERENCE, its server updated with `server` and its scheduler replaced by `scheduler`."""
    doc = copy.deepcopy(REFERENCE)
    doc["configuration"]["server"][0].update(server)
    if scheduler is not None:
        doc["configuration"]["scheduler"] = scheduler
    return doc


def write_config(tmp_path: Path, doc: Any) -> Path:
    """`doc` (a document, or text as it is) as tmp_path/config.json."""
    p = tmp_path / "config.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def problems(tmp_path: Path, doc: Any, env: dict[str, str] | None = None) -> list[str]:
    """What load_settings refuses in `doc` with `env` (ENV unless given): every problem, in order."""
    with pytest.raises(ConfigError) as ei:
        load_settings(write_config(tmp_path, doc), ENV if env is None else env)
    return ei.value.problems
