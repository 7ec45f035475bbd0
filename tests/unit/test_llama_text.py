"""One stream's token pieces become text: characters split across tokens wait for their rest, text that may start
a stop string waits until it is clearly not one, and a stop string ends the text before it."""

from __future__ import annotations

import pytest

from runtimes.llama_text import TextStream


def run(pieces: list[bytes], stop: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    stream = TextStream(stop)
    out = [stream.add(p) for p in pieces]
    return out, stream.flush(), stream.stopped


@pytest.mark.parametrize(
    ("pieces", "stop", "handed", "rest", "stopped"),
    [
        ([b"Hel", b"lo"], (), ["Hel", "lo"], "", False),
        (["é".encode()[:1], "é".encode()[1:], b"!"], (), ["", "é", "!"], "", False),  # split UTF-8 waits
        ([b"a", "€".encode()[:2]], (), ["a", ""], "\ufffd", False),  # cut short: U+FFFD at the end
        ([b"one ", b"two ", b"END", b" three"], ("END",), ["one ", "two ", "", ""], "", True),
        ([b"x E", b"N", b"D"], ("END",), ["x ", "", ""], "", True),  # a stop string across three pieces
        ([b"x E", b"N", b"O"], ("END",), ["x ", "", "ENO"], "", False),  # a false start is handed out whole
        ([b"ab", b"c"], ("abc", "b"), ["a", ""], "", True),  # the earliest stop string wins
        ([b"tail E"], ("END",), ["tail "], "E", False),  # held text comes out when generation ends
        ([b"a", b"b"], ("",), ["a", "b"], "", False),  # an empty stop string stops nothing
    ],
)
def test_pieces_become_text(
    pieces: list[bytes], stop: tuple[str, ...], handed: list[str], rest: str, stopped: bool
) -> None:
    assert run(pieces, stop) == (handed, rest, stopped)


def test_nothing_comes_after_a_stop() -> None:
    stream = TextStream(("\n",))
    assert stream.add(b"line\nmore") == "line"
    assert (stream.add(b"again"), stream.flush()) == ("", "")
