"""What the command tests share: a seeded fake tenant, and the CLI run in-process against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import Cli
from support.e2e import serve_fake

from siemconn.devtools.fake_rux import FakeRux


@pytest.fixture
def fake() -> Iterator[FakeRux]:
    yield from serve_fake(seed_audit=10, seed_detections=60, seed_entity=20)


@pytest.fixture
def cli(
    tmp_path: Path, fake: FakeRux, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    return Cli(tmp_path, fake.url, monkeypatch, capsys)
