"""The stream table (siemconn.config.streams) is the one definition of every per-stream fact: the
config's scheduler keys, the source's endpoints, roles and pull units, the sink's products and mappings,
and the snapshot dispatch all agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
from siemconn.syslog.trim import BULK

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


# where naming a stream outside the table is the point: rux/streams.py's query parameters (the config
# options that filter one stream's answers, include_triaged and include_score_decreases, are that stream's
# by their meaning)
NAMED_ON_PURPOSE = {("rux/streams.py", "build_params")}


def _stream_literals(node: ast.AST) -> list[str]:
    """The stream names written as string constants in a comparison, a `case`, or a set, tuple or list
    literal (a membership test kept outside the table)."""
    parts: list[ast.AST] = []
    if isinstance(node, ast.Compare):
        parts = [node.left, *node.comparators]
    elif isinstance(node, ast.MatchValue):
        parts = [node.value]
    elif isinstance(node, ast.Set | ast.Tuple | ast.List):
        parts = [node]
    consts = []
    for part in parts:
        elts = part.elts if isinstance(part, ast.Set | ast.Tuple | ast.List) else [part]
        consts += [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return [c for c in consts if c.split(".")[0] in STREAMS]


def branches_on_stream_names(src: Path = SRC) -> list[str]:
    """`spec.stream == "..."`, `"lockdown" != key`, `stream in ("audit", ...)`, `case "health":`, a
    frozenset of stream names: a per-stream fact kept outside the stream table."""
    found: dict[str, None] = {}  # in order, once per line (`x in ("audit",)` is a compare and a tuple)
    for path in sorted(src.rglob("*.py")):
        rel = str(path.relative_to(src))
        if "devtools" in path.parts or rel == "config/streams.py":
            continue
        tree = ast.parse(path.read_text())
        scopes = {
            id(inner): fn.name
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if _stream_literals(node) and (rel, scopes.get(id(node))) not in NAMED_ON_PURPOSE:
                found[f"{rel}:{getattr(node, 'lineno', '?')}"] = None
    return list(found)


def test_no_code_outside_the_table_branches_on_a_stream_name() -> None:
    assert branches_on_stream_names() == []


@pytest.mark.parametrize(
    "planted",
    [
        'def f(spec):\n    return spec.stream == "lockdown"\n',
        'def f(key):\n    return "health" != key\n',
        'def f(key):\n    return key in ("audit", "x")\n',
        'def f(key):\n    match key:\n        case "entity_scoring.host":\n            return 1\n',
        'ONLY = frozenset({"detections"})\n',
    ],
)
def test_the_check_finds_a_planted_stream_branch(tmp_path: Path, planted: str) -> None:
    (tmp_path / "rux").mkdir()
    (tmp_path / "rux" / "client.py").write_text(planted)
    (tmp_path / "rux" / "streams.py").write_text(
        'def build_params(spec):\n    return spec.stream == "audit"\n'
    )
    assert branches_on_stream_names(tmp_path) == [f"rux/client.py:{_line(planted)}"]


def _line(text: str) -> int:
    """The line of the planted stream name."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if any(f'"{n}' in line for n in STREAMS))


def test_the_tables_kept_by_stream_outside_the_table_name_known_streams() -> None:
    """Per-stream tuning kept with its part (the trim order, the mapping modules) is optional for a new
    stream, but never names one that does not exist."""
    assert set(BULK) <= set(STREAMS)
    assert set(MAPPING_MODULES) <= {d.mapper for d in STREAM_DEFS}
