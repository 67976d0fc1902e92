"""Token bins: per-domain train and validation token arrays, plus optional target sets.

Layout under a bins folder (``<root>/token_bins`` for the sweep, ``<root>/reference_proxy/bins`` for SeTa)::

    meta.json                      vocab size, dtype, EOT id, tokenizer sha256, per-domain counts
    domain=<d>/train.bin           documents' tokens, each followed by EOT, raw little-endian ``dtype``
    domain=<d>/val.bin             the held-out documents, same layout
    domain=<d>/docs.parquet        doc_id, split ("train" | "val"), offset, n_tokens (without the EOT)
    target=<name>/val.bin          a target set (e.g. ../shared/eval texts) tokenized the same way

The validation split is by *document* (nanoGPT splits a token stream; a document must not straddle the split):
each domain's documents are ordered by a seeded hash of their ``doc_id`` and the first
``max(min_validation_docs, round(fraction * n))`` go to validation (at least one stays in train). The same
order decides which train documents survive ``max_train_tokens``. Arrays are read back memory-mapped. Built as a
sharded stage (``TokenBinsStage``): each worker tokenizes one Parquet part a batch at a time; the global step
orders each domain's document index in DuckDB on disk and copies tokens in that order a batch at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from pipeline.config.proxies import TargetSetConfig
from pipeline.engine.parts import parquet_row_group_runs, spilling_duckdb, text_batches
from pipeline.config.execution import ExecutionConfig
from pipeline.engine import ShardTask, run_stage, shard_dir
from pipeline.engine.outcome import CheckOutcome, StageOutcome, Table
from pipeline.store import DataRoot, atomic_dir, file_sha256, write_json
from pipeline.diskspace import longest_token_bytes, min_token_bytes, require_free
from proxies.tokenizer import encode_batch, eot_id, load_tokenizer, token_dtype

META = "meta.json"


@dataclass
class Bins:
    """Token arrays by domain (train/val) and by target name; ``domains`` fixes the column order everywhere."""

    vocab_size: int
    eot: int
    domains: list[str]
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Bins":
        path = Path(path)
        meta = json.loads((path / META).read_text())
        dtype = np.dtype(meta["dtype"])

        def load(p: Path) -> np.ndarray:
            if p.stat().st_size == 0:
                return np.zeros(0, dtype=dtype)
            return np.memmap(p, dtype=dtype, mode="r")

        domains = list(meta["domain_order"])  # meta.json's mappings are key-sorted; this is the spec's order
        return cls(
            vocab_size=meta["vocab_size"], eot=meta["eot"], domains=domains,
            train={d: load(path / f"domain={d}" / "train.bin") for d in domains},
            val={d: load(path / f"domain={d}" / "val.bin") for d in domains},
            targets={t: load(path / f"target={t}" / "val.bin") for t in meta["target_order"]},
            meta=meta,
        )

    def prior(self) -> np.ndarray:
        """Each domain's share of train tokens (RegMix's prior; the 'natural' mixture)."""
        counts = np.array([len(self.train[d]) for d in self.domains], dtype=np.float64)
        if counts.sum() == 0:
            raise ValueError("the bins hold no training tokens")
        return counts / counts.sum()


def split_order(doc_ids: Sequence[str], seed: int) -> np.ndarray:
    """A permutation of ``doc_ids`` by seeded hash (stable whatever order the documents come in)."""
    keys = [hashlib.blake2b(f"{seed}:{d}".encode(), digest_size=8).digest() for d in doc_ids]
    return np.array(sorted(range(len(doc_ids)), key=keys.__getitem__), dtype=np.int64)


def n_validation(n_docs: int, fraction: float, minimum: int) -> int:
    if n_docs < 2:
        return 0
    return int(min(n_docs - 1, max(minimum, round(fraction * n_docs))))


class _BinWriter:
    """Appends documents (each followed by EOT) to a raw token file and records their offsets."""

    def __init__(self, path: Path, dtype: np.dtype, eot: int):
        self.file = open(path, "wb")
        self.dtype, self.eot, self.offset = dtype, eot, 0

    def add(self, ids: np.ndarray) -> int:
        start = self.offset
        np.append(ids, self.eot).astype(self.dtype).tofile(self.file)
        self.offset += len(ids) + 1
        return start

    def close(self) -> None:
        self.file.close()


def read_target_texts(target: TargetSetConfig, base: Path | None = None) -> list[str]:
    """Rows of a JSONL target set rendered with its template (or the ``text`` field), or a text file's paragraphs."""
    path = Path(target.path)
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.suffix == ".jsonl":
        rows = pl.read_ndjson(path, infer_schema_length=None).to_dicts()
        if target.template is None:
            if rows and "text" not in rows[0]:
                raise ValueError(f"target {target.name!r}: {path} has no 'text' field; give a template")
            texts = [r["text"] for r in rows]
        else:
            texts = [target.template.format_map(r) for r in rows]
    else:
        texts = [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return texts[: target.max_docs] if target.max_docs else texts


@dataclass
class TokenBinsStage:
    """Token bins on the stage contract. Shard = one Parquet part of one domain: it tokenizes its documents
    (a batch at a time) into ``tokens.bin`` (each document followed by EOT) and ``index.parquet`` (doc_id, its
    split-order key, n_tokens, where its tokens start). ``finish`` orders each domain's index by key in DuckDB
    (spilling past ``SORT_MEMORY``), splits it and copies the tokens into train.bin / val.bin with positioned
    reads, a batch of the ordered index at a time: it never holds a domain's index, texts or tokens."""

    root: DataRoot
    stage: str
    domains: list[str]
    out_dir: Path
    tokenizer_json: str
    tokenizer_sha256: str
    validation_fraction: float
    seed: int
    min_validation_docs: int = 1
    max_train_tokens: int | None = None
    targets: Sequence[tuple[str, list[str]]] = ()
    name: str = "token_bins"
    version: str = "token-bins-2"

    @property
    def work_dir(self) -> Path:
        return self.out_dir.with_name(f".{self.out_dir.name}.work")

    def plan(self) -> list[ShardTask]:
        # A shard is a run of row groups of one Parquet part (about SHARD_BYTES of uncompressed columns): an
        # upstream stage that writes one part per domain still tokenizes on every worker.
        return [ShardTask(key=f"{domain}-{i:05d}-{groups[0]:05d}", inputs=(str(f),),
                          settings={"domain": domain, "row_groups": groups, "tokenizer_sha256": self.tokenizer_sha256},
                          seed=self.seed)
                for domain in self.domains for i, f in enumerate(self.root.data_files(self.stage, [domain]))
                for groups in parquet_row_group_runs(f, target_bytes=SHARD_BYTES)]

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        tokenizer = _tokenizer(self.tokenizer_json)
        dtype, eot = token_dtype(tokenizer.get_vocab_size()), eot_id(tokenizer)
        writer = _BinWriter(out / "tokens.bin", dtype, eot)
        docs = 0
        with pq.ParquetWriter(out / "index.parquet", INDEX_SCHEMA) as index:
            for batch in text_batches([(task.inputs[0], task.settings["row_groups"])], columns=["doc_id", "text"],
                                      batch_bytes=TOKENIZE_BATCH_BYTES):
                ids = batch.column(0).to_pylist()
                sizes, starts = [], []
                for tokens in encode_batch(tokenizer, batch.column(1).to_pylist()):
                    starts.append(writer.add(tokens))
                    sizes.append(len(tokens))
                index.write_table(pa.table({"doc_id": ids, "key": [_order_key(task.seed, d) for d in ids],
                                            "n_tokens": sizes, "at": starts}, schema=INDEX_SCHEMA))
                docs += len(ids)
        writer.close()
        return {"domain": task.settings["domain"], "docs": docs}

    def finish(self, results: list[dict]) -> dict:
        tokenizer = _tokenizer(self.tokenizer_json)
        vocab_size = tokenizer.get_vocab_size()
        dtype, eot = token_dtype(vocab_size), eot_id(tokenizer)
        shards = [shard_dir(self, t.key) for t in self.plan()]
        meta = {"vocab_size": vocab_size, "dtype": dtype.name, "eot": eot, "tokenizer_sha256": self.tokenizer_sha256,
                "stage": self.stage, "seed": self.seed, "validation_fraction": self.validation_fraction,
                "domain_order": list(self.domains), "domains": {}, "targets": {},
                "target_order": [name for name, _ in self.targets]}
        with atomic_dir(self.out_dir) as tmp:
            for domain in self.domains:
                mine = [s for s, r in zip(shards, results) if r["domain"] == domain]
                meta["domains"][domain] = _assemble_domain(
                    tmp / f"domain={domain}", mine, dtype=dtype, fraction=self.validation_fraction,
                    minimum=self.min_validation_docs, max_train_tokens=self.max_train_tokens,
                    documents=sum(r["docs"] for r in results if r["domain"] == domain), work=self.work_dir)
            for name, texts in self.targets:
                folder = tmp / f"target={name}"
                folder.mkdir()
                writer = _BinWriter(folder / "val.bin", dtype, eot)
                for start in range(0, len(texts), 256):
                    for ids in encode_batch(tokenizer, texts[start : start + 256]):
                        writer.add(ids)
                writer.close()
                meta["targets"][name] = {"tokens": writer.offset, "docs": len(texts)}
            write_json(tmp / META, meta)
        return meta


SHARD_BYTES = 64 << 20
# Text per tokenizer call in a shard. The tokenizer's encodings cost ~150 bytes per token (~60x the text), so this,
# not the number of documents, bounds a shard's memory; 1 MiB still gives the tokenizer's threads many documents.
TOKENIZE_BATCH_BYTES = 1 << 20


_TOKENIZERS: dict[str, Tokenizer] = {}


def _tokenizer(json_text: str) -> Tokenizer:
    """One parsed tokenizer per process (workers run many shards with the same one)."""
    if json_text not in _TOKENIZERS:
        _TOKENIZERS.clear()
        _TOKENIZERS[json_text] = Tokenizer.from_str(json_text)
    return _TOKENIZERS[json_text]


def _order_key(seed: int, doc_id: str) -> int:
    # The big-endian integer of split_order's digest: sorting keys sorts digests the same way.
    return int.from_bytes(hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest(), "big")


# DuckDB's memory for ordering a domain's index (~70 bytes a document); past it the sort spills to disk.
SORT_MEMORY = "256MB"
INDEX_SCHEMA = pa.schema([("doc_id", pa.string()), ("key", pa.uint64()), ("n_tokens", pa.int64()), ("at", pa.int64())])
DOCS_SCHEMA = pa.schema([("doc_id", pa.string()), ("split", pa.string()), ("offset", pa.int64()), ("n_tokens", pa.int64())])


def _assemble_domain(folder: Path, shards: list[Path], *, dtype: np.dtype, fraction: float, minimum: int,
                     max_train_tokens: int | None, documents: int, work: Path) -> dict:
    """train.bin / val.bin / docs.parquet of one domain from its tokenized shards, in split order.

    DuckDB sorts the shards' indexes by key (ties: shard, then row: the staged order, like ``split_order``) on disk
    under a memory limit; the sorted index is then read a batch at a time, so memory does not grow with the
    domain's documents."""
    folder.mkdir(parents=True)
    spill = work / f"sort-{folder.name}"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    sorted_index = spill / "sorted.parquet"
    try:
        with spilling_duckdb(spill, memory_limit=SORT_MEMORY) as con:
            if shards:
                con.execute("CREATE TABLE shard_files (filename VARCHAR, shard INTEGER)")
                con.executemany("INSERT INTO shard_files VALUES (?, ?)",
                                [(str(s / "index.parquet"), i) for i, s in enumerate(shards)])
                con.execute("CREATE TABLE idx AS SELECT * FROM read_parquet($files, filename = true, file_row_number = true)",
                            {"files": [str(s / "index.parquet") for s in shards]})
                quoted = str(sorted_index).replace("'", "''")
                con.execute(f"""
                    COPY (
                      SELECT i.doc_id, i.n_tokens, f.shard, i.at FROM idx AS i JOIN shard_files AS f USING (filename)
                      ORDER BY i.key, f.shard, i.file_row_number
                    ) TO '{quoted}' (FORMAT parquet)
                """)
        return _copy_in_split_order(folder, shards, sorted_index if shards else None, dtype=dtype,
                                    n_val=n_validation(documents, fraction, minimum), max_train_tokens=max_train_tokens)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _copy_in_split_order(folder: Path, shards: list[Path], sorted_index: Path | None, *, dtype: np.dtype, n_val: int,
                         max_train_tokens: int | None) -> dict:
    """Copy each document's tokens (and its EOT) from its shard into train.bin or val.bin, in the sorted order: the
    first ``n_val`` to validation; a train document that would pass ``max_train_tokens`` is left out."""
    files = [open(s / "tokens.bin", "rb") for s in shards]
    outs = {"train": open(folder / "train.bin", "wb"), "val": open(folder / "val.bin", "wb")}
    size = {"train": 0, "val": 0}
    docs = {"train": 0, "val": 0}
    dropped, i = 0, 0
    batches = pq.ParquetFile(sorted_index).iter_batches(batch_size=65_536) if sorted_index else []
    try:
        with pq.ParquetWriter(folder / "docs.parquet", DOCS_SCHEMA) as written:
            for batch in batches:
                rows: dict[str, list] = {"doc_id": [], "split": [], "offset": [], "n_tokens": []}
                for doc_id, n_tokens, shard, at in zip(*(batch.column(c).to_pylist()
                                                         for c in ("doc_id", "n_tokens", "shard", "at"))):
                    split = "val" if i < n_val else "train"
                    i += 1
                    if split == "train" and max_train_tokens is not None and size["train"] + n_tokens + 1 > max_train_tokens:
                        dropped += 1
                        continue
                    outs[split].write(os.pread(files[shard].fileno(), (n_tokens + 1) * dtype.itemsize, at * dtype.itemsize))
                    rows["doc_id"].append(doc_id)
                    rows["split"].append(split)
                    rows["offset"].append(size[split])
                    rows["n_tokens"].append(n_tokens)
                    size[split] += n_tokens + 1
                    docs[split] += 1
                written.write_table(pa.table(rows, schema=DOCS_SCHEMA))
    finally:
        for f in [*files, *outs.values()]:
            f.close()
    return {"train_tokens": size["train"], "val_tokens": size["val"], "train_docs": docs["train"],
            "val_docs": docs["val"], "train_docs_over_cap": dropped}


def check_split_and_sizes(path: Path) -> CheckOutcome:
    """No document in both splits; every bin holds exactly its documents' tokens plus one EOT each. (In DuckDB on
    disk: a domain's documents need not fit in memory.)"""
    bins = Bins.open(path)
    problems = []
    with tempfile.TemporaryDirectory(prefix="check-bins-") as tmp, spilling_duckdb(Path(tmp)) as con:
        for d in bins.domains:
            docs = {"docs": str(path / f"domain={d}" / "docs.parquet")}
            overlap = con.execute("SELECT count(*) FROM (SELECT doc_id FROM read_parquet($docs) WHERE split = 'train' "
                                  "INTERSECT SELECT doc_id FROM read_parquet($docs) WHERE split = 'val')", docs).fetchone()[0]
            if overlap:
                problems.append(f"{d}: {overlap} documents in both train and validation")
            expected = dict(con.execute("SELECT split, sum(n_tokens) + count(*) FROM read_parquet($docs) GROUP BY split",
                                        docs).fetchall())
            for split, array in (("train", bins.train[d]), ("val", bins.val[d])):
                if len(array) != int(expected.get(split) or 0):
                    problems.append(f"{d}/{split}: {len(array)} tokens on disk, {int(expected.get(split) or 0)} expected")
    return CheckOutcome(name="split_and_sizes", passed=not problems, metadata={"problems": "\n".join(problems) or "none"})


def bins_outcome(meta: dict, path: Path) -> StageOutcome:
    """What the `token_bins` asset shows, and its check."""
    rows = [{"domain": d, **v} for d, v in meta["domains"].items()]
    return StageOutcome(metadata={"domains": Table(rows), "targets": meta["targets"], "path": path},
                        checks=[check_split_and_sizes(path)])


def bins_bytes_at_least(root: DataRoot, stage: str, domains: list[str], tokenizer: Tokenizer, dtype: np.dtype,
                        max_train_tokens: int | None) -> int:
    """A lower bound on the bins' size: each domain's text at the most bytes per token (capped like its train bin)."""
    longest, total = longest_token_bytes(tokenizer), 0
    for domain in domains:
        frame = root.scan(stage, [domain])
        size = pl.col("n_bytes") if "n_bytes" in frame.collect_schema() else pl.col("text").str.len_bytes()
        text = int(frame.select(size.sum()).collect().item() or 0)
        bound = min_token_bytes(text, longest_token_bytes=longest, itemsize=dtype.itemsize)
        total += bound if max_train_tokens is None else min(bound, max_train_tokens * dtype.itemsize)
    return total


def build_bins(root: DataRoot, stage: str, domains: list[str], out_dir: str | os.PathLike, *, tokenizer: Tokenizer,
               tokenizer_sha256: str, validation_fraction: float, seed: int, min_validation_docs: int = 1,
               max_train_tokens: int | None = None, targets: Sequence[tuple[str, list[str]]] = (),
               progress: Callable[[str], None] | None = None, execution: ExecutionConfig | None = None) -> dict:
    """Tokenize a document stage into bins at ``out_dir`` (shards in parallel on ``execution``'s engine; the
    result is built in a temporary folder, then renamed; an interrupted run reuses its finished shards)."""
    stage_def = TokenBinsStage(
        root=root, stage=stage, domains=list(domains), out_dir=Path(out_dir), tokenizer_json=tokenizer.to_str(),
        tokenizer_sha256=tokenizer_sha256, validation_fraction=validation_fraction, seed=seed,
        min_validation_docs=min_validation_docs, max_train_tokens=max_train_tokens, targets=list(targets))
    require_free(Path(out_dir).parent, bins_bytes_at_least(root, stage, domains, tokenizer,
                                                           token_dtype(tokenizer.get_vocab_size()), max_train_tokens))
    meta = run_stage(stage_def, execution=execution, progress=progress)
    return meta


def build_token_bins(spec, *, progress: Callable[[str], None] | None = None) -> StageOutcome:
    """The `token_bins` stage: the pruned pool's bins (and the spec's target sets) for the sweeps and the mixers."""
    root, cfg = DataRoot(spec.data_root), spec.proxies
    layout = root.layout
    targets = [(t.name, read_target_texts(t, spec.path.parent)) for t in cfg.targets]
    meta = build_bins(root, "pruned", spec.domains, layout.token_bins, tokenizer=load_tokenizer(layout.tokenizer_json),
                      tokenizer_sha256=file_sha256(layout.tokenizer_json), validation_fraction=cfg.validation_fraction,
                      min_validation_docs=cfg.min_validation_docs, max_train_tokens=cfg.max_train_tokens_per_domain,
                      seed=spec.seed_for("token_bins"), targets=targets, progress=progress, execution=spec.execution)
    return bins_outcome(meta, layout.token_bins)


__all__ = ["Bins", "TokenBinsStage", "build_bins", "build_token_bins", "bins_outcome", "check_split_and_sizes", "split_order", "n_validation", "read_target_texts", "META"]
