"""The import layering of `src/siemconn` (docs/architecture.md, "Layers"), checked with the standard
library only: `ast` reads every `import` of every module (top level, inside functions and under
`TYPE_CHECKING` alike: each is a dependency a reader must follow), and the checks are on that graph.

* no import cycle between modules;
* every import goes down the layer order or stays inside its own package; packages that share a layer
  never import each other (the source `rux`, the buffer `queue` and the sink `syslog` meet only in
  `service`, and share what they must through the layers below);
* named outright (issue 27), whatever the order: no module of `rux` or `syslog` imports `queue`, no
  module but `__main__` imports `cli`, and no module outside `queue` imports `sqlite3`;
* `__all__` is complete: every module declares one, and a name another siemconn module, a test, a bench
  or a script imports from a module is in it.

Each check is also run on a planted tree (a cycle, `cli` imported by the queue, the buffer imported by
the source, sqlite3 outside the queue), so a check that stopped finding what it is for fails too.

`make lint` runs this file. devtools/ (the fake tenant, the demo) sits outside the layers: it may import
anything and nothing imports it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# top to bottom: a module may import its own package and any package of a lower layer, nothing else
# (docs/architecture.md, "Layers", shows the same order)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("siemconn.__main__",),
    ("siemconn.cli",),
    ("siemconn.commands",),
    ("siemconn.service",),
    ("siemconn.rux", "siemconn.queue", "siemconn.syslog"),
    ("siemconn.ops",),
    ("siemconn.fileperms", "siemconn.buildinfo"),
    ("siemconn.config",),
    (
        "siemconn.events",
        "siemconn.errors",
        "siemconn.logging",
        "siemconn.exitcodes",
        "siemconn.__init__",
    ),
)
OUTSIDE = "siemconn.devtools"

# today's exceptions, each to be removed by the change that fixes it; the test fails on an entry that
# no longer occurs, so the list only shrinks
PENDING: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    package: bool


def modules(src: Path = SRC) -> dict[str, Module]:
    """Every module of the siemconn package: .py files, and .pyi stubs of C extensions."""
    found: dict[str, Module] = {}
    for path in sorted((src / "siemconn").rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        if path.suffix == ".pyi" and name in found:
            continue
        found[name] = Module(name, path, package)
    return found


def _resolve(name: str, known: Mapping[str, Module]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def imports(mod: Module, known: Mapping[str, Module]) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each siemconn import of one module."""
    package = mod.name if mod.package else mod.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(mod.path.read_text(), str(mod.path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "siemconn":
                    yield _resolve(alias.name, known), None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "siemconn":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in known:
                    yield full, None, node.lineno
                else:
                    yield _resolve(target, known), alias.name, node.lineno


def graph(src: Path = SRC) -> dict[str, set[str]]:
    known = modules(src)
    edges: dict[str, set[str]] = {}
    for name, mod in known.items():
        if _in(name, OUTSIDE):
            continue
        edges[name] = {t for t, _, _ in imports(mod, known) if t != name and not _in(t, OUTSIDE)}
    return edges


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def component(name: str) -> tuple[int, str]:
    """(layer, package) of a module: the longest declared prefix wins (`siemconn.__init__` is the
    top-level package module alone, its version)."""
    if name == "siemconn":
        name = "siemconn.__init__"
    best: tuple[int, str] | None = None
    for layer, packages in enumerate(LAYERS):
        for package in packages:
            if _in(name, package) and (best is None or len(package) > len(best[1])):
                best = (layer, package)
    assert best is not None, f"{name} is in no layer: add its package to LAYERS and docs/architecture.md"
    return best


def violations(edges: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    bad = set()
    for source, targets in edges.items():
        layer, package = component(source)
        for target in targets:
            t_layer, t_package = component(target)
            if t_package == package:
                continue
            if t_layer <= layer:
                bad.add((source, target))
    return bad


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_imports_follow_the_layer_order() -> None:
    bad = violations(graph())
    assert bad - PENDING == set(), "imports against the layer order (docs/architecture.md, Layers)"
    assert PENDING - bad == set(), "fixed: remove these from PENDING"


def forbidden_edges(edges: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    """The imports issue 27 names outright, whatever the layer order says: the source (`rux`) or the sink
    (`syslog`) importing the buffer (`queue`), and any module but `__main__` importing `cli`."""
    bad = set()
    for source, targets in edges.items():
        for target in targets:
            if (_in(source, "siemconn.rux") or _in(source, "siemconn.syslog")) and _in(
                target, "siemconn.queue"
            ):
                bad.add((source, target))
            if target == "siemconn.cli" and source != "siemconn.__main__":
                bad.add((source, target))
    return bad


SQLITE = frozenset({"sqlite3", "_sqlite3"})


def sqlite_users(src: Path = SRC) -> set[str]:
    """Modules outside `queue` (and devtools) that import sqlite3 in any form (`import sqlite3.dbapi2`,
    `from sqlite3 import connect`, inside a function): the queue file is the queue's alone."""
    found = set()
    for name, mod in modules(src).items():
        if _in(name, "siemconn.queue") or _in(name, OUTSIDE):
            continue
        for node in ast.walk(ast.parse(mod.path.read_text(), str(mod.path))):
            if isinstance(node, ast.Import):
                used = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                used = [node.module or ""]
            else:
                continue
            if any(u.split(".")[0] in SQLITE for u in used):
                found.add(name)
    return found


def test_source_and_sink_never_import_the_buffer_or_the_cli() -> None:
    assert forbidden_edges(graph()) == set()


def test_sqlite3_only_in_the_queue() -> None:
    assert sqlite_users() == set()


def _declared_all(mod: Module) -> set[str] | None:
    for node in ast.parse(mod.path.read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                assert node.value is not None
                value = ast.literal_eval(node.value)
                return set(value)
    return None


# names the tests import from a module whose `__all__` leaves them out, each to be removed by the change
# that settles that module's interface
PENDING_ALL: frozenset[str] = frozenset()


def _users(known: Mapping[str, Module]) -> Iterator[tuple[str, str, str | None, int]]:
    """(importer, imported module, imported name or None, line) for each siemconn import of the package's
    modules and of tests/, bench/ and scripts/ (what a user of the package imports counts too)."""
    for name, mod in known.items():
        for target, imported, line in imports(mod, known):
            yield name, target, imported, line
    root = SRC.parent
    for folder in ("tests", "bench", "scripts"):
        for path in sorted((root / folder).rglob("*.py")):
            user = Module(str(path.relative_to(root)), path, package=False)
            for target, imported, line in imports(user, known):
                yield user.name, target, imported, line


def test_every_module_declares_a_complete_all() -> None:
    """`__all__` is the module's interface: every module of src/siemconn declares one (devtools too;
    `__main__` is a script), and what other modules, the tests, the benches and the scripts import from
    it is in it."""
    known = modules()
    declared = {name: _declared_all(mod) for name, mod in known.items() if mod.path.suffix == ".py"}
    missing = sorted(n for n, d in declared.items() if d is None and n != "siemconn.__main__")
    assert not missing, f"modules without __all__: {missing}"
    incomplete = set()
    pending = set()
    for name, target, imported, line in _users(known):
        names = declared.get(target)
        if imported is None or names is None or imported in names or imported.startswith("_"):
            continue
        if f"{target}.{imported}" in PENDING_ALL:
            pending.add(f"{target}.{imported}")
            continue
        incomplete.add(f"{target}.{imported} (imported by {name}:{line})")
    assert not incomplete, sorted(incomplete)
    assert PENDING_ALL - pending == set(), "fixed: remove these from PENDING_ALL"


# the check itself, on planted trees: it must fail on a cycle and on an upward import


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "siemconn" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "queue/__init__.py": "",
            "queue/a.py": "from siemconn.queue import b\n",
            "queue/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from siemconn.queue.a import X\n",
        },
    )
    assert cycles(graph(src)) == [["siemconn.queue.a", "siemconn.queue.b"]]


@pytest.mark.parametrize(
    "planted", ["import siemconn.cli", "from siemconn.cli import main", "from siemconn import cli"]
)
def test_the_check_finds_the_cli_imported_by_the_queue(tmp_path: Path, planted: str) -> None:
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "from siemconn.queue import store\n",
            "queue/__init__.py": "",
            "queue/store.py": f"def f() -> None:\n    {planted}\n",
        },
    )
    edges = graph(src)
    assert ("siemconn.queue.store", "siemconn.cli") in violations(edges)
    assert cycles(edges) == [["siemconn.cli", "siemconn.queue.store"]]


@pytest.mark.parametrize(
    ("path", "planted", "edge"),
    [
        (
            "rux/client.py",
            "from siemconn.queue.store import DurableQueue",
            ("siemconn.rux.client", "siemconn.queue.store"),
        ),
        ("syslog/writer.py", "import siemconn.queue", ("siemconn.syslog.writer", "siemconn.queue")),
        ("commands/check.py", "from siemconn import cli", ("siemconn.commands.check", "siemconn.cli")),
    ],
)
def test_the_check_finds_a_planted_forbidden_import(
    tmp_path: Path, path: str, planted: str, edge: tuple[str, str]
) -> None:
    files = {
        "__init__.py": "",
        "cli.py": "",
        "__main__.py": "from siemconn.cli import main\n",
        "queue/__init__.py": "",
        "queue/store.py": "",
    }
    files |= {f"{path.split('/')[0]}/__init__.py": "", path: f"def f() -> None:\n    {planted}\n"}
    assert forbidden_edges(graph(_tree(tmp_path, files))) == {edge}


@pytest.mark.parametrize(
    "planted", ["import sqlite3", "import sqlite3.dbapi2", "from sqlite3 import connect", "import _sqlite3"]
)
def test_the_check_finds_sqlite3_outside_the_queue(tmp_path: Path, planted: str) -> None:
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "queue/__init__.py": "import sqlite3\n",
            "devtools/__init__.py": "import sqlite3\n",
            "ops/__init__.py": "",
            "ops/metrics.py": f"def f() -> None:\n    {planted}\n",
        },
    )
    assert sqlite_users(src) == {"siemconn.ops.metrics"}


def test_the_documented_order_is_the_checked_one() -> None:
    """docs/architecture.md's "Layers" block names the same packages, layer by layer, as LAYERS."""
    text = (SRC.parent / "docs" / "architecture.md").read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    documented = []
    for line in section.splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        names = [p.rstrip("/") for p in re.split(r"\s{2,}", line.strip()) if re.fullmatch(r"[a-z_]+/?", p)]
        documented.append(tuple(names))
    checked = [
        tuple(p.removeprefix("siemconn.") for p in layer if p != "siemconn.__init__") for layer in LAYERS
    ]
    assert documented == checked
