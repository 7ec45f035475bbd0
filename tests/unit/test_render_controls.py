"""Text that came from a daemon, a manifest or a bundle (a model reference, an error detail, a log line, a stage
message) is printed without terminal control characters: it cannot retitle, clear or rewrite the user's terminal."""

from __future__ import annotations

import io

import pytest

from tursi.cli import render

EVIL = "tiny\x1b]0;owned\x07\x1b[2J\x9b31m\r\u202egnp.exe\x00\x7f"
CONTROLS = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00", "\x7f")


def assert_clean(text: str) -> None:
    assert "tiny" in text
    for ch in CONTROLS:
        assert ch not in text, repr(text)


def test_lines_tables_and_errors_are_printed_without_controls(capsys: pytest.CaptureFixture[str]) -> None:
    render.out(EVIL)
    render.out(render.table(("SOURCE", "FORMAT"), [[EVIL, "gguf"]]))
    render.error(EVIL, hint=EVIL, extra_lines=[EVIL])
    out, err = capsys.readouterr()
    assert_clean(out)
    assert_clean(err)
    assert "tiny]0;owned" in out  # the printable rest stays readable
    assert "\t" in render.clean("a\tb\nc")
    assert "\n" in render.clean("a\tb\nc")


def test_progress_and_transfer_labels_are_clean() -> None:
    stream = io.StringIO()
    progress = render.Progress(stream)
    progress.stage(EVIL)
    progress.close()
    render.Transfer(EVIL, 10, stream).close()
    assert_clean(stream.getvalue())


def test_log_bytes_keep_their_text_but_lose_controls(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    render.write_raw(EVIL.encode() + b" caf\xc3\xa9 \xff\n")
    out = capsysbinary.readouterr().out
    assert_clean(out.decode("utf-8", "replace"))
    assert out.endswith(b" caf\xc3\xa9 \xff\n")  # other bytes pass as they are, invalid UTF-8 included
