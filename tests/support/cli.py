"""siemconn's command line run in-process, as an operator would run it against a tenant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from siemconn.cli import main
from support.e2e import CLIENT_ID, SECRET, connector_config

__all__ = ["Cli"]


class Cli:
    """siemconn's CLI run in-process on a config.json in tmp_path for the fake tenant, whose credentials
    are in the environment (as an operator would set them)."""

    def __init__(
        self, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self._tmp_path = tmp_path
        self._url = url
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def config(self, servers: list[dict[str, Any]]) -> str:
        """Write config.json with `servers`, set the credentials, and return its path."""
        self._monkeypatch.setenv("BASE_URL", self._url)
        self._monkeypatch.setenv("CLIENT_ID", CLIENT_ID)
        self._monkeypatch.setenv("CLIENT_SECRET", SECRET)
        p = self._tmp_path / "config.json"
        p.write_text(json.dumps(connector_config(self._tmp_path, servers)))
        return str(p)

    def run(self, *args: str) -> tuple[int, str]:
        """`siemconn ARGS`: its exit code and what it printed."""
        rc = main(list(args))
        return rc, self._capsys.readouterr().out
