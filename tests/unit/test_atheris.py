"""Coverage-guided fuzzing in CI: each parser of untrusted files runs under atheris/libFuzzer for a few seconds
(tests/fuzz/atheris_parsers.py; run it longer by hand with -max_total_time=600). A crash fails the test and
leaves the input that caused it in the test's temporary folder, named in the output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SECONDS = 6


@pytest.mark.parametrize("target", ["gguf", "safetensors", "onnx", "bundle"])
def test_parser_survives_coverage_guided_fuzzing(target: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_parsers", target, f"-max_total_time={SECONDS}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
        env={"TURSI_FUZZ_CRASHES": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    done = re.search(r"Done (\d+) runs", proc.stderr)
    crash = "\n".join(line for line in proc.stderr.splitlines() if "Instrumenting" not in line)[-3000:]
    assert proc.returncode == 0, f"{target}: libFuzzer found a crash, input in {tmp_path}:\n{crash}"
    assert done is not None
    assert int(done.group(1)) > 1000  # it really ran
    print(f"atheris {target}: {done.group(1)} inputs in {SECONDS} s, no crash")
