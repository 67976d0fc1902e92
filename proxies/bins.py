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
order decides which train documents survive ``max_train_tokens``. Arrays are read back memory-mapped. While a
domain is tokenized its document texts are held in memory (one domain at a time), the token files are streamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from pipeline.config.proxies import TargetSetConfig
from pipeline.diskspace import as_disk_full, is_disk_full, longest_token_bytes, min_token_bytes, require_free
from pipeline.store import DataRoot, replace_dir, write_json
from proxies.tokenizer import encode_batch, eot_id, token_dtype

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


def _write_domain(folder: Path, doc_ids: list[str], texts: list[str], *, tokenizer: Tokenizer, dtype: np.dtype,
                  eot: int, n_val: int, max_train_tokens: int | None, batch_docs: int = 256) -> dict:
    folder.mkdir(parents=True)
    writers = {"train": _BinWriter(folder / "train.bin", dtype, eot), "val": _BinWriter(folder / "val.bin", dtype, eot)}
    rows: dict[str, list] = {"doc_id": [], "split": [], "offset": [], "n_tokens": []}
    dropped = 0
    for start in range(0, len(texts), batch_docs):
        encoded = encode_batch(tokenizer, texts[start : start + batch_docs])
        for i, ids in enumerate(encoded, start):
            split = "val" if i < n_val else "train"
            if split == "train" and max_train_tokens is not None and writers["train"].offset + len(ids) + 1 > max_train_tokens:
                dropped += 1
                continue
            rows["doc_id"].append(doc_ids[i])
            rows["split"].append(split)
            rows["offset"].append(writers[split].add(ids))
            rows["n_tokens"].append(len(ids))
    for w in writers.values():
        w.close()
    pl.DataFrame(rows, schema={"doc_id": pl.String, "split": pl.String, "offset": pl.Int64, "n_tokens": pl.Int64}).write_parquet(folder / "docs.parquet")
    return {"train_tokens": writers["train"].offset, "val_tokens": writers["val"].offset,
            "train_docs": rows["split"].count("train"), "val_docs": rows["split"].count("val"),
            "train_docs_over_cap": dropped}


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


def bins_bytes_at_least(root: DataRoot, stage: str, domains: list[str], tokenizer: Tokenizer, dtype: np.dtype,
                        max_train_tokens: int | None) -> int:
    """A lower bound on the bins' size: each domain's text at the most bytes per token (capped like its train bin)."""
    longest, total = longest_token_bytes(tokenizer), 0
    for domain in domains:
        text = int(root.scan(stage, [domain]).select(pl.col("n_bytes").sum()).collect().item() or 0)
        bound = min_token_bytes(text, longest_token_bytes=longest, itemsize=dtype.itemsize)
        total += bound if max_train_tokens is None else min(bound, max_train_tokens * dtype.itemsize)
    return total


def build_bins(root: DataRoot, stage: str, domains: list[str], out_dir: str | os.PathLike, *, tokenizer: Tokenizer,
               tokenizer_sha256: str, validation_fraction: float, seed: int, min_validation_docs: int = 1,
               max_train_tokens: int | None = None, targets: Sequence[tuple[str, list[str]]] = (),
               progress: Callable[[str], None] | None = None) -> dict:
    """Tokenize a document stage into bins at ``out_dir`` (built in a temporary folder, then renamed)."""
    out_dir = Path(out_dir)
    vocab_size = tokenizer.get_vocab_size()
    dtype, eot = token_dtype(vocab_size), eot_id(tokenizer)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    require_free(out_dir.parent, bins_bytes_at_least(root, stage, domains, tokenizer, dtype, max_train_tokens))
    tmp.mkdir(parents=True)
    try:
        meta = {"vocab_size": vocab_size, "dtype": dtype.name, "eot": eot, "tokenizer_sha256": tokenizer_sha256,
                "stage": stage, "seed": seed, "validation_fraction": validation_fraction, "domain_order": list(domains),
                "domains": {}, "targets": {}, "target_order": [name for name, _ in targets]}
        for domain in domains:
            frame = root.scan(stage, [domain]).select("doc_id", "text").collect()
            order = split_order(frame["doc_id"].to_list(), seed)
            frame = frame[order]
            n_val = n_validation(frame.height, validation_fraction, min_validation_docs)
            meta["domains"][domain] = _write_domain(
                tmp / f"domain={domain}", frame["doc_id"].to_list(), frame["text"].to_list(), tokenizer=tokenizer,
                dtype=dtype, eot=eot, n_val=n_val, max_train_tokens=max_train_tokens)
            if progress:
                progress(f"token bins: {domain}: {meta['domains'][domain]}")
        for name, texts in targets:
            folder = tmp / f"target={name}"
            folder.mkdir()
            writer = _BinWriter(folder / "val.bin", dtype, eot)
            for start in range(0, len(texts), 256):
                for ids in encode_batch(tokenizer, texts[start : start + 256]):
                    writer.add(ids)
            writer.close()
            meta["targets"][name] = {"tokens": writer.offset, "docs": len(texts)}
        write_json(tmp / META, meta)
        replace_dir(tmp, out_dir)
    except Exception as exc:
        if is_disk_full(exc):  # one line naming the path and the bytes, not numpy's "N requested and M written"
            raise as_disk_full(exc, tmp) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


__all__ = ["Bins", "build_bins", "split_order", "n_validation", "read_target_texts", "META"]
