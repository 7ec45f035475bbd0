from __future__ import annotations

import pytest

from tursi.cli import render
from tursi.cli.ps import status_text


def test_table_aligns_columns_like_docker_ps() -> None:
    text = render.table(("NAME", "STATUS"), [["a", "Up"], ["longer-name", None]])
    lines = text.splitlines()
    assert lines[0] == "NAME          STATUS"
    assert lines[1] == "a             Up"
    assert lines[2] == "longer-name"


@pytest.mark.parametrize(
    ("n", "text"), [(None, "-"), (512, "512B"), (2048, "2.0KiB"), (123.6 * 2**20, "123.6MiB"), (3 * 2**30, "3.0GiB")]
)
def test_human_size(n: float | None, text: str) -> None:
    assert render.human_size(n) == text


@pytest.mark.parametrize(
    ("dep", "text"),
    [
        ({"status": "running"}, "Up"),
        ({"status": "starting"}, "Starting"),
        ({"status": "exited", "exit_code": 137, "finished_at": 40.0}, "Exited (137) 1 minute ago"),
        ({"status": "failed", "exit_code": None, "finished_at": 98.0}, "Failed (?) 2 seconds ago"),
    ],
)
def test_status_text(dep: dict, text: str) -> None:
    assert status_text(dep, now=100.0) == text
