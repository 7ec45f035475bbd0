"""The int8 sensitivity search's cache: what its key covers, and that a damaged entry means "search again"."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters import sensitivity_cache


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "fp32").mkdir()
    fp32, int8 = tmp_path / "fp32" / "model.onnx", tmp_path / "int8.onnx"
    fp32.write_bytes(b"fp32 graph")
    (tmp_path / "fp32" / "model.onnx_data").write_bytes(b"fp32 weights")
    int8.write_bytes(b"int8 graph")
    return fp32, int8


def test_a_stored_section_comes_back_under_the_same_key(models: tuple[Path, Path]) -> None:
    fp32, int8 = models
    k = sensitivity_cache.key(fp32, int8, ["a", "b"], {"min": 0.98})
    assert sensitivity_cache.load(k) is None
    sensitivity_cache.store(k, {"nodes_to_exclude": ["/ffn/MatMul"], "stopped": "targets met"})
    assert sensitivity_cache.load(k) == {"nodes_to_exclude": ["/ffn/MatMul"], "stopped": "targets met"}
    assert sensitivity_cache.cache_dir().is_relative_to(Path(fp32).parents[1] / "xdg")


def test_the_key_covers_weights_texts_and_targets(models: tuple[Path, Path]) -> None:
    fp32, int8 = models
    k = sensitivity_cache.key(fp32, int8, ["a"], {"min": 0.98})
    assert sensitivity_cache.key(fp32, int8, ["b"], {"min": 0.98}) != k
    assert sensitivity_cache.key(fp32, int8, ["a"], {"min": 0.99}) != k
    (fp32.parent / "model.onnx_data").write_bytes(b"other fp32 weights")  # external data counts too
    assert sensitivity_cache.key(fp32, int8, ["a"], {"min": 0.98}) != k


@pytest.mark.parametrize("text", ["", "{", "[]", '{"nodes_to_exclude": "x"}', '{"nodes_to_exclude": [1]}'])
def test_a_damaged_entry_is_a_miss(models: tuple[Path, Path], text: str) -> None:
    fp32, int8 = models
    k = sensitivity_cache.key(fp32, int8, ["a"], {})
    sensitivity_cache.cache_dir().mkdir(parents=True)
    (sensitivity_cache.cache_dir() / f"{k}.json").write_text(text)
    assert sensitivity_cache.load(k) is None
