"""tursi.core.names: the name rule every route checks, and the name picked from a model reference."""

from __future__ import annotations

import pytest

from tursi.core.names import NAME_MAX, is_valid_name, slug, unique_name


@pytest.mark.parametrize(
    ("display", "name"),
    [
        ("smollm2", "smollm2"),
        ("SmolLM2-135M Instruct", "smollm2-135m-instruct"),
        ("/models/Qwen2.5 (chat)/", "qwen2.5--chat"),  # the last path part only
        ("sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"),
        ("..hidden..", "hidden"),  # no leading or trailing separator
        ("modèle", "mod-le"),  # ASCII only: a picked name always passes the rule
        ("日本語", "model"),  # nothing left
        ("", "model"),
        ("x" * 100, "x" * NAME_MAX),
    ],
)
def test_slug(display: str, name: str) -> None:
    assert slug(display) == name
    assert is_valid_name(name)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("a", True), ("a" * 64, True), ("a" * 65, False), ("-a", False), ("A", False), ("a b", False), (7, False)],
)
def test_is_valid_name(name: object, valid: bool) -> None:
    assert is_valid_name(name) is valid


def test_unique_name_counts_up_and_stays_within_the_limit() -> None:
    taken = {"minilm", "minilm-2"}
    assert unique_name("minilm", taken.__contains__) == "minilm-3"
    assert unique_name("free", taken.__contains__) == "free"
    long = "y" * NAME_MAX
    named = unique_name(long, {long}.__contains__)
    assert named == "y" * (NAME_MAX - 2) + "-2"
    assert is_valid_name(named)
