"""Proxies: tokenizer round-trip, bins, loader frequencies, population == members alone, learning, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig
from pipeline.schema import doc_id_for
from pipeline.store import DataRoot
from proxies.bins import Bins, build_bins, split_order
from proxies.loader import MixtureLoader, MixtureSchedule
from proxies.model import PopulationLM
from proxies.population import eval_windows, evaluate, train_population
from proxies.scoring import score_documents
from mixers.regmix.sampling import sample_sweep_mixtures
from proxies.sweep import load_proxy, save_proxy
from proxies.tokenizer import EOT, encode_batch, eot_id, file_sha256, load_tokenizer, save_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parent.parent
GSM8K = REPO / "examples" / "default" / "raw" / "math_gsm8k_train.jsonl"

TRICKY = [
    "plain ascii text, with punctuation!",
    "  leading and trailing spaces  \n\n\ttabs\r\nCRLF",
    "Unicode: naïve café, Ελληνικά, 日本語のテキスト, emoji 🤖🧪, combining e\u0301",
    "zero-width\u200bjoiner and \x00 NUL and \x7f DEL",
    "<|endoftext|> is only special when added as a special token",
    "",
]


def tiny_train(**overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, eval_tokens=256, compile=False, device="cpu")
    return TrainConfig(**(base | overrides))


TINY_MODEL = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, seq_len=16)


def write_stage(root: DataRoot, stage: str, docs_by_domain: dict[str, list[str]]) -> None:
    for domain, texts in docs_by_domain.items():
        n = len(texts)
        frame = pl.DataFrame({
            "doc_id": [doc_id_for(t) for t in texts], "domain": [domain] * n, "source": ["s"] * n,
            "source_file": ["f"] * n, "source_row": list(range(n)), "text": texts,
            "n_bytes": [len(t.encode()) for t in texts], "n_chars": [len(t) for t in texts],
        })
        with root.write_domain(stage, domain) as tmp:
            (tmp / "data").mkdir()
            frame.write_parquet(tmp / "data" / "part-0.parquet")


@pytest.fixture(scope="module")
def gsm_texts() -> list[str]:
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:1500]]
    return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]


@pytest.fixture(scope="module")
def tokenizer(gsm_texts):
    return train_tokenizer(gsm_texts[:600] + TRICKY, vocab_size=400, min_frequency=2)


def test_tokenizer_round_trips_exactly(tokenizer, tmp_path):
    unseen = ["Völlig unbekannter Text — mit Gedankenstrich", "def f(x):\n    return x ** 2  # 🐍", "\U0001F600" * 3]
    for text in TRICKY + unseen:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert eot_id(tokenizer) == 0 and tokenizer.token_to_id(EOT) == 0
    sha = save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    assert sha == file_sha256(tmp_path / "tokenizer.json") and len(sha) == 64
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode(TRICKY[2]).ids == tokenizer.encode(TRICKY[2]).ids
    assert 300 < tokenizer.get_vocab_size() <= 400


def test_bins_sizes_and_split(tokenizer, tmp_path, gsm_texts):
    root = DataRoot(tmp_path / "data")
    docs = {"math": gsm_texts[:200], "tiny": ["only one document here"], "misc": TRICKY[:5] + gsm_texts[200:230]}
    write_stage(root, "pruned", docs)
    targets = [("probe", ["a target text", "another one"])]
    meta = build_bins(root, "pruned", list(docs), tmp_path / "bins", tokenizer=tokenizer, tokenizer_sha256="x",
                      validation_fraction=0.1, seed=7, targets=targets)
    bins = Bins.open(tmp_path / "bins")
    assert bins.domains == ["math", "tiny", "misc"] and bins.train["math"].dtype == np.uint16
    for domain, texts in docs.items():
        table = pl.read_parquet(tmp_path / "bins" / f"domain={domain}" / "docs.parquet")
        encoded = dict(zip([doc_id_for(t) for t in texts], encode_batch(tokenizer, texts)))
        val = table.filter(pl.col("split") == "val")
        train = table.filter(pl.col("split") == "train")
        assert set(val["doc_id"]).isdisjoint(train["doc_id"])
        assert table.height == len(texts)
        expected_val = 0 if len(texts) < 2 else max(1, round(0.1 * len(texts)))
        assert val.height == expected_val
        for split, part in (("train", train), ("val", val)):
            array = getattr(bins, split)[domain]
            assert len(array) == sum(len(encoded[d]) + 1 for d in part["doc_id"]) == meta["domains"][domain][f"{split}_tokens"]
            for doc_id, offset, n in part.select("doc_id", "offset", "n_tokens").iter_rows():
                assert np.array_equal(array[offset : offset + n], encoded[doc_id]) and array[offset + n] == bins.eot
    assert len(bins.targets["probe"]) == sum(len(x) + 1 for x in encode_batch(tokenizer, targets[0][1]))
    # A cap on train tokens keeps whole documents only; the validation split does not move.
    build_bins(root, "pruned", ["math"], tmp_path / "capped", tokenizer=tokenizer, tokenizer_sha256="x",
               validation_fraction=0.1, seed=7, max_train_tokens=2000)
    capped = Bins.open(tmp_path / "capped")
    assert 1500 < len(capped.train["math"]) <= 2000 and np.array_equal(capped.val["math"], bins.val["math"])


def test_bins_order_documents_by_split_order_across_shards(tokenizer, tmp_path, gsm_texts, monkeypatch):
    from proxies import bins as bins_module

    monkeypatch.setattr(bins_module, "SHARD_BYTES", 1)  # one shard per row group
    root = DataRoot(tmp_path / "data")
    texts = gsm_texts[:300]
    write_stage(root, "pruned", {"math": texts})
    part = root.data_files("pruned", ["math"])[0]
    pl.read_parquet(part).write_parquet(part, row_group_size=23)
    build_bins(root, "pruned", ["math"], tmp_path / "bins", tokenizer=tokenizer, tokenizer_sha256="x",
               validation_fraction=0.1, seed=7)
    ids = [doc_id_for(t) for t in texts]
    table = pl.read_parquet(tmp_path / "bins" / "domain=math" / "docs.parquet")
    assert table["doc_id"].to_list() == [ids[i] for i in split_order(ids, 7)]
    assert table["split"].to_list() == ["val"] * 30 + ["train"] * 270


def test_bins_check_finds_shared_documents_and_wrong_sizes(tokenizer, tmp_path, gsm_texts):
    from proxies.bins import check_split_and_sizes

    root = DataRoot(tmp_path / "data")
    write_stage(root, "pruned", {"math": gsm_texts[:50]})
    build_bins(root, "pruned", ["math"], tmp_path / "bins", tokenizer=tokenizer, tokenizer_sha256="x",
               validation_fraction=0.1, seed=7)
    assert check_split_and_sizes(tmp_path / "bins").passed
    docs_path = tmp_path / "bins" / "domain=math" / "docs.parquet"
    docs = pl.read_parquet(docs_path)
    pl.concat([docs, docs.filter(pl.col("split") == "train").head(1).with_columns(split=pl.lit("val"))]).write_parquet(docs_path)
    outcome = check_split_and_sizes(tmp_path / "bins")
    assert not outcome.passed
    assert outcome.metadata["problems"].splitlines()[0] == "math: 1 documents in both train and validation"
    assert outcome.metadata["problems"].splitlines()[1].startswith("math/val: ")


def test_loader_frequencies_match_mixture():
    arrays = [np.full(1000, j, dtype=np.uint16) for j in range(4)] + [np.arange(5, dtype=np.uint16)]
    mixture = np.array([0.5, 0.3, 0.15, 0.0, 0.05])
    loader = MixtureLoader(arrays, MixtureSchedule.constant(mixture), batch_size=32, seq_len=8, seed=3)
    counts = np.zeros(5)
    for step in range(300):
        batch = loader.batch(step)
        dom = loader.domains_at(step)[1]
        counts += np.bincount(dom, minlength=5)
        assert batch.shape == (32, 9)
        short = batch[dom == 4]
        assert ((short - short[:, :1]) % 5 == np.arange(9) % 5).all()  # the short domain wraps around
    freq = counts / counts.sum()
    se = np.sqrt(mixture * (1 - mixture) / counts.sum())
    assert (np.abs(freq - mixture) <= 4 * se + 1e-12).all() and counts[3] == 0
    assert np.array_equal(loader.batch(5), MixtureLoader(arrays, MixtureSchedule.constant(mixture), batch_size=32,
                                                         seq_len=8, seed=3).batch(5))
    schedule = MixtureSchedule(starts=(0, 10), weights=np.array([[1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0]]))
    switching = MixtureLoader(arrays, schedule, batch_size=16, seq_len=8, seed=0)
    assert (switching.batch(9) == 0).all() and (switching.batch(10) == 2).all()
    assert np.allclose(schedule.average(20), [0.5, 0, 0.5, 0, 0])


def random_bins(n_domains: int = 3, vocab: int = 97, seed: int = 0) -> Bins:
    rng = np.random.default_rng(seed)
    # Each domain a different token distribution, so mixtures matter.
    train, val = {}, {}
    for j in range(n_domains):
        probs = rng.dirichlet(np.full(vocab, 0.1))
        train[f"d{j}"] = rng.choice(vocab, size=3000, p=probs).astype(np.uint16)
        val[f"d{j}"] = rng.choice(vocab, size=400, p=probs).astype(np.uint16)
    return Bins(vocab_size=vocab, eot=0, domains=list(train), train=train, val=val,
                targets={"t": rng.integers(0, vocab, 300).astype(np.uint16)})


def test_population_equals_members_alone():
    bins = random_bins()
    config = ProxiesConfig(model=TINY_MODEL, train=tiny_train(eval_at=[3]))
    mixtures = np.array([[0.6, 0.3, 0.1], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]])
    seeds = [11, 12, 11]
    together = train_population(bins, mixtures, config, seeds)
    assert together.height == 6 and sorted(set(together["step"])) == [3, 6]
    loss_cols = [c for c in together.columns if c.startswith("loss_") or c == "train_loss"]
    for i in range(3):
        alone = train_population(bins, mixtures[i : i + 1], config, seeds[i])
        mine = together.filter(pl.col("member") == i)
        np.testing.assert_allclose(mine.select(loss_cols).to_numpy(), alone.select(loss_cols).to_numpy(), rtol=0, atol=2e-4)
    # The members really differ (mixtures and seeds matter), so the check above is not vacuous.
    final = together.filter(pl.col("step") == 6)
    assert final["loss_d2"].std() > 1e-2
    assert np.allclose(final.select("w_d0", "w_d1", "w_d2").to_numpy(), mixtures)
    # Chunked training (one member per chunk) gives the same table.
    chunked = train_population(bins, mixtures, ProxiesConfig(model=TINY_MODEL, train=tiny_train(eval_at=[3], population_chunk=1)), seeds)
    np.testing.assert_allclose(chunked.select(loss_cols).to_numpy(), together.select(loss_cols).to_numpy(), atol=2e-4)


def test_loss_decreases_on_real_text(tokenizer, gsm_texts, tmp_path):
    root = DataRoot(tmp_path / "data")
    write_stage(root, "pruned", {"math": gsm_texts[:900]})
    build_bins(root, "pruned", ["math"], tmp_path / "bins", tokenizer=tokenizer, tokenizer_sha256="x",
               validation_fraction=0.1, seed=0)
    bins = Bins.open(tmp_path / "bins")
    model = ModelConfig(n_layers=1, d_model=64, n_heads=2, d_ff=128, seq_len=64)
    config = ProxiesConfig(model=model, train=tiny_train(steps=80, batch_size=8, lr=1e-2, warmup_steps=5,
                                                          eval_at=[1], eval_tokens=2048))
    results = train_population(bins, np.array([[1.0]]), config, 0)
    first, last = results["loss_math"].to_list()
    assert first > np.log(bins.vocab_size) - 0.5  # untrained: about uniform over the vocabulary
    assert last < first - 1.5, (first, last)


def test_scoring_matches_direct_loss(tmp_path):
    torch.manual_seed(0)
    model = PopulationLM(TINY_MODEL, 50, n_members=1)
    model.init_members([5])
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 50, size=n) for n in (5, 16, 40, 0, 3)]
    loss, n_tokens = score_documents(model, docs, bos=0, batch_tokens=64)
    assert list(n_tokens) == [5, 16, 40, 0, 3] and np.isnan(loss[3])
    for doc, value in zip(docs, loss):
        if len(doc) == 0:
            continue
        windows, mask = eval_windows(np.concatenate([[0], doc]), TINY_MODEL.seq_len, 10**6)
        assert value == pytest.approx(float(evaluate(model, windows, mask, device=torch.device("cpu"))[0]), abs=1e-5)
        alone, _ = score_documents(model, [doc], bos=0)
        assert alone[0] == pytest.approx(value, abs=1e-5)
    save_proxy(tmp_path / "p", model, 0, extra={"note": "x"})
    again, meta = load_proxy(tmp_path / "p")
    assert meta["note"] == "x" and np.allclose(score_documents(again, docs[:3], bos=0)[0], loss[:3])


def test_sweep_mixtures_respect_bounds_and_the_strength_range():
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    mixtures, sampler = sample_sweep_mixtures(prior, 64, seed=1)
    assert sampler == "mixers.regmix.sample_mixtures"
    assert mixtures.shape == (64, 4) and np.allclose(mixtures.sum(1), 1)
    assert (mixtures <= np.minimum(15 * prior, 1) + 1e-9).all()
    assert np.array_equal(mixtures, sample_sweep_mixtures(prior, 64, seed=1)[0])
    assert len({tuple(np.round(m, 6)) for m in mixtures}) == 64
    # Higher strengths (the sweep's min_strength/max_strength) give fewer zero weights: the interior.
    dense, _ = sample_sweep_mixtures(prior, 64, seed=1, min_strength=5.0, max_strength=50.0)
    assert (dense == 0).mean() < (mixtures == 0).mean()


def test_chunking_and_lr_schedule():
    from proxies.population import chunk_sizes, lr_at

    assert chunk_sizes(32, 15) == [8, 8, 8, 8] and chunk_sizes(37, 15) == [13, 12, 12] and chunk_sizes(3, 16) == [3]
    for n, limit in ((1, 1), (7, 3), (64, 64), (100, 9)):
        sizes = chunk_sizes(n, limit)
        assert sum(sizes) == n and max(sizes) <= limit and len(set(sizes)) <= 2
    constant = TrainConfig(lr=1.0, warmup_steps=4, steps=10, min_lr_ratio=1.0)
    assert [lr_at(s, constant) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]
    cosine = TrainConfig(lr=1.0, warmup_steps=0, steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cosine) == pytest.approx(1.0) and lr_at(10, cosine) == pytest.approx(0.1)
