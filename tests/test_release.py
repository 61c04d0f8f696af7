"""Release inputs and outputs that the default suite can prove without building an image: the hashed locks
satisfy pyproject.toml (and a lock that does not is caught), the runtime lock is closed over the
dependencies of what it pins, and the SBOM lists every installed distribution with its version and the
hash of its installed files. The image build and the upgrade from a real old build are in
tests/test_upgrade.py and tests/deploy."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]


def read_lock(text: str) -> dict[str, Pin]:
    """`name==version [; marker] \\ --hash=sha256:...` entries, as `uv pip compile --generate-hashes`
    writes them; anything else that is not a comment is an error (an unpinned or unhashed line)."""
    pins: dict[str, Pin] = {}
    for block in re.split(r"\n(?=\S)", text):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            continue
        head = lines[0].rstrip(" \\")
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)(\s*;.*)?", head)
        assert m, f"not an exact pin: {head!r}"
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        assert hashes, f"{head}: no sha256 hash"
        pins[canonicalize_name(m[1])] = Pin(Version(m[2]), hashes)
    return pins


def unsatisfied(requirements: list[str], pins: dict[str, Pin]) -> list[str]:
    """The requirements (that apply to CPython 3.11 on this platform) the pins do not satisfy."""
    env = {str(k): str(v) for k, v in default_environment().items()}
    env |= {"python_version": "3.11", "python_full_version": "3.11.0"}
    problems = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req}: the lock has {pin.version}")
    return problems


RUNTIME = read_lock((ROOT / "requirements.lock").read_text())
BUILD = read_lock((ROOT / "requirements-build.lock").read_text())


def test_runtime_lock_satisfies_pyproject() -> None:
    assert unsatisfied(PYPROJECT["project"]["dependencies"], RUNTIME) == [], "run make lock"


def test_build_lock_satisfies_the_build_system() -> None:
    assert unsatisfied(PYPROJECT["build-system"]["requires"], BUILD) == [], "run make lock"


def test_a_lock_that_no_longer_satisfies_pyproject_is_caught() -> None:
    """The check above really fails: a bound raised past the locked version, and a dependency the lock
    lacks, are both named."""
    httpx = RUNTIME["httpx"].version
    raised = f"httpx>={httpx.major}.{httpx.minor + 1}"
    problems = unsatisfied([raised, "some-new-dependency>=1"], RUNTIME)
    assert problems == [
        f"{Requirement(raised)}: the lock has {httpx}",
        "some-new-dependency>=1: not in the lock",
    ]


def test_an_unhashed_or_unpinned_line_is_refused() -> None:
    with pytest.raises(AssertionError, match="no sha256 hash"):
        read_lock("httpx==0.28.1\n    # via siemconn\n")
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_lock("httpx>=0.27 \\\n    --hash=sha256:" + "0" * 64 + "\n")


def test_runtime_lock_is_closed_over_its_dependencies() -> None:
    """Every dependency of every pinned distribution is pinned too (pip --require-hashes would refuse
    the install otherwise), read from the metadata of those installed here at the locked version."""
    env = {str(k): str(v) for k, v in default_environment().items()} | {"extra": ""}
    missing = []
    checked = 0
    for name, pin in RUNTIME.items():
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if Version(dist.version) != pin.version:
            continue
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if canonicalize_name(req.name) not in RUNTIME:
                missing.append(f"{name} needs {req}")
    assert checked >= len(PYPROJECT["project"]["dependencies"]), "install from the lock first (make install)"
    assert missing == []


def test_make_installs_the_service_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements.lock" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    readme = (ROOT / "packaging" / "systemd" / "README.md").read_text()
    assert "--require-hashes -r /path/to/checkout/requirements.lock" in readme


# --- the SBOM ---------------------------------------------------------------------------------------


def _installed_by_dist_info() -> dict[str, tuple[str, str]]:
    """name -> (version, sha256 of RECORD), read straight from the *.dist-info directories on sys.path,
    independently of importlib.metadata."""
    found: dict[str, tuple[str, str]] = {}
    for entry in sys.path:
        base = Path(entry or ".")
        if not base.is_dir():
            continue
        for info in sorted(base.glob("*.dist-info")):
            meta = Parser().parsestr((info / "METADATA").read_text(errors="replace"), headersonly=True)
            name = canonicalize_name(meta["Name"])
            record = info / "RECORD"
            if name not in found and record.exists():
                found[name] = (meta["Version"], hashlib.sha256(record.read_bytes()).hexdigest())
    return found


def test_sbom_lists_every_installed_distribution_with_version_and_hash(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    subprocess.run(
        [sys.executable, "-m", "siemconn.devtools.sbom", "--output", str(out)],
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", bom["serialNumber"])
    listed = {c["name"]: c for c in bom["components"]}
    assert len(listed) == len(bom["components"])

    # pip's own view of this environment: the same names and versions, nothing more, nothing less
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    by_pip = {canonicalize_name(d["name"]): d["version"] for d in json.loads(pip.stdout)}
    assert {n: c["version"] for n, c in listed.items()} == by_pip

    # each hash is the sha256 of the distribution's RECORD (every installed file with its own sha256)
    on_disk = _installed_by_dist_info()
    for name, comp in listed.items():
        assert comp["purl"] == f"pkg:pypi/{name}@{comp['version']}"
        assert [(h["alg"], h["content"]) for h in comp["hashes"]] == [("SHA-256", on_disk[name][1])], name
    for name, pin in RUNTIME.items():  # the service's dependencies are listed at their locked versions
        if name in listed and md.distribution(name).version == str(pin.version):
            assert listed[name]["version"] == str(pin.version)
    assert bom["metadata"]["component"]["name"] == "siemconn"


def test_sbom_is_deterministic(tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "siemconn.devtools.sbom"],
            capture_output=True,
            check=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0])["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
