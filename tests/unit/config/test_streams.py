"""The stream table (siemconn.config.streams) is the one definition of every per-stream fact: the
config's scheduler keys, the source's endpoints, roles and pull units, the sink's products and mappings,
and the snapshot dispatch all agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

from siemconn.config import (
    LIST_SNAPSHOT,
    OBJECT_SNAPSHOT,
    REQUIRED_STREAMS,
    STREAM_DEFS,
    STREAM_TABLE,
    STREAMS,
    SchedulerConfig,
)
from siemconn.rux.streams import ALL_SPECS, stream_specs
from siemconn.syslog.mapping import MAPPING_MODULES, PRODUCTS, map_event

SRC = Path(__file__).resolve().parents[3] / "src" / "siemconn"


def test_the_scheduler_keys_are_the_stream_names_in_order() -> None:
    assert tuple(SchedulerConfig.model_fields) == STREAMS
    required = tuple(n for n, f in SchedulerConfig.model_fields.items() if f.is_required())
    assert required == REQUIRED_STREAMS == ("audit", "detections", "entity_scoring")


def test_every_pull_unit_comes_from_the_table() -> None:
    assert [s.key for s in ALL_SPECS] == [
        "audit",
        "detections",
        "entity_scoring.account",
        "entity_scoring.host",
        "health",
        "lockdown",
    ]
    for d in STREAM_DEFS:
        for spec in stream_specs(d.name):
            assert spec.definition is d
            assert (spec.path, spec.role, spec.snapshot) == (d.endpoint, d.role, d.snapshot)


def test_every_stream_has_a_product_and_a_known_mapping() -> None:
    for d in STREAM_DEFS:
        assert PRODUCTS[d.name] == d.product
        assert d.mapper is None or d.mapper in MAPPING_MODULES
        mapped = map_event({"id": 1}, d.name, include_raw=False, raw_json='{"id": 1}')
        assert mapped.product == d.product
    assert {d.mapper for d in STREAM_DEFS if d.mapper} == set(MAPPING_MODULES)


def test_snapshot_kinds_are_the_two_known_ones() -> None:
    assert STREAM_TABLE["health"].snapshot == OBJECT_SNAPSHOT
    assert STREAM_TABLE["lockdown"].snapshot == LIST_SNAPSHOT
    assert {d.snapshot for d in STREAM_DEFS} == {None, OBJECT_SNAPSHOT, LIST_SNAPSHOT}


def test_no_code_outside_the_table_branches_on_a_stream_name() -> None:
    """`spec.stream == "..."` outside the stream table: a per-stream fact kept somewhere else. The one
    exception is rux/streams.py's query parameters: the config options that filter one stream's
    answers (include_triaged, include_score_decreases) are that stream's by their meaning."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "devtools" in path.parts or path == SRC / "rux" / "streams.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute):
                names = [c.value for c in node.comparators if isinstance(c, ast.Constant)]
                if node.left.attr == "stream" and any(n in STREAMS for n in names):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found
