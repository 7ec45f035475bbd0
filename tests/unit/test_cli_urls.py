"""The CLI is a client of tursid's control API through ``ControlClient``'s methods: no module of it spells a route."""

from __future__ import annotations

import re
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "tursi" / "cli"
ROUTE = re.compile(r"""["']/(v1/|health\b|openapi\.json)""")  # a string that starts with a route


def test_no_cli_module_spells_a_control_api_route() -> None:
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(CLI.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if ROUTE.search(line)
    ]
    assert not found, "use a ControlClient method instead:\n" + "\n".join(found)
