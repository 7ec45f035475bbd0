"""`tursi up` sends a local path as an absolute one (tursid has its own working directory); aliases, hub ids and
artifact keys go as typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tursi.cli.up import local_reference


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("models/mine", "{cwd}/models/mine"),
        ("./models/mine/", "{cwd}/models/mine"),
        ("models/../models/mine", "{cwd}/models/mine"),
        ("model.gguf", "{cwd}/model.gguf"),
        ("minilm", "minilm"),  # an alias wins over a folder of that name, as in tursid
        ("org/name", "org/name"),  # a hub id that is no local path
        ("3f2a9c1d", "3f2a9c1d"),  # an artifact key
        ("/abs/elsewhere", "/abs/elsewhere"),
    ],
)
def test_local_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str, expected: str) -> None:
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "minilm").mkdir()
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    assert local_reference(reference) == expected.format(cwd=tmp_path)
