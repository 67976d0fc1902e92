"""The prepared GPU check (bench/bench_gpu.py) runs end to end on the CPU at tiny sizes and writes its JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.run import RESULTS, main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU path even where a GPU is present
    before = sorted(p.name for p in RESULTS.glob("*.json"))
    assert main(["gpu", "--quick", "--results", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "gpu.json").read_text())
    assert sorted(p.name for p in RESULTS.glob("*.json")) == before  # the repository's results are untouched
    assert record["benchmark"] == "gpu" and record["machine"]["cores"] >= 1 and record["quick"] is True
    f = record["figures"]
    assert f["mode"] == "quick" and f["device"] == "cpu" and "not GPU figures" in f["note"]
    assert "not GPU figures" in record["summary"]
    sizes = f["sizes"]
    assert f["population"]["members"] == sizes["members"] and f["population"]["tokens_per_s_per_member"] > 0
    assert f["sequential"]["members"] == 1 and f["population_speedup_per_member"] > 0
    precision = f["precision"]
    assert precision["members"] == sizes["precision_members"] and len(precision["domains"]) >= 5
    for losses in (precision["fp32"], precision["bf16"]):
        assert all(math.isfinite(v) and 0 < v < 10 for values in losses.values() for v in values)
    # bf16 autocast really ran (on the CPU): the losses differ, a little.
    assert 0 < precision["max_relative_difference"] < 0.1
    scoring = f["scoring"]
    assert scoring["model_device"] == "cpu" and scoring["docs"] == sizes["score_docs"]
    assert scoring["all_fp32"]["tokens_scored"] > scoring["default_fp32"]["tokens_scored"] > 0
    assert scoring["spearman_bf16_vs_fp32"] > 0.9
    assert f["embedding"]["docs"] == sizes["embed_docs"] and f["embedding"]["docs_per_s"] > 0
    kmeans = f["kmeans"]
    assert kmeans["vectors"] == sizes["kmeans_vectors"] and kmeans["k"] == sizes["kmeans_k"] and kmeans["seconds"] > 0
    assert f["errors"] == {}
    assert set(f["phase_seconds"]) == {"stage_example", "tokenizer", "population", "precision", "scoring",
                                       "embedding", "kmeans"}
