"""The benchmark suite still runs end to end (quick mode). Figures are not asserted: benchmarks are not tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_quick_mode_writes_a_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,  # the LLM section reuses llama-server from `make test`'s build; a loaded box is slow
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mode"] == "quick"
    assert report["embeddings"]["sentences_per_s"]["tursi_8clients_x4"] > 0
    assert set(report["embeddings"]["ratios"]) >= {"tursi_8clients_vs_fp32_inprocess", "tursi_8clients_vs_raw_ort"}
    assert report["quality"]["heldout_texts"] >= 100
    assert report["quality"]["texts_per_s"]["int8"] > 0
    assert 0.9 < report["quality"]["ratios"]["min_cosine"] <= 1.0
    assert report["llm"]["tursi"]["decode_tok_s"] > 0
    neighbours = report["llm"]["neighbour_cost"]  # issue 28's defect 11, measured each run
    assert set(neighbours["beside_s"]) == {"plain", "dates", "enum"}
    assert min(neighbours["neighbour_tokens"].values()) > 0
    assert report["gateway"]["embeddings_per_s"]["gateway"] > 0
    assert set(report["gateway"]["ratios"]) == {
        "gateway_vs_direct_embeddings",
        "gateway_vs_direct_llm_tokens",
        "replicas2_vs_1_embeddings",
    }
    assert report["footprint"]["tursid_idle"]["rss_bytes_max"] > 0
    assert set(report["micro"]) == {
        "test_rate_limiter_check",
        "test_tokenize_and_pool_32",
        "test_request_path_decode_and_encode",
    }
    md = (tmp_path / "report.md").read_text()
    assert "| goal | figure | target | met |" in md
