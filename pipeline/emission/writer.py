"""Emission: pruned documents + tokenizer + mixture -> a sharded, verifiable training set.

Two passes. Pass 1 (``tokencache``) streams every domain through the tokenizer once, into a
memory-mapped per-domain cache. Pass 2 plans exact per-domain quotas (``quotas``), builds each
domain's schedule (whole documents, a fresh order per epoch, the last one cut so the domain's
tokens equal its quota exactly) and writes:

    <out>/mixed/shard-NNNNN.{bin,idx,parquet}          every domain, globally shuffled
    <out>/domains/<domain>/shard-NNNNN.{bin,idx,parquet}
    <out>/manifest.json                                 written last

Memory does not grow with the documents: a schedule and the global order are rules evaluated for a block
of positions at a time (``shuffle``), shards are cut from one scan of their token counts, and documents are
gathered from the memory-mapped caches ``CHUNK_DOCS`` at a time.

Exactness, as chosen here: per-domain token counts (EOS included) equal the quotas exactly; at most
one document per domain is cut (it keeps a prefix of its tokens, still ending with EOS), every other
document is whole. The mixed set holds the same document copies as the per-domain sets, in one
global order seeded from ``spec.seed_for("emission")``.

Crash safety: everything is written under ``<out>.partial-<id>/`` (each file to a temporary name,
fsynced and renamed), the manifest last, and only then is that folder renamed to ``<out>``. Killed at
any moment, ``<out>`` is either absent, the previous complete set, or the new complete set. A re-run
removes partial folders, reuses finished per-domain token caches whose fingerprint matches (resume),
and rewrites shards from scratch, so no data is ever duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pipeline.config.execution import ExecutionConfig
from pipeline.config.output import OutputConfig
from pipeline.diskspace import disk_full_guard, require_free
from pipeline.emission import manifest as manifest_mod
from pipeline.emission.megatron import IndexedDatasetWriter, dtype_for_vocab
from pipeline.emission.parquet_shards import TextShardWriter
from pipeline.emission.quotas import QuotaPlan, plan_quotas
from pipeline.emission import shuffle
from pipeline.emission.shuffle import (DomainOrder, Entries, MixedOrder, Schedule, domain_schedule, scan_takes, sub_seed,
                                       takes)
from pipeline.emission.tokencache import DomainCache, clean_stale, file_sha256, fingerprint
from pipeline.emission.tokenize_stage import tokenize_domains
from pipeline.store import replace_dir

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[EOS]", "<|eos|>")
# Documents gathered per write while filling a shard: bounds pass-2 memory.
CHUNK_TOKENS = 4_000_000
CHUNK_DOCS = 8192
# Positions per block whose tokens the shard planner sums in one scan (a cut re-reads one block).
CUT_BLOCK = 4096


class EmissionError(RuntimeError):
    """Inputs that cannot make a training set; the message says which and how to fix it."""


@dataclass(frozen=True)
class EmissionInputs:
    domain_files: dict[str, list[Path]]  # Parquet files holding doc_id and text, per domain
    tokenizer_path: Path
    mixture: dict  # at least {"proportions": {domain: p}, "method": str}
    seed: int  # spec.seed_for("emission")
    mixture_path: Path | None = None
    # Free-form provenance recorded as is (spec hash, sources, removals); see manifest.py.
    provenance: dict = field(default_factory=dict)


def find_eos(tokenizer: Tokenizer, wanted: str | None) -> tuple[str, int]:
    names = (wanted,) if wanted else EOS_CANDIDATES
    for name in names:
        tid = tokenizer.token_to_id(name)
        if tid is not None:
            return name, tid
    raise EmissionError(
        f"the tokenizer has no end-of-document token {'(' + wanted + ')' if wanted else 'among ' + ', '.join(EOS_CANDIDATES)}; "
        "set output.eos_token to one of its special tokens"
    )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass


class _ShardSetWriter:
    """Writes one set (mixed, or one domain) as shards of at most ``shard_tokens`` tokens."""

    def __init__(self, *, folder: Path, rel: str, label: str, domains: list[str], caches: list[DomainCache],
                 tokenizer: Tokenizer, eos_id: int, dtype: np.dtype, formats: list[str], shard_tokens: int,
                 cut_texts: dict, progress: Callable[[str], None] | None = None):
        self.folder, self.rel, self.label = folder, rel, label
        self.progress = progress
        self.domains, self.caches, self.tokenizer = domains, caches, tokenizer
        self.eos_id, self.dtype, self.formats, self.shard_tokens = eos_id, dtype, formats, shard_tokens
        self._cut_text = cut_texts

    def write(self, order: DomainOrder | MixedOrder) -> list[dict]:
        self.folder.mkdir(parents=True, exist_ok=True)
        records = []
        for i, (a, b) in enumerate(_shard_bounds(order, self.shard_tokens)):
            records.append(self._write_shard(f"shard-{i:05d}", order, a, b))
            if self.progress:
                self.progress(f"wrote {self.rel}/shard-{i:05d}: {records[-1]['tokens']} tokens")
        return records

    def _write_shard(self, name: str, order: DomainOrder | MixedOrder, start: int, end: int) -> dict:
        tmp_tag = f".tmp-{uuid.uuid4().hex[:8]}"
        paths = {"bin": self.folder / f"{name}.bin", "idx": self.folder / f"{name}.idx",
                 "parquet": self.folder / f"{name}.parquet"}
        wanted = [k for k in ("bin", "idx") if "megatron" in self.formats] + (["parquet"] if "parquet" in self.formats else [])
        tmp = {k: p.with_name(p.name + tmp_tag) for k, p in paths.items()}
        mega = IndexedDatasetWriter(tmp["bin"], tmp["idx"], self.dtype) if "megatron" in self.formats else None
        text = TextShardWriter(tmp["parquet"]) if "parquet" in self.formats else None
        domain_tokens = np.zeros(len(self.domains), dtype=np.int64)
        domain_docs = np.zeros(len(self.domains), dtype=np.int64)
        for c in range(start, end, CHUNK_DOCS):
            entries = order.entries(c, min(end, c + CHUNK_DOCS))
            np.add.at(domain_tokens, entries.dom, entries.take)
            np.add.at(domain_docs, entries.dom, 1)
            for a, b in _chunk_bounds(entries.take, CHUNK_TOKENS, CHUNK_DOCS):
                chunk = entries.slice(a, b)
                if mega is not None:
                    mega.add_documents(self._gather_tokens(chunk), chunk.take)
                if text is not None:
                    self._write_text(text, chunk)
        if mega is not None:
            mega.finish()
        if text is not None:
            text.finish()
            _fsync_file(tmp["parquet"])
        files = {}
        for k in wanted:
            os.replace(tmp[k], paths[k])
            files[k] = {"path": f"{self.rel}/{paths[k].name}", "bytes": paths[k].stat().st_size,
                        "sha256": file_sha256(paths[k])}
        present = np.nonzero(domain_docs)[0]
        return {
            "name": name,
            "domain": self.label,
            "documents": end - start,
            "tokens": int(domain_tokens.sum()),
            "domain_tokens": {self.domains[j]: int(domain_tokens[j]) for j in present},
            "domain_documents": {self.domains[j]: int(domain_docs[j]) for j in present},
            "files": files,
        }

    def _gather_tokens(self, chunk: Entries) -> np.ndarray:
        out = np.empty(int(chunk.take.sum()), dtype=self.dtype)
        pos = 0
        eos = self.eos_id
        for dom, doc, take in zip(chunk.dom.tolist(), chunk.doc.tolist(), chunk.take.tolist()):
            cache = self.caches[dom]
            start = int(cache.token_offsets[doc])
            body = take - 1
            out[pos: pos + body] = cache.tokens[start: start + body]
            out[pos + body] = eos
            pos += take
        return out

    def _write_text(self, writer: TextShardWriter, chunk: Entries) -> None:
        pieces: list[np.ndarray | bytes] = []
        offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
        doc_ids: list[str] = []
        for i, (dom, doc, epoch, take) in enumerate(
            zip(chunk.dom.tolist(), chunk.doc.tolist(), chunk.epoch.tolist(), chunk.take.tolist())
        ):
            cache = self.caches[dom]
            doc_ids.append(cache.doc_id(doc))
            if take == int(cache.token_offsets[doc + 1] - cache.token_offsets[doc]) + 1:
                piece = cache.text[cache.text_offsets[doc]: cache.text_offsets[doc + 1]]
            else:
                piece = self._cut(dom, doc, take)
            pieces.append(piece)
            offsets[i + 1] = offsets[i] + len(piece)
        data = np.concatenate([np.frombuffer(p, np.uint8) if isinstance(p, bytes) else np.asarray(p) for p in pieces]) \
            if pieces else np.zeros(0, np.uint8)
        writer.add(doc_ids=doc_ids, domains=[self.domains[d] for d in chunk.dom.tolist()], text_offsets=offsets,
                   text_data=data, epochs=chunk.epoch, n_tokens=chunk.take)

    def _cut(self, dom: int, doc: int, take: int) -> bytes:
        key = (dom, doc, take)
        if key not in self._cut_text:
            self._cut_text[key] = cut_text(self.caches[dom], doc, take - 1, self.tokenizer)
        return self._cut_text[key]


def cut_text(cache: DomainCache, doc: int, kept: int, tokenizer: Tokenizer) -> bytes:
    """The UTF-8 text prefix that the first ``kept`` tokens of a document cover.

    Needs character offsets, which the cache does not keep: re-encode a prefix of the text long
    enough to reproduce those ``kept`` tokens (checked against the cache; doubled until it does),
    rather than the whole document, which may be megabytes.
    """
    if kept <= 0:
        return b""
    text = cache.doc_text(doc)
    start = int(cache.token_offsets[doc])
    want = np.asarray(cache.tokens[start: start + kept], dtype=np.int64).tolist()
    chars = min(len(text), 8 * kept + 256)
    while True:
        enc = tokenizer.encode(text[:chars], add_special_tokens=False)
        # Tokens near the end of a prefix may differ from the whole text's; demand a margin.
        if (len(enc.ids) > kept + 16 or chars >= len(text)) and enc.ids[:kept] == want:
            return text[: enc.offsets[kept - 1][1]].encode("utf-8")
        if chars >= len(text):
            raise EmissionError(f"re-encoding document {cache.doc_id(doc)} does not reproduce its tokens")
        chars = min(len(text), chars * 2)


def _shard_bounds(order, shard_tokens: int) -> list[tuple[int, int]]:
    """The fewest shards of at most ``shard_tokens`` tokens (a larger single document alone), cut near equal
    token counts, so no shard is a small tail: Megatron splits each shard by its own document count, and a
    shard of a few documents leaves its validation part empty (``min_documents_per_domain``).

    ``order`` is a ``DomainOrder``, a ``MixedOrder`` or an array of tokens per document. One scan sums the
    tokens of every block of ``CUT_BLOCK`` positions; a cut then re-reads the one block it falls in, so memory
    stays bounded however many documents the set holds."""
    n = len(order)
    scan = CUT_BLOCK * max(1, shuffle.SCAN_BLOCK // CUT_BLOCK)  # whole cut blocks per scan block, so their sums line up
    sums = [np.add.reduceat(block, np.arange(0, len(block), CUT_BLOCK)) for _a, block in scan_takes(order, scan)]
    block_cum = np.concatenate([[0], np.cumsum(np.concatenate(sums), dtype=np.int64)]) if sums else np.zeros(1, np.int64)
    total = int(block_cum[-1])

    @lru_cache(maxsize=1024)  # successive tries of k cut in nearly the same blocks
    def running(b: int) -> np.ndarray:
        a = b * CUT_BLOCK
        return int(block_cum[b]) + np.cumsum(takes(order, a, min(n, a + CUT_BLOCK)))

    def cut(target: float) -> tuple[int, int]:
        """The last document boundary whose running total of tokens is at most ``target``, and that total."""
        b = int(np.searchsorted(block_cum, target, side="right")) - 1
        if b * CUT_BLOCK >= n:
            return n, total
        i = int(np.searchsorted(running(b), target, side="right"))
        return b * CUT_BLOCK + i, int(running(b)[i - 1]) if i else int(block_cum[b])

    for k in range(max(1, -(-total // shard_tokens)), n + 1):
        # Cut before the document that crosses each k-th of the tokens.
        at = {0: 0, n: total, **dict(cut(t) for t in np.arange(1, k) * (total / k))}
        edges = np.array(sorted(at), dtype=np.int64)
        sizes = np.diff([at[e] for e in edges.tolist()])
        if np.all((sizes <= shard_tokens) | (np.diff(edges) == 1)):
            return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return [(i, i + 1) for i in range(n)] or [(0, 0)]


def small_domains(plan: QuotaPlan, schedules: dict[str, Schedule], shard_tokens: int, minimum: int) -> dict[str, int]:
    """Domains in the blend whose fewest-document shard holds fewer than ``minimum`` documents: that count."""
    return below_minimum({d: min(b - a for a, b in _shard_bounds(DomainOrder(0, schedules[d]), shard_tokens))
                          for d, q in plan.domains.items() if q.quota > 0}, minimum)


def below_minimum(fewest: dict[str, int], minimum: int) -> dict[str, int]:
    """The small-domain rule (``output.min_documents_per_domain``) on each domain's fewest documents in one
    of its per-domain shards: the domains below it, with that count. Emission applies it before writing,
    the training set's page to the manifest it wrote."""
    return {d: n for d, n in fewest.items() if n < minimum}


def small_domain_message(small: dict[str, int], minimum: int) -> str:
    listed = ", ".join(f"{d} ({n})" for d, n in sorted(small.items()))
    return (f"domains with fewer than output.min_documents_per_domain={minimum} documents in a shard: {listed}. "
            "Megatron splits each --data-path shard by its documents; a --split part left with none makes its "
            "GPTDataset loop forever. Train with --split 100,0,0 (see docs/operations.md), raise these domains' "
            "share or total_tokens, or lower the minimum")


def _chunk_bounds(take: np.ndarray, max_tokens: int, max_docs: int) -> list[tuple[int, int]]:
    bounds, start, size = [], 0, 0
    for i, t in enumerate(take.tolist()):
        if i > start and (size + t > max_tokens or i - start >= max_docs):
            bounds.append((start, i))
            start, size = i, 0
        size += t
    if start < len(take):
        bounds.append((start, len(take)))
    return bounds


def build_schedules(plan: QuotaPlan, caches: dict[str, DomainCache], seed: int) -> dict[str, Schedule]:
    return {
        d: domain_schedule(caches[d].lengths if d in caches else np.zeros(0, np.int64), q.quota,
                           seed=sub_seed(seed, "domain", d))
        for d, q in plan.domains.items()
    }


def build_key(fingerprints: dict[str, str], mixture: dict, config: OutputConfig, seed: int, tokenizer_sha: str) -> str:
    from pipeline.config.typed import to_plain

    payload = {"fingerprints": fingerprints, "mixture": mixture, "output": to_plain(config), "seed": seed,
               "tokenizer": tokenizer_sha, "version": manifest_mod.MANIFEST_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def set_bytes_at_least(plan: QuotaPlan, schedules: dict[str, Schedule], config: OutputConfig, dtype) -> int:
    """The ``.bin`` and ``.idx`` bytes of the sets to write (exact; Parquet text shards come on top)."""
    if "megatron" not in config.formats:
        return 0
    sets = int(config.mixed) + int(config.per_domain)
    documents = sum(len(s) for s in schedules.values())
    return sets * (plan.total_tokens * np.dtype(dtype).itemsize + documents * (4 + 8 + 8))


def emit_training_set(
    inputs: EmissionInputs,
    *,
    config: OutputConfig,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    execution: ExecutionConfig | None = None,
) -> dict:
    """Write the training set into ``out_dir``; returns the manifest (also in ``out_dir/manifest.json``).

    A full disk stops it with a ``DiskFullError`` (one line: path, bytes needed, bytes free), before writing
    where the size is known, and nothing partial is left (the work folder and cache temporaries go)."""
    with disk_full_guard(Path(out_dir).parent):
        return _emit_training_set(inputs, config=config, out_dir=out_dir, cache_dir=cache_dir, progress=progress,
                                  execution=execution)


def _emit_training_set(inputs: EmissionInputs, *, config: OutputConfig, out_dir: Path, cache_dir: Path | None,
                       progress: Callable[[str], None] | None, execution: ExecutionConfig | None) -> dict:
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else parent / f"{out_dir.name}.cache"
    for stale in list(parent.glob(f"{out_dir.name}.partial-*")) + list(parent.glob(f"{out_dir.name}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)
    clean_stale(cache_dir)
    if out_dir.exists() and not (out_dir / "manifest.json").exists() and any(out_dir.iterdir()):
        # Emission only ever renames a complete set (manifest included) into place, so this folder
        # is someone else's: replacing it would delete their files.
        raise EmissionError(f"{out_dir} exists and is not a curamix training set (no manifest.json); "
                            "choose another output.path or remove it")

    proportions = {str(d): float(p) for d, p in inputs.mixture.get("proportions", {}).items()}
    if not proportions:
        raise EmissionError("the mixture has no 'proportions' mapping of domain -> weight")
    tokenizer = Tokenizer.from_file(str(inputs.tokenizer_path))
    tokenizer_sha = file_sha256(inputs.tokenizer_path)
    eos_token, eos_id = find_eos(tokenizer, config.eos_token)
    dtype = dtype_for_vocab(tokenizer.get_vocab_size(with_added_tokens=True))

    domains = sorted(set(proportions) | set(inputs.domain_files))
    fingerprints = {d: fingerprint(sorted(inputs.domain_files.get(d, [])), tokenizer_sha256=tokenizer_sha, dtype=dtype)
                    for d in domains}
    key = build_key(fingerprints, inputs.mixture, config, inputs.seed, tokenizer_sha)
    if (out_dir / "manifest.json").exists():
        from pipeline.emission.verify import verify

        try:
            old = json.loads((out_dir / "manifest.json").read_text())
        except ValueError:
            old = {}
        if old.get("build_key") == key and not verify(out_dir):
            say(f"training set in {out_dir} is up to date")
            return old

    say(f"tokenizing {len(domains)} domains")
    caches: dict[str, DomainCache] = tokenize_domains(
        {d: inputs.domain_files.get(d, []) for d in domains}, fingerprints=fingerprints, cache_root=cache_dir,
        tokenizer=tokenizer, dtype=dtype, batch_bytes=config.encode_batch_bytes, execution=execution, progress=progress)
    available = {d: int(c.lengths.sum()) for d, c in caches.items()}
    plan = plan_quotas({d: proportions.get(d, 0.0) for d in domains}, available, total_tokens=config.total_tokens,
                       max_epochs=config.max_epochs, over_cap=config.over_cap)
    for d, q in plan.domains.items():
        if q.capped:
            say(f"{d}: capped at {q.epochs:.2f} epochs (output.max_epochs={config.max_epochs}); "
                "its budget share went to the other domains")
        elif q.epochs > 1:
            say(f"{d}: repeated, {q.epochs:.2f} epochs of {q.available} tokens (whole documents, reshuffled each epoch)")
    schedules = build_schedules(plan, caches, inputs.seed)
    warnings = []
    if config.per_domain and "megatron" in config.formats:
        small = small_domains(plan, schedules, config.shard_tokens, config.min_documents_per_domain)
        if small and config.on_small_domain == "error":
            raise EmissionError(small_domain_message(small, config.min_documents_per_domain)
                                + " (or set output.on_small_domain: warn)")
        if small:
            warnings.append(small_domain_message(small, config.min_documents_per_domain))
            say(f"warning: {warnings[-1]}")

    require_free(parent, set_bytes_at_least(plan, schedules, config, dtype))
    work = parent / f"{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        cache_list = [caches[d] for d in domains]
        common = dict(domains=domains, caches=cache_list, tokenizer=tokenizer, eos_id=eos_id, dtype=dtype,
                      formats=list(config.formats), shard_tokens=config.shard_tokens, progress=progress,
                      cut_texts={})
        sets: dict[str, dict] = {}
        if config.mixed:
            say("writing the mixed set")
            shards = _ShardSetWriter(folder=work / "mixed", rel="mixed", label="mixed", **common).write(
                MixedOrder([schedules[d] for d in domains], inputs.seed))
            sets["mixed"] = {"shards": shards}
        if config.per_domain:
            for i, d in enumerate(domains):
                if plan.domains[d].quota == 0:
                    continue
                say(f"writing the {d} set")
                shards = _ShardSetWriter(folder=work / "domains" / d, rel=f"domains/{d}", label=d, **common).write(
                    DomainOrder(i, schedules[d]))
                sets[f"domains/{d}"] = {"shards": shards}
        manifest = manifest_mod.build_manifest(
            inputs=inputs, config=config, plan=plan, schedules=schedules, caches=caches, sets=sets,
            tokenizer=tokenizer, tokenizer_sha256=tokenizer_sha, eos=(eos_token, eos_id), dtype=dtype,
            fingerprints=fingerprints, build_key=key, out_dir=out_dir,
        )
        manifest["warnings"] = warnings
        for folder in [work, *[p for p in work.rglob("*") if p.is_dir()]]:
            _fsync_dir(folder)
        manifest_mod.write_manifest(work / "manifest.json", manifest)
        _fsync_file(work / "manifest.json")
        _fsync_dir(work)
        replace_dir(work, out_dir)
        _fsync_dir(parent)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    if not config.keep_token_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    say(f"training set written to {out_dir}: {config.total_tokens} tokens")
    return manifest


PRUNED_STAGE = "pruned"


def emit(spec, *, root=None, progress: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """Emit the training set of ``spec``: pruned documents, ``<root>/tokenizer/tokenizer.json`` and
    ``<root>/mixture/mixture.json`` in, ``<root>/training_set`` (or ``output.path``) out."""
    from pipeline.store import DataRoot

    root = root or DataRoot(spec.data_root)
    config: OutputConfig = spec.output
    tokenizer_path = root.layout.tokenizer_json
    if not tokenizer_path.exists() and spec.tokenizer.path:
        user = Path(spec.tokenizer.path)
        tokenizer_path = user if user.is_absolute() else spec.path.parent / user
    if not tokenizer_path.exists():
        raise EmissionError(f"no tokenizer at {tokenizer_path}: materialize the `tokenizer` asset first")
    mixture_path = root.layout.mixture_json
    if not mixture_path.exists():
        raise EmissionError(f"no mixture at {mixture_path}: materialize the `mixture` asset first")
    mixture = json.loads(mixture_path.read_text())
    domains = root.domains(PRUNED_STAGE)
    if not domains:
        raise EmissionError(f"no pruned documents under {root.stage_dir(PRUNED_STAGE)}: materialize `pruned_documents` first")
    inputs = EmissionInputs(
        domain_files={d: root.data_files(PRUNED_STAGE, [d]) for d in domains},
        tokenizer_path=tokenizer_path,
        mixture=mixture,
        mixture_path=mixture_path,
        seed=spec.seed_for("emission"),
        provenance=manifest_mod.provenance(root, spec_hash=spec.spec_hash, spec_seed=spec.seed),
    )
    out_dir = Path(config.path) if config.path else root.layout.training_set
    if not out_dir.is_absolute():
        out_dir = spec.path.parent / out_dir
    return out_dir, emit_training_set(inputs, config=config, out_dir=out_dir, progress=progress,
                                      execution=spec.execution)
__all__ = ["EmissionError", "EmissionInputs", "build_schedules", "emit", "emit_training_set", "find_eos"]
