"""`tursi up --label KEY=VALUE`: kept on the deployment, shown by `ps --format json` and `inspect`; a bad label
is a one-line CLI error with a non-zero exit and nothing deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache

LABELS = {"team": "search", "tursi.dev/stage": "canary = eu-1"}


def test_labels_are_kept_and_shown(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    args = [a for k, v in LABELS.items() for a in ("--label", f"{k}={v}")]
    env.cli("up", str(tiny_bert), "--name", "labelled", *args, check=True)
    (dep,) = env.ps()
    assert dep["options"]["labels"] == LABELS
    inspected = json.loads(env.cli("inspect", "labelled", check=True).stdout)
    assert inspected["options"]["labels"] == LABELS
    env.cli("up", str(tiny_bert), "--name", "plain", check=True)  # no --label: none kept
    assert {d["name"]: d["options"]["labels"] for d in env.ps()} == {"labelled": LABELS, "plain": None}


@pytest.mark.parametrize(
    ("label", "exit_code", "message"),
    [
        ("team", 2, "'team' is not KEY=VALUE"),  # the CLI's own parsing
        ("=x", 2, "'=x' is not KEY=VALUE"),
        ("bad key=x", 64, "--label takes at most 32 KEY=VALUE pairs: KEY matching"),  # tursid's check
        ("k=\x1b[31mred", 64, "VALUE text of at most 256 printable characters"),
        (f"k={'v' * 257}", 64, "VALUE text of at most 256 printable characters"),
    ],
)
def test_a_bad_label_is_a_cli_error(env: Env, daemon: DaemonProc, label: str, exit_code: int, message: str) -> None:
    proc = env.cli("up", "minilm", "--name", "bad", "--label", label)
    assert proc.returncode == exit_code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert env.ps("-a") == []
