"""The one byte-bounded text reader (pipeline.engine.parts.text_batches) and the tokenizing stages that use it:
what a stage tokenizes at once is bounded by bytes of text, not by a number of documents or a whole domain."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engine import ShardTask
from pipeline.engine.parts import text_batches
from proxies.tokenizer import train_tokenizer

WORDS = ["the", "river", "stone", "of", "and", "quiet", "morning", "light", "over", "field"]


def _texts(n: int, seed: int, *, lo: int = 200, hi: int = 6_000) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.randint(lo, hi)
        words: list[str] = []
        while sum(map(len, words)) + len(words) < size:
            words.append(rng.choice(WORDS))
        out.append(" ".join(words))
    return out


def _write(path, texts: list[str], *, start: int, row_group_size: int) -> None:
    pq.write_table(pa.table({"doc_id": [f"d{start + i:05d}" for i in range(len(texts))], "text": texts}), path,
                   row_group_size=row_group_size)


def test_batches_span_files_and_row_groups_within_the_budget(tmp_path):
    first = _texts(300, 1) + ["x" * 40_000]  # one document larger than the budget
    second = _texts(200, 2)
    _write(tmp_path / "a.parquet", first, start=0, row_group_size=70)
    _write(tmp_path / "b.parquet", second, start=len(first), row_group_size=45)
    pieces = [(tmp_path / "a.parquet", [0, 1, 2, 3, 4]), (tmp_path / "b.parquet", None)]
    batches = list(text_batches(pieces, columns=["doc_id", "text"], batch_bytes=20_000))

    ids = [i for b in batches for i in b.column("doc_id").to_pylist()]
    assert ids == [f"d{i:05d}" for i in range(len(first) + len(second))]  # every row, in order, once
    sizes = [sum(len(t.encode()) for t in b.column("text").to_pylist()) for b in batches]
    big = [s for s, b in zip(sizes, batches) if b.num_rows == 1 and s > 20_000]
    assert big == [40_000]  # the large document travels alone
    assert all(s <= 20_000 for s in sizes if s != 40_000)
    # greedy: a batch ends only where the next document would not fit
    texts = [len(t.encode()) for b in batches for t in b.column("text").to_pylist()]
    cut = np.cumsum([b.num_rows for b in batches])[:-1]
    assert all(sizes[k] + texts[c] > 20_000 for k, c in enumerate(cut))
    assert len({b.num_rows for b in batches}) > 1  # not a fixed number of rows


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(_texts(200, 3), vocab_size=300)


def test_token_bins_tokenize_at_most_the_byte_budget_per_call(tmp_path, tokenizer, monkeypatch):
    from proxies import bins

    texts = _texts(600, 4)  # ~1.9 MB in one row group: 256 documents per call would be ~0.8 MB
    _write(tmp_path / "part.parquet", texts, start=0, row_group_size=len(texts))
    stage = bins.TokenBinsStage(root=None, stage="pruned", domains=["d"], out_dir=tmp_path / "bins",
                                tokenizer_json=tokenizer.to_str(), tokenizer_sha256="-", validation_fraction=0.1,
                                seed=7)
    task = ShardTask(key="d-0", inputs=(str(tmp_path / "part.parquet"),), settings={"domain": "d", "row_groups": [0]},
                     seed=7)
    calls: list[int] = []
    real = bins.encode_batch

    def counting(tok, batch):
        calls.append(sum(len(t.encode()) for t in batch))
        return real(tok, batch)

    monkeypatch.setattr(bins, "TOKENIZE_BATCH_BYTES", 200_000)
    monkeypatch.setattr(bins, "encode_batch", counting)
    out = tmp_path / "shard"
    out.mkdir()
    assert stage.run_shard(task, out)["docs"] == len(texts)
    assert len(calls) > 5 and max(calls) <= 200_000
    # the same tokens as one call over every document
    eot = 0
    expected = np.concatenate([np.append(ids, eot) for ids in real(tokenizer, texts)]).astype(np.uint16)
    assert np.array_equal(np.fromfile(out / "tokens.bin", dtype=np.uint16), expected)


def test_token_cache_tokenizes_at_most_the_byte_budget_per_call(tmp_path, tokenizer, monkeypatch):
    from pipeline.emission import tokencache

    texts = _texts(300, 5)
    _write(tmp_path / "a.parquet", texts[:170], start=0, row_group_size=40)
    _write(tmp_path / "b.parquet", texts[170:], start=170, row_group_size=1000)
    calls: list[int] = []
    real = tokencache._encode

    def counting(tok, batch, dtype):
        calls.append(sum(len(t.encode()) for t in batch))
        return real(tok, batch, dtype)

    monkeypatch.setattr(tokencache, "_encode", counting)
    cache = tokencache.build_domain_cache("d", [tmp_path / "a.parquet", tmp_path / "b.parquet"],
                                          cache_root=tmp_path / "cache", tokenizer=tokenizer, dtype=np.dtype("uint16"),
                                          fp="test", batch_bytes=50_000)
    assert len(calls) > 5 and max(calls) <= 50_000  # before: the budget plus the document that crossed it
    assert cache.documents == len(texts)
    ids = [np.asarray(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert np.array_equal(np.asarray(cache.tokens), np.concatenate(ids))
    assert cache.doc_text(123) == texts[123]
