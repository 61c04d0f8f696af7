"""Docs checks (issue 15, item 13): performance.md for users with a bench-written figures block,
CHANGELOG.md, the queue schema rule, an installable systemd recipe, and the README's tables."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from siemconn.config import validate_cron
from siemconn.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "docs" / "performance.md"


def _sections(text: str) -> dict[str, str]:
    """Level-2 sections of a Markdown text: heading -> body."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_performance_doc_is_written_for_users() -> None:
    text = PERF.read_text()
    heads = list(_sections(text))
    assert heads[:4] == ["What to expect", "Which knobs matter", "How to measure", "Measured figures"], heads
    assert "this round" not in "".join(_sections(text)[h] for h in heads[:3])
    knobs = _sections(text)["Which knobs matter"]
    for knob in ("batch_size", "page_size", "scheduler", "queue_max_events", "SIEMCONN_TUNING"):
        assert f"`{knob}" in knobs, knob
    assert "make bench" in _sections(text)["How to measure"]


def _bench_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod  # its dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def test_bench_still_rewrites_only_its_block_inside_measured_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_run()
    original = PERF.read_text()
    assert original.count(bench.BEGIN) == 1 and original.count(bench.END) == 1
    measured = _sections(original)["Measured figures"]
    assert bench.BEGIN in measured and bench.END in measured
    copy = tmp_path / "performance.md"
    copy.write_text(original)
    monkeypatch.setattr(bench, "PERF_DOC", copy)
    bench.write_doc("| measure | value | target |\n|---|---|---|\n| new | 1 | |")
    rewritten = copy.read_text()
    head, rest = original.split(bench.BEGIN, 1)
    tail = rest.split(bench.END, 1)[1]
    assert rewritten.startswith(head) and rewritten.endswith(tail)
    assert "| new | 1 | |" in _sections(rewritten)["Measured figures"]


def test_bench_schedule_is_valid_and_every_ten_seconds() -> None:
    (spec,) = re.findall(r'schedule="([^"]+)"', (ROOT / "bench" / "run.py").read_text())
    assert validate_cron(spec) == spec == "*/10 * * * * *"


def test_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "Keep a Changelog" in text
    assert re.search(r"^## \[Unreleased\]", text, re.M)
    for kind in ("Added", "Changed", "Fixed"):
        assert f"\n### {kind}\n" in text
    assert "SIEMCONN_SKIP_RSYSLOG=1" in text and "64" in text


def test_queue_schema_compatibility_rule_is_stated() -> None:
    arch = _sections((ROOT / "docs" / "architecture.md").read_text())
    rule = arch["Queue schema compatibility between versions"]
    for must in ("user_version", "SCHEMA_VERSION", "Never downwards", "CHANGELOG.md", "exit 1"):
        assert must in rule, must
    schema = (ROOT / "src" / "siemconn" / "queue" / "schema.py").read_text()
    assert re.search(r"^SCHEMA_VERSION = \d+$", schema, re.M)


SYSTEMD_README = ROOT / "packaging" / "systemd" / "README.md"


def test_systemd_readme_builds_what_it_installs() -> None:
    lines = [ln.strip().lstrip("#").strip() for ln in SYSTEMD_README.read_text().splitlines()]
    installs = [i for i, ln in enumerate(lines) if re.search(r"pip install \S*\.whl", ln)]
    builds = [i for i, ln in enumerate(lines) if "pip wheel" in ln or "-m build" in ln]
    assert all(any(b < i for b in builds) for i in installs), "a wheel is installed that no step builds"
    assert any(re.search(r"pip install --no-deps /path/to/checkout$", ln) for ln in lines)


@pytest.mark.skipif(os.environ.get("SIEMCONN_TEST_BUILD") != "1", reason="set SIEMCONN_TEST_BUILD=1 (slow)")
def test_systemd_readme_wheel_step_builds_a_wheel(tmp_path: Path) -> None:
    (cmd,) = [ln for ln in SYSTEMD_README.read_text().splitlines() if "pip wheel" in ln]
    args = cmd.strip().lstrip("#").split("#")[0].split()
    assert args[:5] == ["python3", "-m", "pip", "wheel", "--no-deps"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=600,
    )
    assert list(tmp_path.glob("siemconn-*-py3-none-any.whl"))


def test_readme_exit_codes_and_opt_out() -> None:
    readme = (ROOT / "README.md").read_text()
    table = _sections(readme)["Commands and exit codes"]
    for code in (
        ExitCode.OK,
        ExitCode.UNEXPECTED,
        ExitCode.CONFIG,
        ExitCode.ALL_SERVERS_DOWN,
        ExitCode.USAGE,
        ExitCode.BROKEN_PIPE,
    ):
        assert re.search(rf"^\| {code} \|", table, re.M), code
    assert "SIEMCONN_SKIP_RSYSLOG=1" in readme
    assert "packaging/monitoring" in readme


SRC = ROOT / "src" / "siemconn"


def _modules() -> list[Path]:
    return sorted(
        p
        for p in SRC.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "devtools" not in p.relative_to(SRC).parts
    )


def test_architecture_map_names_every_module() -> None:
    arch = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for p in _modules():
        rel = p.relative_to(SRC).as_posix()
        if f"`{rel}`" not in arch and f"`{p.parent.relative_to(SRC).as_posix()}/`" not in arch:
            missing.append(rel)
    assert not missing, f"docs/architecture.md's module table does not name {missing}"


def test_no_module_outgrows_one_concept() -> None:
    long = {
        p.relative_to(SRC).as_posix(): n for p in _modules() if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, f"split these modules (over 450 lines): {long}"
