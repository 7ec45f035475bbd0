"""Print the requirements of pyproject.toml's `all` extra, one a line, leaving out the distributions named.

    python platform/requirements.py llama-cpp-python > build/requirements.txt

`make install` installs these while llama.cpp compiles (pip waits on the network and unzips; the compile uses the
CPU), then the llama.cpp wheel, then the project itself, whose requirements are then all met. Extras that name the
project itself (``tursi[serve,convert,dev]``) are expanded. Standard library only (tomllib, Python 3.11)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else requirement


def requirements(extra: str, leave_out: set[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    own, extras = _name(project["name"]), project["optional-dependencies"]
    out: list[str] = list(project["dependencies"])
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in extras[name]:
            if _name(requirement) == own:
                todo += [e.strip() for e in requirement.split("[", 1)[1].rstrip("]").split(",")]
            else:
                out.append(requirement)
    wanted = {_name(n) for n in leave_out}
    return sorted({r for r in out if _name(r) not in wanted})


if __name__ == "__main__":
    sys.stdout.write("".join(f"{r}\n" for r in requirements("all", set(sys.argv[1:]))))
