"""The package layers, as the tree shows them, and the direction imports may run between them.

Every import in the source is read (module-level and inside functions alike), so a lower layer
importing an upper one fails here even when the import is deferred to the function that uses it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# layer -> the layers its modules may import (always including itself).
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),  # converters.cache: stdlib only, shared by the converters, bundles and tursid
    "core": {"core", "leaf"},  # tursi.core + tursi.formats + the package itself (__version__)
    "http": {"core", "http"},
    "client": {"core", "client"},
    "cli": {"core", "client", "cli", "pack", "compose", "registry"},
    "compose": {"core", "compose"},  # compose files as deployment specs: read by the CLI
    "registry": {"core", "registry", "leaf"},  # OCI references, the distribution client, artifact <-> OCI
    "pack": {"core", "pack"},  # runtime packs: workstation code, no daemon
    "daemon": {"core", "http", "daemon", "leaf", "registry"},
    "worker": {"core", "http", "worker", "runtimes"},
    "runtimes": {"core", "runtimes"},
    "converters": {"core", "converters", "runtimes", "leaf"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if module == "converters.cache" or module.startswith("converters.cache."):
        return "leaf"
    if parts[0] in ("converters", "runtimes"):
        return parts[0]
    if parts[0] != "tursi":
        return None
    if len(parts) == 1 or parts[1] in ("core", "formats", "__version__"):
        return "core"
    return parts[1] if parts[1] in ALLOWED else "unassigned"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import module" imports the module, not the (empty) package's layer
            if not (ROOT / base.replace(".", "/")).is_dir():
                found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources() -> list[Path]:
    return sorted(p for top in ("tursi", "converters", "runtimes") for p in (ROOT / top).rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    unassigned = [module_name(p) for p in sources() if layer_of(module_name(p)) in (None, "unassigned")]
    layers = "core, formats, http, client, cli, compose, registry, daemon, worker"
    assert unassigned == [], f"add these to a layer in tursi/ ({layers})"


def test_imports_only_run_downwards() -> None:
    problems = []
    for path in sources():
        module = module_name(path)
        mine = layer_of(module)
        assert mine is not None
        for target in sorted(imports_of(path, module)):
            theirs = layer_of(target)
            if theirs is None or theirs == mine or theirs in ALLOWED[mine]:
                continue
            problems.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tursi.daemon.state import StateStore\n", "core imports tursi.daemon.state"),
        ("def f():\n    from tursi.cli import main\n", "core imports tursi.cli"),
        ("from ..worker import app\n", "core imports tursi.worker"),
    ],
)
def test_the_check_catches_an_upward_import(tmp_path: Path, source: str, expected: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    targets = imports_of(probe, "tursi.core.probe")
    upward = [t for t in targets if layer_of(t) not in ALLOWED["core"] | {"core", None}]
    assert upward, expected
