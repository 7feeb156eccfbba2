"""The dependency arrows of docs/architecture.md, checked on every import statement in the tree."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"hub", "actors", "devices", "edge_agent", "web", "schemas"}

# package (or module prefix) -> the packages/modules of ours it may import (docs/architecture.md).
# Every module of ours falls under one rule; the longest matching prefix wins.
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "actors": set(),
    "devices": set(),
    "edge_agent": {"schemas", "devices"},
    "hub.domain": {"schemas"},
    "hub.mqtt": set(),
    "hub.embedded": set(),
    # hub.mqtt: a commit record carries the broker message it acknowledges; hub.domain: and the
    # device health it persists, declared once by the (pure) domain.
    "hub.core": {"schemas", "hub.mqtt", "hub.domain"},
    # hub.domain: the db layer applies pure plans (timetable regeneration) inside its transaction.
    "hub.db": {"schemas", "hub.core", "hub.mqtt", "hub.domain"},
    "hub.adapters": {"schemas", "hub.core", "hub.db", "hub.domain"},
    "hub.pipeline": {"actors", "schemas", "hub.core", "hub.db", "hub.domain", "hub.mqtt", "hub.adapters"},
    # hub.pipeline.writer: services commit through the writer and share its notion of a transient error.
    "hub.services": {"actors", "schemas", "hub.core", "hub.db", "hub.domain", "hub.adapters", "hub.pipeline.writer"},
    # hub.domain: pages and API present the same pure rules (eligibility bands, alarm messages).
    "web": {"actors", "schemas", "hub.core", "hub.db", "hub.domain"},
    # The composition root: the only place that knows every part, web/ included.
    "hub.app": {"actors", "schemas", "devices", "edge_agent", "hub", "web"},
    # hub/__init__ and hub/__main__: the entry point is the root's CLI.
    "hub": {"hub.app"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in OURS}


def _rule_for(module: str) -> str | None:
    matches = [prefix for prefix in ALLOWED if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def _allowed(imported: str, allowed: set[str], own_package: str) -> bool:
    if imported == own_package or imported.startswith(own_package + "."):
        return True
    return any(imported == a or imported.startswith(a + ".") for a in allowed)


FILES = sorted(p for pkg in OURS for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_arrows(path):
    module = _module_name(path)
    rule = _rule_for(module)
    assert rule is not None, f"{module} falls under no rule of docs/architecture.md: add it to ALLOWED"
    bad = {name for name in _imports(path) if not _allowed(name, ALLOWED[rule], rule)}
    assert not bad, f"{module} imports {sorted(bad)}, but {rule} may import only {sorted(ALLOWED[rule]) or 'nothing of ours'}"


def test_domain_rules_do_no_io():
    forbidden = {"trio", "asyncio", "asyncpg", "trio_asyncio", "paho", "aiomqtt", "socket", "sqlite3", "quart"}
    for path in (ROOT / "hub" / "domain").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & forbidden, f"{path.name} imports {names & forbidden}"


def _runtime_imports(path: Path, module: str) -> set[str]:
    """Modules of ours that ``path`` imports at run time (anywhere but under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(), str(path))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES and name != module}


MODULES = {_module_name(p): p for p in FILES}


def test_no_import_cycles():
    """No cycle among our modules, lazy imports included; imports under TYPE_CHECKING are exempt."""
    graph = {module: _runtime_imports(path, module) for module, path in MODULES.items()}
    # A package's __init__ importing its own submodules is how a package publishes its API.
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_architecture_doc_states_these_rules():
    """docs/architecture.md's package table lists exactly the rules enforced here."""
    rows = re.findall(r"^\| `([\w/]+)/` \|.*\| (.*) \|$", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    documented = {path.replace("/", "."): set(re.findall(r"`([\w.]+)`", may_import)) for path, may_import in rows}
    for package, allowed in ALLOWED.items():
        if package in {"hub", "hub.app"}:  # the entry point and the root may import anything
            assert package == "hub" or "anything" in dict(rows)[package.replace(".", "/")]
            continue
        assert package in documented, f"docs/architecture.md has no row for {package}/"
        assert documented[package] == allowed, (
            f"{package}: the doc says {sorted(documented[package])}, this test enforces {sorted(allowed)}")


def test_every_path_in_the_feature_index_exists():
    """docs/architecture.md's feature index names real files (it is how people find a feature)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    index = text[text.index("## Feature index"):]
    paths = set(re.findall(r"`((?:hub|web|tests|docs|actors|schemas|devices|edge_agent)/[\w/.]+)`", index))
    assert len(paths) > 50, "the feature index should name the files of every feature"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md's feature index names files that do not exist: {missing}"
