"""Keep-alive durations as Ollama and Docker Model Runner users write them."""

from __future__ import annotations

import pytest

from tursi.core.durations import keep_alive_seconds, normalize_keep_alive


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("90", 90.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1", None),
        ("-5m", None),
        ("forever", None),
        (" 2S ", 2.0),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert keep_alive_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "5m3", "nan", "1e400", "400000h", "5 m"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration|year"):
        keep_alive_seconds(text)


def test_a_deployment_stores_one_form() -> None:
    assert normalize_keep_alive("1.5m") == "90s"
    assert normalize_keep_alive("-1") == "forever"
