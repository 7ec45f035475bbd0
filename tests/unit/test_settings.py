"""One home for settings: every environment variable is declared in tursi/core/settings.py, documented in
docs/environment.md, parsed one way, and read by no other module, at import time or later."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tursi.core.errors import InvalidSpec
from tursi.core.settings import HttpSettings, Settings, cli_only, declared, flag

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tursi", "converters", "runtimes")
# Modules that touch os.environ beyond handing it to a function, and why that is not a read of a setting.
ALLOWED = {
    "tursi/core/settings.py": "the one home",
    "tursi/daemon/memory.py": "sets AIOHTTP_NO_EXTENSIONS & co. for its own import of aiohttp, then restores them",
}


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _documented(path: Path) -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", path.read_text(encoding="utf-8"), re.MULTILINE))


def test_environment_reference_lists_exactly_the_declared_variables() -> None:
    names = [v.name for v in declared()]
    assert len(names) == len(set(names)), "a variable is declared twice"
    documented = _documented(ROOT / "docs" / "environment.md")
    assert documented == set(names), "docs/environment.md is stale: run .venv/bin/python docs/generate.py"
    readme = _documented(ROOT / "README.md")  # a README table, if there is one, may only name declared variables
    assert readme <= set(names), f"README names undeclared variables: {sorted(readme - set(names))}"


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that use os.environ / os.getenv other than by handing os.environ to a call (injection at the edge)."""
    handed = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call) for arg in node.args}
    handed |= {id(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("getenv", "environb", "putenv") or (node.attr == "environ" and id(node) not in handed):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv", "environb") for alias in node.names):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_module_but_settings_reads_the_environment() -> None:
    offenders = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel not in ALLOWED:
            offenders += [f"{rel}:{line}" for line in _environment_reads(ast.parse(path.read_text(encoding="utf-8")))]
    assert offenders == [], "read environment variables through tursi.core.settings"


def test_the_scan_sees_a_read() -> None:
    tree = ast.parse("import os\na = os.environ.get('X')\nb = os.getenv('Y')\nf(os.environ)\nos.environ['Z'] = '1'\n")
    assert _environment_reads(tree) == [2, 3, 5]


POISON = """
import importlib, os, sys
from pathlib import Path

root = Path(sys.argv[1])
ours = tuple(str(root / pkg) + os.sep for pkg in ("tursi", "converters", "runtimes"))
modules = []
for pkg in ("tursi", "converters", "runtimes"):
    for path in sorted((root / pkg).rglob("*.py")):
        if "__pycache__" not in path.parts and path.name != "__main__.py":  # entry points run when imported
            parts = list(path.relative_to(root).with_suffix("").parts)
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
reads = []


class Poisoned(dict):
    # Libraries may read their own variables when imported (click's gettext, aiohttp); code of ours may not.
    def __init__(self, real):
        self.real = real

    def _guard(name):
        def read(self, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(ours):
                reads.append(f"{caller.f_code.co_filename}:{caller.f_lineno}")
                raise RuntimeError("os.environ read at import time")
            return getattr(self.real, name)(*args, **kwargs)

        return read

    for _name in ("__getitem__", "get", "__contains__", "__iter__", "keys", "items", "values", "copy", "__len__"):
        locals()[_name] = _guard(_name)


os.environ = Poisoned(os.environ)
real_getenv = os.getenv


def getenv(*args):
    if sys._getframe(1).f_code.co_filename.startswith(ours):
        reads.append("os.getenv")
        raise RuntimeError("os.getenv at import time")
    return real_getenv(*args)


os.getenv = getenv
for module in modules:
    try:
        importlib.import_module(module)
    except RuntimeError as e:
        reads.append(f"{module}: {e}")
print("\\n".join(reads) if reads else f"imported {len(modules)} modules")
sys.exit(1 if reads else 0)
"""


def _import_all(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", POISON, str(root)], capture_output=True, text=True, timeout=300, cwd=root
    )


def test_importing_every_module_reads_no_environment() -> None:
    run = _import_all(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert run.stdout.startswith("imported ")


def test_the_poisoned_import_sees_a_read(tmp_path: Path) -> None:
    (tmp_path / "tursi").mkdir()
    (tmp_path / "tursi" / "__init__.py").write_text("import os\nTIMEOUT = os.environ.get('TURSI_X', '1')\n")
    run = _import_all(tmp_path)
    assert run.returncode == 1
    assert "tursi/__init__.py:2" in run.stdout


@pytest.mark.parametrize(
    ("value", "on"),
    [("", False), ("0", False), ("false", False), ("No", False), ("OFF", False), (" off ", False)]
    + [("1", True), ("true", True), ("yes", True), ("on", True), ("2", True)],
)
def test_flags_parse_one_way(value: str, on: bool) -> None:
    assert flag(value) is on
    settings = Settings.load({"TURSI_HOME": "/t", "TURSI_DEBUG": value, "TURSI_NO_AUTOSTART": value})
    assert (settings.debug, settings.autostart) == (on, not on)


def test_defaults_come_from_the_declaration_and_values_from_the_injected_mapping() -> None:
    s = Settings.load({"HOME": "/home/u"})
    assert s.home == Path("/home/u/.local/share/tursi")
    assert s.contexts_path == Path("/home/u/.config/tursi/contexts.json")
    assert (s.stop_grace_s, s.http.body_timeout_s, s.http.max_connections) == (10.0, 30.0, 1024)
    env = {"XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c", "TURSI_BODY_TIMEOUT": "1.5", "TURSI_LOG_FILES": "5"}
    s = Settings.load(env)
    assert (s.home, s.contexts_path, s.http.body_timeout_s, s.log_files) == (
        Path("/d/tursi"),
        Path("/c/tursi/contexts.json"),
        1.5,
        5,
    )
    assert HttpSettings.load({"TURSI_SEND_BUFFER": "16384"}).send_buffer == 16384
    assert Settings.load({"TURSI_HOME": "/t", "TURSI_STOP_GRACE": ""}).stop_grace_s == 10.0  # empty is unset


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TURSI_STOP_GRACE", "soon"),
        ("TURSI_BODY_TIMEOUT", "nan"),
        ("TURSI_LOG_FILES", "-1"),
        ("TURSI_LOG_FILES", "2.5"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidSpec, match=name):
        Settings.load({"TURSI_HOME": "/t", name: value})


def test_cli_only_variables_are_the_ways_to_reach_a_daemon() -> None:
    assert cli_only() == {"TURSI_HOST", "TURSI_TOKEN", "TURSI_TLS_CA", "TURSI_TLS_FINGERPRINT"}


def test_tursi_debug_0_prints_no_traceback(tmp_path: Path) -> None:
    """An internal error (here: a contexts file that is a directory) is one line; TURSI_DEBUG=1 adds the
    traceback, TURSI_DEBUG=0 does not."""
    (tmp_path / "cfg" / "tursi" / "contexts.json").mkdir(parents=True)
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TURSI_HOME": str(tmp_path / "home")}
    base |= {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "TURSI_NO_AUTOSTART": "1"}
    for value, traceback in (("0", False), ("off", False), ("1", True)):
        run = subprocess.run(
            [sys.executable, "-m", "tursi.cli", "context", "create", "x", "--host", "unix:///nowhere"],
            env={**base, "TURSI_DEBUG": value},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 70, run.stderr
        assert "internal error" in run.stderr
        assert ("Traceback (most recent call last)" in run.stderr) is traceback, (value, run.stderr)
