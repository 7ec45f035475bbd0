from __future__ import annotations

from pathlib import Path

import pytest

from tursi.core.errors import InvalidSpec
from tursi.daemon.logfiles import parse_since, read_lines, rotate

LOG = """2026-11-26T13:00:00+0000 [tursid] started: pid=1
2026-11-26 13:00:01,500 INFO __main__: worker up
Traceback (most recent call last):
  File "x.py", line 1
2026-11-26T13:10:00+0000 [tursid] exited: code=1
"""
T0 = 1795698000.0  # 2026-11-26T13:00:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10m", T0 - 600),
        ("2h", T0 - 7200),
        ("30s", T0 - 30),
        ("1d", T0 - 86400),
        ("2026-11-26T13:00:00Z", T0),
        ("2026-11-26T14:00:00+01:00", T0),
        (str(T0), T0),
    ],
)
def test_parse_since(value: str, expected: float) -> None:
    assert parse_since(value, now=T0) == pytest.approx(expected)


def test_parse_since_rejects_garbage() -> None:
    with pytest.raises(InvalidSpec, match="--since"):
        parse_since("yesterday-ish", now=T0)


def test_lines_inherit_times_and_filter(tmp_path: Path) -> None:
    f = tmp_path / "d.log"
    f.write_text(LOG)
    assert len(read_lines(f, keep=3, tail=-1, since=None, timestamps=False)) == 5
    late = read_lines(f, keep=3, tail=-1, since=T0 + 60, timestamps=False)
    assert late == ["2026-11-26T13:10:00+0000 [tursid] exited: code=1"]
    stamped = read_lines(f, keep=3, tail=2, since=None, timestamps=True)
    assert stamped[0] == '2026-11-26T13:00:01Z   File "x.py", line 1'  # the traceback line takes the time before it
    assert read_lines(f, keep=3, tail=0, since=None, timestamps=False) == []


def test_rotation_keeps_size_bounded_and_order(tmp_path: Path) -> None:
    f = tmp_path / "d.log"
    for i in range(10):
        with f.open("a") as fh:
            fh.write(f"2026-11-26T13:00:{i:02d}+0000 line {i} " + "x" * 100 + "\n")
        rotate(f, max_bytes=250, keep=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.log", "d.log.1", "d.log.2"]
    assert all(p.stat().st_size <= 500 for p in tmp_path.iterdir())
    lines = read_lines(f, keep=2, tail=-1, since=None, timestamps=False)
    numbers = [int(line.split(" line ")[1].split()[0]) for line in lines]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 9
