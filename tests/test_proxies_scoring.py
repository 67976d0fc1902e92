"""Difficulty scoring with a bounded token budget per document, streamed into one Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.store import DataRoot
from proxies.model import PopulationLM
from proxies.scoring import ScoreBudget, budget_excerpts, encode_prefixes, score_documents, score_excerpts, score_stage
from proxies.tokenizer import encode_batch, train_tokenizer
from tests.test_proxies import TINY_MODEL, gsm_texts, tokenizer, write_stage  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
GO = REPO / "examples" / "default" / "raw" / "code_go_stdlib.parquet"


@pytest.fixture(scope="module")
def go_texts() -> list[str]:
    return pl.read_parquet(GO, columns=["content"])["content"].to_list()  # 50 Go files


@pytest.fixture(scope="module")
def go_tokenizer(go_texts):
    return train_tokenizer(go_texts[:60], vocab_size=600, min_frequency=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = PopulationLM(TINY_MODEL, 600, n_members=1)
    m.init_members([3])
    return m


def test_prefixes_equal_the_full_texts_first_tokens(go_tokenizer, go_texts):
    # Code: long runs of symbols and whitespace, where a cut in the middle of a word matters most.
    full = encode_batch(go_tokenizer, go_texts)
    for tokens in (1, 37, 300):
        prefixes = encode_prefixes(go_tokenizer, go_texts, tokens)
        assert all(np.array_equal(p, f[:tokens]) for p, f in zip(prefixes, full))
    # A text whose first characters hold few tokens (one long word) makes the cut grow until it is sure.
    odd = ["=" * 5000 + " tail words here", "short"]
    assert all(np.array_equal(p, f[:20]) for p, f in zip(encode_prefixes(go_tokenizer, odd, 20),
                                                          encode_batch(go_tokenizer, odd)))


def test_short_documents_score_exactly_as_all_and_long_ones_within_budget(model, go_tokenizer, go_texts):
    go_texts = go_texts + ["func f() {}", "// a short comment", "x := 1\ny := 2\n", ""]
    ids = [f"d{i}" for i in range(len(go_texts))]
    full = encode_batch(go_tokenizer, go_texts)
    everything = score_excerpts(model, budget_excerpts(go_tokenizer, ids, go_texts, ScoreBudget(), 16), bos=0)
    assert np.array_equal(everything[1], [len(f) for f in full])
    for mode in ("prefix", "windows"):
        budget = ScoreBudget(40, mode, seed=1)
        loss, n = score_excerpts(model, budget_excerpts(go_tokenizer, ids, go_texts, budget, 16), bos=0)
        short = np.array([len(f) <= 40 for f in full])
        assert short.any() and (~short).any()
        assert np.array_equal(loss[short], everything[0][short], equal_nan=True)
        assert np.array_equal(n[short], everything[1][short])
        # windows: ceil(40 / 16) = 3 excerpts of 14 tokens
        assert (n[~short] == (40 if mode == "prefix" else 42)).all()
    prefix, _ = score_excerpts(model, budget_excerpts(go_tokenizer, ids, go_texts, ScoreBudget(40, "prefix"), 16), bos=0)
    direct, _ = score_documents(model, [f[:40] for f in full], bos=0)
    assert np.array_equal(prefix, direct, equal_nan=True)


def test_windows_depend_on_the_document_and_seed_only(go_tokenizer, go_texts):
    ids = [f"d{i}" for i in range(len(go_texts))]
    budget = ScoreBudget(48, "windows", seed=7)
    together = budget_excerpts(go_tokenizer, ids, go_texts, budget, 16)
    reversed_ = budget_excerpts(go_tokenizer, ids[::-1], go_texts[::-1], budget, 16)[::-1]
    alone = [budget_excerpts(go_tokenizer, [i], [t], budget, 16)[0] for i, t in zip(ids[:10], go_texts[:10])]
    for a, b in zip(together, reversed_):
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for a, b in zip(together[:10], alone):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = budget_excerpts(go_tokenizer, ids, go_texts, ScoreBudget(48, "windows", seed=8), 16)
    long_docs = [i for i, e in enumerate(together) if len(e) == 3]
    assert long_docs and any(not np.array_equal(together[i][1], other[i][1]) for i in long_docs)
    # Excerpts come from along the document: the third one from the last third of the possible starts.
    for i in long_docs:
        text, piece = go_texts[i], go_tokenizer.decode(together[i][2].tolist())
        lowest = 2 * (len(text) - 16 * 8) // 3
        assert text.find(piece, lowest) != -1 and text.find(piece) >= lowest - 1 or text.count(piece) > 1


def test_score_stage_streams_into_one_file_in_stage_order(tmp_path, model, go_tokenizer, go_texts, gsm_texts):
    root = DataRoot(tmp_path / "data")
    write_stage(root, "curated", {"code": go_texts, "math": gsm_texts[:50] + [""]})
    out = tmp_path / "scores" / "scores.parquet"
    budget = ScoreBudget(64, "prefix")
    summary = score_stage(root, "curated", ["code", "math"], model=model, tokenizer=go_tokenizer, bos=0, out=out,
                          budget=budget, batch_docs=7, device=torch.device("cpu"))
    scores = pl.read_parquet(out)
    assert scores.columns == ["doc_id", "domain", "loss", "n_tokens"]
    assert scores["doc_id"].to_list() == root.scan("curated", ["code", "math"]).collect()["doc_id"].to_list()
    assert pq.ParquetFile(out).num_row_groups == -(-len(go_texts) // 7) + -(-51 // 7)  # one row group per batch
    assert summary["code"]["docs"] == len(go_texts) and summary["math"]["docs"] == 51
    assert scores["loss"].is_nan().sum() == 1 and scores["n_tokens"].max() == 64
    assert summary["math"]["mean_loss"] == round(scores.filter(pl.col("domain") == "math")["loss"].fill_nan(None).mean(), 3)
    one_batch = tmp_path / "one.parquet"
    score_stage(root, "curated", ["code", "math"], model=model, tokenizer=go_tokenizer, bos=0, out=one_batch,
                budget=budget, batch_docs=1000)
    assert np.allclose(pl.read_parquet(one_batch)["loss"].to_numpy(), scores["loss"].to_numpy(), equal_nan=True, atol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.parquet"]


def test_a_failed_scoring_leaves_no_file(tmp_path, model, go_tokenizer, go_texts, monkeypatch):
    root = DataRoot(tmp_path / "data")
    write_stage(root, "curated", {"code": go_texts})
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed mid-way")
        return score_excerpts(*args, **kwargs)

    monkeypatch.setattr("proxies.scoring.score_excerpts", failing)
    out = tmp_path / "scores" / "scores.parquet"
    with pytest.raises(RuntimeError, match="mid-way"):
        score_stage(root, "curated", ["code"], model=model, tokenizer=go_tokenizer, bos=0, out=out,
                    budget=ScoreBudget(32), batch_docs=10)
    assert list(out.parent.iterdir()) == []


def test_budget_settings_are_checked():
    assert ScoreBudget.of("all").tokens is None and ScoreBudget.of(128, "windows").excerpts(64) == 2
    with pytest.raises(ValueError):
        ScoreBudget(0)
    with pytest.raises(ValueError):
        ScoreBudget(10, "middle")
