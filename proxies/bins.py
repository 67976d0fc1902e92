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
copies tokens in split order and holds only each domain's document index, never texts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from pipeline.config.proxies import TargetSetConfig
from pipeline.engine.parts import parquet_row_group_runs, text_batches
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
    split-order key, n_tokens). ``finish`` orders each domain's documents by key, splits them and copies their
    tokens into train.bin / val.bin with positioned reads: it holds the domain's index (ids and sizes, about
    50 bytes per document), never its texts or tokens."""

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
    version: str = "token-bins-1"

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
        ids: list[str] = []
        keys: list[int] = []
        sizes: list[int] = []
        for batch in text_batches([(task.inputs[0], task.settings["row_groups"])], columns=["doc_id", "text"],
                                  batch_bytes=TOKENIZE_BATCH_BYTES):
            batch_ids = batch.column(0).to_pylist()
            for tokens in encode_batch(tokenizer, batch.column(1).to_pylist()):
                writer.add(tokens)
                sizes.append(len(tokens))
            ids.extend(batch_ids)
            keys.extend(_order_key(task.seed, d) for d in batch_ids)
        writer.close()
        pl.DataFrame({"doc_id": ids, "key": keys, "n_tokens": sizes},
                     schema={"doc_id": pl.String, "key": pl.UInt64, "n_tokens": pl.Int64}).write_parquet(out / "index.parquet")
        return {"domain": task.settings["domain"], "docs": len(ids)}

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
                    tmp / f"domain={domain}", mine, dtype=dtype, eot=eot, fraction=self.validation_fraction,
                    minimum=self.min_validation_docs, max_train_tokens=self.max_train_tokens)
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


def _assemble_domain(folder: Path, shards: list[Path], *, dtype: np.dtype, eot: int, fraction: float,
                     minimum: int, max_train_tokens: int | None) -> dict:
    """train.bin / val.bin / docs.parquet of one domain from its tokenized shards, in split order."""
    folder.mkdir(parents=True)
    index = pl.concat([pl.read_parquet(s / "index.parquet").with_columns(pl.lit(i, pl.Int32).alias("shard"))
                       for i, s in enumerate(shards)]) if shards else \
        pl.DataFrame(schema={"doc_id": pl.String, "key": pl.UInt64, "n_tokens": pl.Int64, "shard": pl.Int32})
    # Where each document's tokens (and its EOT) start in its shard's tokens.bin.
    index = index.with_columns(
        ((pl.col("n_tokens") + 1).cum_sum().over("shard") - pl.col("n_tokens") - 1).alias("at"))
    order = np.argsort(index["key"].to_numpy(), kind="stable")  # ties keep the staged order, like split_order
    index = index[order]
    n_val = n_validation(index.height, fraction, minimum)
    files = [open(s / "tokens.bin", "rb") for s in shards]
    outs = {"train": open(folder / "train.bin", "wb"), "val": open(folder / "val.bin", "wb")}
    size = {"train": 0, "val": 0}
    rows: dict[str, list] = {"doc_id": [], "split": [], "offset": [], "n_tokens": []}
    dropped = 0
    try:
        for i, (doc_id, n_tokens, shard, at) in enumerate(index.select("doc_id", "n_tokens", "shard", "at").iter_rows()):
            split = "val" if i < n_val else "train"
            if split == "train" and max_train_tokens is not None and size["train"] + n_tokens + 1 > max_train_tokens:
                dropped += 1
                continue
            outs[split].write(os.pread(files[shard].fileno(), (n_tokens + 1) * dtype.itemsize, at * dtype.itemsize))
            rows["doc_id"].append(doc_id)
            rows["split"].append(split)
            rows["offset"].append(size[split])
            rows["n_tokens"].append(n_tokens)
            size[split] += n_tokens + 1
    finally:
        for f in [*files, *outs.values()]:
            f.close()
    pl.DataFrame(rows, schema={"doc_id": pl.String, "split": pl.String, "offset": pl.Int64, "n_tokens": pl.Int64}).write_parquet(folder / "docs.parquet")
    return {"train_tokens": size["train"], "val_tokens": size["val"],
            "train_docs": rows["split"].count("train"), "val_docs": rows["split"].count("val"),
            "train_docs_over_cap": dropped}


def check_split_and_sizes(path: Path) -> CheckOutcome:
    """No document in both splits; every bin holds exactly its documents' tokens plus one EOT each."""
    bins = Bins.open(path)
    problems = []
    for d in bins.domains:
        docs = pl.read_parquet(path / f"domain={d}" / "docs.parquet")
        train_ids = set(docs.filter(pl.col("split") == "train")["doc_id"])
        overlap = train_ids & set(docs.filter(pl.col("split") == "val")["doc_id"])
        if overlap:
            problems.append(f"{d}: {len(overlap)} documents in both train and validation")
        for split, array in (("train", bins.train[d]), ("val", bins.val[d])):
            expected = int(docs.filter(pl.col("split") == split)["n_tokens"].sum()) + docs.filter(pl.col("split") == split).height
            if len(array) != expected:
                problems.append(f"{d}/{split}: {len(array)} tokens on disk, {expected} expected")
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
