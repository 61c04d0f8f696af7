"""Fixtures of the packaging tests (`make test-packaging`): podman, the image, the systemd image.

Every test here is marked `packaging` and left out of `make test`. When podman itself cannot run,
each test is skipped with one loud line naming the reason; with SIEMCONN_REQUIRE_PODMAN=1 (CI) the
same condition is a failure instead, so a CI machine without a working podman cannot pass silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.podman import FACTS, REPO, SYSTEMD_PACKAGES, BuiltImage, Podman, fact

IMAGE_TAG = "localhost/siemconn:packaging-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.packaging)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FACTS:
        terminalreporter.section("packaging facts")
        for line in FACTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    pm, why = Podman.create(tmp_path_factory.mktemp("podman"))
    if pm is not None:
        return pm
    line = f"PACKAGING TESTS NOT RUN: podman cannot run here: {why}"
    print(f"\n{'!' * 20} {line} {'!' * 20}", file=sys.stderr)
    fact(line)
    if os.environ.get("SIEMCONN_REQUIRE_PODMAN") == "1":
        pytest.fail(line, pytrace=False)
    pytest.skip(line)


@pytest.fixture(scope="session")
def image(podman: Podman) -> BuiltImage:
    """The project's Dockerfile, unchanged, built on the official base or its local equivalent."""
    base, official = podman.python_base(fact)
    why = podman.smoke(base)
    if why:
        line = f"PACKAGING TESTS NOT RUN: podman cannot start a container here: {why}"
        fact(line)
        if os.environ.get("SIEMCONN_REQUIRE_PODMAN") == "1":
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
    build_args = {} if official else {"PYTHON_IMAGE": base}
    seconds = podman.build(IMAGE_TAG, REPO, build_args=build_args, mounts=podman.build_mounts(official))
    own = podman.own_layers_size(IMAGE_TAG, base)
    total = int(podman.json("image", "inspect", IMAGE_TAG)[0]["Size"])
    fact(f"image build: {seconds:.1f} s (podman layer cache on; a change to src/ rebuilds the venv layer)")
    fact(f"image's own layers: {own / 1e6:.1f} MB (the whole image with this base: {total / 1e6:.0f} MB)")
    return BuiltImage(IMAGE_TAG, base, official, seconds, own)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, byte-identical for identical sources (so image layers stay cached)."""
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        check=True,
        timeout=600,
        env=env,
        cwd=out,
    )
    (found,) = out.glob("siemconn-*.whl")
    return found


@pytest.fixture(scope="session")
def systemd_base(podman: Podman) -> str:
    return podman.local_base("systemd", SYSTEMD_PACKAGES, fact)


@pytest.fixture(scope="session")
def pip_cache() -> Path:
    """pip's download cache for installs inside containers, kept between runs (a clean machine fills it)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "siemconn-packaging" / "pip"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def cleanup(podman: Podman) -> Iterator[list[str]]:
    """Names of containers and volumes to remove after the test (`c:NAME` or `v:NAME`)."""
    names: list[str] = []
    yield names
    for n in reversed(names):
        kind, _, name = n.partition(":")
        if kind == "c":
            podman.run("rm", "-f", "-v", "-t", "0", name, check=False)
        else:
            podman.run("volume", "rm", "-f", name, check=False)
