"""The `reference_proxy` stage: one proxy trained on the natural mixture (token shares) of the curated pool,
whose per-document losses are SeTa's difficulty scores.

Output (``Layout.reference_proxy``, built in a temporary folder, then renamed): ``bins/`` (the curated pool's
token bins), ``model.safetensors`` + ``proxy.json`` (``proxies.sweep.save_proxy``), ``results.parquet``. Only
SeTa pruning reads it: otherwise the stage writes ``skipped.json`` and nothing else (no stale model stays).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from pipeline.engine.outcome import StageOutcome
from pipeline.store import DataRoot, atomic_dir, file_sha256, write_json
from proxies.bins import Bins, build_bins
from proxies.population import train_population
from proxies.scoring import SKIP_REASON, scores_read_by
from proxies.sweep import save_proxy
from proxies.tokenizer import load_tokenizer

BINS = "bins"


def skipped_outcome(out: Path, *, write: Callable[[Path], None] | None = None) -> StageOutcome:
    """A skipped stage's folder: a note saying why (plus what ``write`` adds), replacing what was there."""
    with atomic_dir(out) as tmp:
        write_json(tmp / "skipped.json", {"skipped": SKIP_REASON})
        if write is not None:
            write(tmp)
    return StageOutcome(metadata={"skipped": SKIP_REASON, "path": out})


def train_reference_proxy(spec, *, progress: Callable[[str], None] | None = None) -> StageOutcome:
    root, cfg = DataRoot(spec.data_root), spec.proxies
    layout = root.layout
    if not scores_read_by(spec):
        if progress:
            progress(f"skipped: {SKIP_REASON}")
        return skipped_outcome(layout.reference_proxy)
    seed = spec.seed_for("reference_proxy")
    with atomic_dir(layout.reference_proxy) as tmp:
        meta = build_bins(root, "curated", spec.domains, tmp / BINS, tokenizer=load_tokenizer(layout.tokenizer_json),
                          tokenizer_sha256=file_sha256(layout.tokenizer_json),
                          validation_fraction=cfg.validation_fraction, min_validation_docs=cfg.min_validation_docs,
                          max_train_tokens=cfg.max_train_tokens_per_domain, seed=seed, progress=progress,
                          execution=spec.execution)
        extra = {"enabled": cfg.enabled, "tokenizer_sha256": meta["tokenizer_sha256"]}
        final: dict = {}
        if cfg.enabled:
            bins = Bins.open(tmp / BINS)
            prior = bins.prior()
            mixture = extra | {"mixture": dict(zip(bins.domains, prior.tolist()))}
            results = train_population(bins, prior[None, :], cfg, seed, run_ids=["reference"],
                                       steps=cfg.reference_steps or cfg.train.steps, progress=progress,
                                       keep=lambda i, model, j: save_proxy(tmp, model, j, extra=mixture))
            results.write_parquet(tmp / "results.parquet")
            final = results.filter(pl.col("step") == pl.col("step").max()).to_dicts()[0]
        else:
            write_json(tmp / "proxy.json", extra)
    return StageOutcome(metadata={"enabled": cfg.enabled, "final": final, "path": layout.reference_proxy})


__all__ = ["train_reference_proxy", "scores_read_by", "skipped_outcome", "SKIP_REASON"]
