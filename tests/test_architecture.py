"""The dependency arrows of docs/architecture.md, checked on every import statement in the tree."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"hub", "actors", "devices", "edge_agent", "web", "schemas"}

# package (or module prefix) -> the packages/modules of ours it may import
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "actors": set(),
    "devices": set(),
    "edge_agent": {"schemas", "devices"},
    "hub.domain": {"schemas"},
    "hub.mqtt": set(),
    # hub.bus: notifications are published on user_topic() by the module that writes them.
    # hub.domain: the db layer applies pure plans (timetable regeneration) inside its transaction.
    "hub.db": {"schemas", "hub.campus", "hub.passwords", "hub.records", "hub.mqtt", "hub.bus", "hub.domain"},
    # hub.domain: pages and API present the same pure rules (eligibility bands, alarm messages).
    "web": {"web", "hub.db", "hub.bus", "hub.passwords", "hub.config", "actors", "schemas", "hub.domain"},
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
    if rule is None:
        return  # the rest of hub/ is the composition layer: it may import anything of ours
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
