"""The reference in docs/ is generated from the code (docs/generate.py): regenerated here in memory, it must equal
what is committed, and it must cover every command, option, variable and route."""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from tursi.cli import cli
from tursi.core.settings import declared
from tursi.http import openapi

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATED = _generator().render_all()


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: p.name)
def test_committed_docs_equal_the_generated_ones(path: Path) -> None:
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    if committed != GENERATED[path]:
        diff = "".join(
            list(
                difflib.unified_diff(committed.splitlines(True), GENERATED[path].splitlines(True), "committed", "code")
            )[:60]
        )
        pytest.fail(f"{path.relative_to(ROOT)} is out of date: run .venv/bin/python docs/generate.py\n{diff}")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_cli_reference_covers_every_command_and_option() -> None:
    text = GENERATED[ROOT / "docs" / "cli.md"]
    for path, command in _commands(cli):
        assert f"## `tursi {path}`" in text, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert all(f"`{opt}`" in text for opt in param.opts), (path, param.opts)


def test_environment_reference_covers_every_variable() -> None:
    text = GENERATED[ROOT / "docs" / "environment.md"]
    assert set(re.findall(r"^\| `([A-Z0-9_]+)`", text, re.MULTILINE)) == {v.name for v in declared()}


@pytest.mark.parametrize(
    ("name", "document"), [("control-api.md", openapi.control), ("inference-api.md", openapi.inference)]
)
def test_api_references_cover_every_operation(name: str, document: object) -> None:
    text = GENERATED[ROOT / "docs" / name]
    for path, methods in document()["paths"].items():  # type: ignore[operator]
        for method in methods:
            assert f"### `{method.upper()} {path}`" in text


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert targets, "the README links to the docs"
    assert [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()] == []


CITATION = re.compile(r"((?:unit|integration|e2e)/test_\w+\.py)|::(\w+)|\(((?:`\w+`(?:, )?)+)\)")


def _test_functions(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}


def _bad_input_citations() -> list[tuple[str, str, str]]:
    """(row, file, what) for every test docs/bad-inputs.md cites: ``file.py::name``, ``::name`` (the file cited
    before it in the same cell) and ``file.py (`case`, ...)`` (parametrize ids, which must appear in the file)."""
    cited = []
    for line in (ROOT / "docs" / "bad-inputs.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or not re.search(r"\.py", cells[-1]):
            continue
        row, current = cells[0], ""
        for file, name, cases in CITATION.findall(cells[-1]):
            if file:
                current = file
                cited.append((row, current, ""))
            elif name:
                cited.append((row, current, name))
            elif cases and current:
                cited += [(row, current, f"`{case}`") for case in re.findall(r"`(\w+)`", cases)]
    return cited


def test_every_test_cited_by_the_bad_inputs_catalogue_exists() -> None:
    cited = _bad_input_citations()
    assert len(cited) > 100, "the catalogue cites the tests that prove each row"
    missing = []
    for row, file, what in cited:
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"row {row}: {file}")
        elif what.startswith("`"):
            if f'"{what.strip("`")}"' not in path.read_text(encoding="utf-8"):
                missing.append(f"row {row}: {file} case {what}")
        elif what and what not in _test_functions(path):
            missing.append(f"row {row}: {file}::{what}")
    assert missing == [], "docs/bad-inputs.md cites tests that do not exist:\n" + "\n".join(missing)
