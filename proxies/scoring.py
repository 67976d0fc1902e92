"""Per-document loss with a trained proxy (SeTa's difficulty score), over a bounded number of tokens per document.

A document's score is the mean next-token loss over the tokens it is scored on. Which tokens (``ScoreBudget``):

- ``all``: every token (the cost grows with the corpus's tokens);
- ``prefix``: the document's first ``tokens`` tokens;
- ``windows``: ``ceil(tokens / seq_len)`` excerpts of up to ``seq_len`` tokens each, one per equal stretch of the
  text at a seeded position (seed = the budget's seed and the doc_id's hash, so a document's excerpts do not
  depend on its neighbours, the batch or the run), each starting at a word boundary.

A document with at most ``tokens`` tokens is scored on all of them in every mode. Only a bounded piece of the text
is tokenized in the bounded modes (``prefix_chars`` characters per excerpt, grown for the few texts whose first
characters hold too few tokens), so the cost per document is bounded too. The bench (bench/bench_scoring.py)
measured the rank correlation of bounded vs full scores on ../shared/corpora and chose the default.

Each excerpt is scored on its own, prefixed with the EOT token as beginning-of-sequence so that its first token is
predicted too; an excerpt longer than the context is cut into consecutive windows (every token predicted exactly
once, each window starting with fresh context, as in the proxies' validation). Windows of many documents are
batched together; padding is masked out. SeTa (Zhou et al., 2025) uses the last observed training loss per
sample; a static curation pass has no training loop, so the score here is the loss of a proxy trained on the
natural mixture, taken once.

``score_stage`` runs on the stage contract (``ScoringStage``): a shard scores a run of row groups of one curated part,
batch by batch, on the engine's workers (each loads the proxy once); ``finish`` joins the shards' parts into one
Parquet file (a temporary name, renamed when complete), so memory does not grow with the corpus. Batches are fixed by
the data and torch's thread count by the shard, so the bytes are the same under every engine and worker count. Output columns: doc_id, domain, loss (NaN for an empty document), n_tokens (tokens the
loss is the mean of).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer

from pipeline.config.execution import ExecutionConfig
from pipeline.engine import ShardTask, run_stage, shard_dir
from pipeline.engine.parts import fixed_torch_threads, join_parquet, parquet_row_group_runs
from pipeline.layout import Layout
from pipeline.engine.outcome import StageOutcome, Table
from pipeline.store import DataRoot, atomic_dir, atomic_file, file_sha256, write_json
from proxies.model import PopulationLM
from proxies.population import autocast_for
from proxies.tokenizer import encode_batch

SCORE_SCHEMA = pa.schema([("doc_id", pa.string()), ("domain", pa.string()), ("loss", pa.float64()),
                          ("n_tokens", pa.int64())])
# Characters tokenized per wanted token at first: byte-level BPE with a few thousand merges averages 3-5
# characters per token on prose and code; texts whose cut holds too few tokens are re-cut 4x longer.
CHARS_PER_TOKEN = 8
# Tokens dropped at the end of a cut: the cut may split a word, whose tokens then differ from the full text's.
CUT_MARGIN = 16
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class ScoreBudget:
    """Which tokens of a document are scored: ``tokens`` None = all of them."""

    tokens: int | None = None
    mode: Literal["prefix", "windows"] = "prefix"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens < 1:
            raise ValueError("a score budget needs at least one token per document (or None for all)")
        if self.mode not in ("prefix", "windows"):
            raise ValueError(f"score mode must be 'prefix' or 'windows', got {self.mode!r}")

    @classmethod
    def of(cls, tokens: int | str, mode: str = "prefix", seed: int = 0) -> "ScoreBudget":
        """From the spec's ``proxies.score_tokens`` ("all" or a count) and ``score_mode``."""
        return cls(None if tokens == "all" else int(tokens), mode, seed)

    def excerpts(self, seq_len: int) -> int:
        return 1 if self.tokens is None or self.mode == "prefix" else max(1, math.ceil(self.tokens / seq_len))


# -- which tokens of each document ---------------------------------------------------------------------------
def encode_prefixes(tokenizer: Tokenizer, texts: Sequence[str], tokens: int) -> list[np.ndarray]:
    """The first ``tokens`` tokens of each text, tokenizing only a prefix of its characters.

    Equal to the full text's first ``tokens`` tokens unless one word spans more than ``CUT_MARGIN`` tokens at the
    cut (a long run of symbols); tests/test_proxies_scoring.py checks the equality on real documents.
    """
    out: list[np.ndarray | None] = [None] * len(texts)
    todo = list(range(len(texts)))
    cut = tokens * CHARS_PER_TOKEN
    while todo:
        ids = encode_batch(tokenizer, [texts[i][:cut] for i in todo])
        again = []
        for i, seq in zip(todo, ids):
            if len(texts[i]) > cut and len(seq) < tokens + CUT_MARGIN:
                again.append(i)  # the cut held too few tokens to be sure of the first ``tokens``
            else:
                out[i] = seq[:tokens]
        todo, cut = again, cut * 4
    return out  # type: ignore[return-value]


def doc_seed(seed: int, doc_id: str) -> np.random.Generator:
    """A document's own random stream: independent of batch, order and run."""
    digest = hashlib.blake2b(doc_id.encode(), digest_size=8).digest()
    return np.random.default_rng([int(seed) % 2**63, int.from_bytes(digest, "little")])


def excerpt_starts(text: str, count: int, span: int, rng: np.random.Generator) -> list[int]:
    """``count`` character offsets, one in each equal stretch of ``text`` (minus ``span``), moved to a word start."""
    room = max(1, len(text) - span)
    starts = []
    for k in range(count):
        lo, hi = k * room // count, max(k * room // count + 1, (k + 1) * room // count)
        offset = int(rng.integers(lo, hi))
        if offset:
            space = _SPACE.search(text, offset)
            offset = space.end() if space and space.end() < len(text) else offset
        starts.append(offset)
    return starts


def budget_excerpts(tokenizer: Tokenizer, doc_ids: Sequence[str], texts: Sequence[str], budget: ScoreBudget,
                    seq_len: int) -> list[list[np.ndarray]]:
    """Token excerpts to score, per document (see the module docstring)."""
    if budget.tokens is None:
        return [[doc] for doc in encode_batch(tokenizer, list(texts))]
    heads = encode_prefixes(tokenizer, texts, budget.tokens + 1)  # one more: does the document go on?
    if budget.mode == "prefix":
        return [[head[: budget.tokens]] for head in heads]
    count = budget.excerpts(seq_len)
    length = math.ceil(budget.tokens / count)
    span = length * CHARS_PER_TOKEN
    result: list[list[np.ndarray] | None] = [None] * len(texts)
    long_docs: list[int] = []
    pieces: list[str] = []
    for i, head in enumerate(heads):
        if len(head) <= budget.tokens:
            result[i] = [head]  # short document: every token, as in "all"
            continue
        rng = doc_seed(budget.seed, doc_ids[i])
        long_docs.append(i)
        pieces += [texts[i][s:] for s in excerpt_starts(texts[i], count, span, rng)]
    encoded = encode_prefixes(tokenizer, pieces, length) if pieces else []
    for j, i in enumerate(long_docs):
        result[i] = encoded[j * count : (j + 1) * count]
    return result  # type: ignore[return-value]


# -- scoring ------------------------------------------------------------------------------------------------
def document_windows(docs: Sequence[np.ndarray], *, bos: int, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (S, width + 1), mask (S, width), doc index per window) for a list of token arrays.

    ``width`` is ``seq_len``, or less when every document is shorter: a short excerpt is not padded to the
    whole context (causal attention: padding after a token never changes its loss; it only costs compute).
    """
    longest = max((len(d) for d in docs), default=0)
    width = max(1, min(seq_len, longest))
    windows, masks, owners = [], [], []
    for index, doc in enumerate(docs):
        seq = np.concatenate([[bos], np.asarray(doc, dtype=np.int64)])
        for start in range(0, len(seq) - 1, width):
            piece = seq[start : start + width + 1]
            w = np.full(width + 1, bos, dtype=np.int64)
            w[: len(piece)] = piece
            m = np.zeros(width, dtype=bool)
            m[: len(piece) - 1] = True
            windows.append(w), masks.append(m), owners.append(index)
    if not windows:
        return np.zeros((0, width + 1), np.int64), np.zeros((0, width), bool), np.zeros(0, np.int64)
    return np.stack(windows), np.stack(masks), np.asarray(owners, dtype=np.int64)


@torch.no_grad()
def score_excerpts(model: PopulationLM, excerpts: Sequence[Sequence[np.ndarray]], *, bos: int,
                   batch_tokens: int = 16_384, member: int = 0, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Mean token loss over each document's excerpts (float64, NaN when it has no token) and the tokens scored.

    Runs on the model's device; only the per-window loss sums come back to the host.
    """
    seq_len = model.config.seq_len
    device = next(model.parameters()).device
    flat = [piece for pieces in excerpts for piece in pieces]
    owner_of_piece = np.repeat(np.arange(len(excerpts)), [len(p) for p in excerpts]).astype(np.int64)
    windows, mask, owners = document_windows(flat, bos=bos, seq_len=seq_len)
    owners = owner_of_piece[owners] if len(owners) else owners
    sums = np.zeros(len(excerpts), dtype=np.float64)
    batch = max(1, batch_tokens // windows.shape[1])
    model.eval()
    for s in range(0, len(windows), batch):
        w = torch.from_numpy(windows[s : s + batch]).to(device)
        m = torch.from_numpy(mask[s : s + batch]).to(device)
        with autocast_for(device, precision):
            losses = model.token_losses(w.unsqueeze(0).expand(model.n_members, -1, -1))[member]
        per_window = (losses.float() * m).sum(1).double().cpu().numpy()
        np.add.at(sums, owners[s : s + batch], per_window)
    n_tokens = np.zeros(len(excerpts), dtype=np.int64)
    np.add.at(n_tokens, owner_of_piece, np.array([len(p) for p in flat], dtype=np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_tokens > 0, sums / np.maximum(n_tokens, 1), np.nan), n_tokens



def score_documents(model: PopulationLM, docs: Sequence[np.ndarray], *, bos: int, batch_tokens: int = 16_384,
                    member: int = 0, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Mean token loss (float64, NaN for an empty document) and token count per document, with one member."""
    return score_excerpts(model, [[d] for d in docs], bos=bos, batch_tokens=batch_tokens, member=member,
                          precision=precision)


# -- a whole stage, streamed ----------------------------------------------------------------------------------
def chars_needed(budget: ScoreBudget) -> int | None:
    """Characters of a document the budget reads: all of them for "all" and "windows" (excerpts are drawn along
    the whole text); for "prefix" a cut far longer than ``tokens`` tokens can span (512 characters a token), so a
    long document's text does not leave Arrow."""
    if budget.tokens is None or budget.mode == "windows":
        return None
    return (budget.tokens + 1) * CHARS_PER_TOKEN * 64


# Uncompressed curated bytes per scoring shard: a run of row groups of one part of one domain.
SHARD_BYTES = 16 << 20


@dataclass(frozen=True)
class ScoringStage:
    """Difficulty scores on the stage contract. A shard scores a run of row groups of one curated part, ``batch_docs``
    documents at a time (batches fixed by the data, not by the workers), into its own Parquet part; the proxy and the
    tokenizer are loaded once per worker (``load_worker_state``) and torch runs with a fixed thread count inside a
    shard, so the bytes do not depend on the engine. ``finish`` joins the parts, domain by domain in the stage's
    order, into one file written atomically, and sums the per-domain summary."""

    root: DataRoot
    stage: str
    domains: tuple[str, ...]
    out: Path
    work_dir: Path
    proxy_dir: str
    proxy_sha256: str
    tokenizer_json: str
    bos: int
    budget: ScoreBudget
    batch_docs: int = 512
    batch_tokens: int = 16_384
    device: str | None = None
    precision: str = "fp32"
    name: str = "difficulty_scores"
    version: str = "difficulty-scores-3"

    def plan(self) -> list[ShardTask]:
        settings = {"budget": self.budget, "bos": self.bos, "batch_docs": self.batch_docs, "precision": self.precision,
                    "batch_tokens": self.batch_tokens, "proxy": self.proxy_sha256,
                    "tokenizer": hashlib.sha256(Path(self.tokenizer_json).read_bytes()).hexdigest()}
        return [ShardTask(key=f"{domain}-{i:05d}-{groups[0]:05d}", inputs=(str(f),), seed=self.budget.seed,
                          settings=settings | {"domain": domain, "row_groups": groups})
                for domain in self.domains for i, f in enumerate(self.root.data_files(self.stage, [domain]))
                for groups in parquet_row_group_runs(f, target_bytes=SHARD_BYTES)]

    def load_worker_state(self) -> tuple[PopulationLM, Tokenizer]:
        from proxies.sweep import load_proxy  # imports the trainer: only where a model is loaded

        model, _ = load_proxy(self.proxy_dir)
        return model.to(torch.device(self.device or "cpu")), Tokenizer.from_file(self.tokenizer_json)

    def run_shard(self, task: ShardTask, out: Path, state: tuple[PopulationLM, Tokenizer]) -> dict:
        model, tokenizer = state
        domain = task.settings["domain"]
        docs, tokens, loss_sum, scored = 0, 0, 0.0, 0
        source = pq.ParquetFile(task.inputs[0])
        with fixed_torch_threads(), pq.ParquetWriter(out / "scores.parquet", SCORE_SCHEMA, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=self.batch_docs, row_groups=task.settings["row_groups"],
                                             columns=["doc_id", "text"]):
                doc_ids, texts = text_columns(batch, max_chars=chars_needed(self.budget))
                excerpts = budget_excerpts(tokenizer, doc_ids, texts, self.budget, model.config.seq_len)
                loss, n = score_excerpts(model, excerpts, bos=self.bos, batch_tokens=self.batch_tokens,
                                         precision=self.precision)
                writer.write_table(pa.table({"doc_id": doc_ids, "domain": [domain] * len(doc_ids), "loss": loss,
                                             "n_tokens": n}, schema=SCORE_SCHEMA))
                finite = np.isfinite(loss)
                docs, tokens = docs + len(doc_ids), tokens + int(n.sum())
                loss_sum, scored = loss_sum + float(loss[finite].sum()), scored + int(finite.sum())
        return {"domain": domain, "docs": docs, "tokens": tokens, "loss_sum": loss_sum, "scored": scored}

    def finish(self, results: list[dict]) -> dict[str, dict]:
        parts = [shard_dir(self, t.key) / "scores.parquet" for t in self.plan()]
        with atomic_file(self.out) as tmp:
            join_parquet(parts, tmp, SCORE_SCHEMA)
        summary = {}
        for domain in self.domains:
            mine = [r for r in results if r["domain"] == domain]
            scored = sum(r["scored"] for r in mine)
            summary[domain] = {"docs": sum(r["docs"] for r in mine), "tokens_scored": sum(r["tokens"] for r in mine),
                               "mean_loss": round(sum(r["loss_sum"] for r in mine) / scored, 3) if scored else None}
        return summary


def text_columns(batch: pa.RecordBatch, *, max_chars: int | None) -> tuple[list[str], list[str]]:
    """(doc_ids, texts) of a batch; texts cut to ``max_chars`` before they leave Arrow."""
    text = batch.column(1)
    if max_chars is not None:
        text = pc.utf8_slice_codeunits(text, 0, max_chars)
    return batch.column(0).to_pylist(), text.to_pylist()


def score_stage(root: DataRoot, stage: str, domains: list[str], *, tokenizer: Tokenizer | None = None,
                bos: int, out: Path, model: PopulationLM | None = None, proxy_dir: Path | None = None,
                tokenizer_json: Path | None = None, budget: ScoreBudget = ScoreBudget(), batch_docs: int = 512,
                batch_tokens: int = 16_384, device: torch.device | None = None, precision: str = "fp32",
                execution: ExecutionConfig | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Score every document of a stage into the Parquet file ``out`` (doc_id, domain, loss, n_tokens; the stage's
    order per domain), on the engine's workers. The proxy comes from ``proxy_dir`` (a saved proxy: what
    ``difficulty_scores`` reads) or ``model`` (saved into the work folder, so that workers load it); the
    tokenizer from ``tokenizer_json`` or ``tokenizer``. Returns per domain: documents, tokens scored, mean loss."""
    from proxies.sweep import save_proxy

    work_dir = root.layout.work_dir("difficulty_scores")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if proxy_dir is None:
        if model is None:
            raise ValueError("score_stage needs a model or a proxy_dir")
        proxy_dir = work_dir / "proxy"
        save_proxy(proxy_dir, copy.deepcopy(model).cpu(), 0)  # a copy: the caller's model stays on its device
    if tokenizer_json is None:
        if tokenizer is None:
            raise ValueError("score_stage needs a tokenizer or a tokenizer_json")
        tokenizer_json = work_dir / "tokenizer.json"
        text = tokenizer.to_str()
        if not tokenizer_json.exists() or tokenizer_json.read_text() != text:
            with atomic_file(tokenizer_json) as tmp:
                tmp.write_text(text)
    definition = ScoringStage(
        root=root, stage=stage, domains=tuple(domains), out=Path(out), work_dir=work_dir, proxy_dir=str(proxy_dir),
        proxy_sha256=file_sha256(Path(proxy_dir) / "model.safetensors"), tokenizer_json=str(tokenizer_json), bos=bos,
        budget=budget, batch_docs=batch_docs, batch_tokens=batch_tokens, device=str(device) if device else None,
        precision=precision)
    return run_stage(definition, execution=execution, progress=progress)


# -- the difficulty_scores asset ------------------------------------------------------------------------------
SKIP_REASON = "no configured step reads it (only pruning.method seta reads the difficulty scores)"


def scores_read_by(spec) -> str | None:
    """The configured step that reads the difficulty scores (and so the reference proxy), or None."""
    pruning = spec.pruning
    return "pruning.method seta" if pruning.active and pruning.method == "seta" else None


def _empty_scores(layout: Layout, note: dict | None) -> None:
    """An empty scores table (and a note saying why), replacing whatever an earlier configuration left."""
    with atomic_dir(layout.difficulty_scores) as tmp:
        pq.write_table(SCORE_SCHEMA.empty_table(), tmp / layout.difficulty_scores_file.name, compression="zstd")
        if note:
            write_json(tmp / "skipped.json", note)


def difficulty_scores_outcome(spec, *, progress: Callable[[str], None] | None = None) -> StageOutcome:
    """Score the curated documents with the reference proxy on the engine's workers; an empty table when no
    configured step reads the scores (skipped) or the proxies stage is disabled (SeTa then keeps everything)."""
    from proxies.population import pick_device
    from proxies.tokenizer import eot_id

    root = DataRoot(spec.data_root)
    layout = root.layout
    if not scores_read_by(spec):
        reason = SKIP_REASON
        _empty_scores(layout, {"skipped": reason})
        if progress:
            progress(f"skipped: {reason}")
        return StageOutcome(metadata={"skipped": reason, "path": layout.difficulty_scores})
    cfg = spec.proxies
    summary: dict[str, dict] = {}
    if cfg.enabled:
        tokenizer = Tokenizer.from_file(str(layout.tokenizer_json))
        budget = ScoreBudget.of(cfg.score_tokens, cfg.score_mode, spec.seed_for("difficulty_scores"))
        summary = score_stage(root, "curated", spec.domains, proxy_dir=layout.reference_proxy,
                              tokenizer_json=layout.tokenizer_json, bos=eot_id(tokenizer),
                              out=layout.difficulty_scores_file, budget=budget, batch_tokens=cfg.score_batch_tokens,
                              device=pick_device(cfg.train.device), precision=cfg.train.precision,
                              execution=spec.execution, progress=progress)
    else:
        _empty_scores(layout, None)
    rows = [{"domain": d, **v} for d, v in sorted(summary.items())]
    return StageOutcome(metadata={"documents": sum(v["docs"] for v in summary.values()),
                                  "score_tokens": str(cfg.score_tokens), "score_mode": cfg.score_mode,
                                  "by_domain": Table(rows), "path": layout.difficulty_scores_file})


__all__ = ["ScoreBudget", "SCORE_SCHEMA", "encode_prefixes", "budget_excerpts", "document_windows", "score_excerpts",
           "score_documents", "score_stage", "ScoringStage",
           "difficulty_scores_outcome", "scores_read_by"]
