"""packaging/monitoring: the alert rules pass promtool, fire when they should, and every metric name in
the rules and the dashboard is one siemconn exports (read from the Metrics registry, not a list)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from siemconn.ops.metrics import Metrics

MONITORING = Path(__file__).resolve().parents[1] / "packaging" / "monitoring"
RULES = MONITORING / "siemconn-alerts.yml"
RULE_TESTS = MONITORING / "siemconn-alerts.test.yml"
DASHBOARD = MONITORING / "siemconn-dashboard.json"
PROMTOOL = shutil.which("promtool")
# Known-upcoming: the quarantine work adds this counter. Accepted ONLY while the registry lacks it;
# once exported, the check below uses the real name and this entry is ignored.
UPCOMING = {"siemconn_events_quarantined_total"}
_METRIC = re.compile(r"\b(siemconn_[a-z0-9_]+)\b")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; CI installs it)"
)


def exported_names() -> set[str]:
    """Every series name siemconn's registry exposes: counters as NAME_total (and NAME_created)."""
    metrics = Metrics()
    assert metrics.registry is not None
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        else:
            names.add(family.name)
    return names


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            out.append(query["query"])
        elif node.get("type") == "query" and isinstance(query, str):
            out.append(query)
        return out + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def rule_exprs() -> list[str]:
    return re.findall(r"^\s*expr:\s*(.+)$", RULES.read_text(), re.M)


def dashboard_exprs() -> list[str]:
    return _exprs(json.loads(DASHBOARD.read_text()))


def test_exported_names_come_from_the_registry() -> None:
    names = exported_names()
    assert {"siemconn_server_up", "siemconn_queue_depth", "siemconn_events_delivered_total"} <= names


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_name_is_exported(source: str) -> None:
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    assert len(exprs) >= 6
    known = exported_names()
    allowed = known | (UPCOMING - known)
    used = {name for e in exprs for name in _METRIC.findall(e)}
    assert used, exprs
    unknown = used - allowed
    assert not unknown, f"{source} use metric names siemconn does not export: {sorted(unknown)}"


def test_rules_cover_what_operators_alert_on() -> None:
    text = RULES.read_text()
    for alert in (
        "SiemconnSyslogServerDown",
        "SiemconnBacklogGrowing",
        "SiemconnNoSuccessfulPoll",
        "SiemconnEventsQuarantined",
        "SiemconnTokenFailures",
    ):
        assert f"alert: {alert}\n" in text


def test_dashboard_is_importable_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "siemconn" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] for p in dash["panels"])


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 6 rules found" in r.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    assert PROMTOOL is not None
    r = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=MONITORING,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
