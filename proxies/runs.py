"""The `proxy_runs` stage: every sweep of the spec (``sweep_stage.run_sweep``), gathered into one outcome.

Each sweep lands in ``proxy_runs/<sweep>/{results.parquet, meta.json}`` (columns: ``proxies/population.py``);
a sweep removed from the spec is deleted so that it cannot feed the mixers. The outcome carries the loss
curves, the per-sweep summary, a data version that changes exactly when a results table does, and the
``finite_losses`` check.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable

import numpy as np
import polars as pl

from pipeline import plots
from pipeline.engine.outcome import CheckOutcome, Image, StageOutcome
from pipeline.layout import Layout
from pipeline.store import file_sha256
from proxies.bins import Bins
from proxies.sweep_stage import RESULTS, SweepRun, SweepSampler, run_sweep


def remove_stale_sweeps(layout: Layout, wanted: set[str]) -> None:
    """Delete sweep folders (and their work folders) the spec no longer names."""
    for base in (layout.proxy_runs, layout.proxy_runs_work):
        if not base.is_dir():
            continue
        for folder in base.iterdir():
            if folder.is_dir() and folder.name not in wanted and ".tmp-" not in folder.name:
                shutil.rmtree(folder)


def loss_curves(layout: Layout, sweeps: list[str]) -> bytes | None:
    """Mean validation loss against training step, one line per proxy (the first 24 of each sweep)."""
    curves = {}
    for name in sweeps:
        table = pl.read_parquet(layout.proxy_sweep(name) / RESULTS)
        if not table.height or "loss_val_mean" not in table.columns:
            continue
        for run_id in table["run_id"].unique(maintain_order=True).to_list()[:24]:
            run = table.filter(pl.col("run_id") == run_id).sort("step")
            curves[run_id] = (run["step"].to_list(), run["loss_val_mean"].to_list())
    if not curves:
        return None
    return plots.loss_curves(curves, title="Proxy validation loss (mean over domains)", max_legend=8)


def finite_losses(final: pl.DataFrame, bins: Bins) -> CheckOutcome:
    # A domain without held-out documents (a single-document domain) has no validation loss to check.
    checked = [f"loss_{d}" for d in bins.domains if len(bins.val[d]) > 1] + [f"loss_target_{t}" for t in bins.targets]
    not_finite = [c for c in checked if c in final.columns and not np.isfinite(final[c].to_numpy()).all()]
    return CheckOutcome(name="finite_losses", passed=not not_finite, metadata={"not_finite": ", ".join(not_finite) or "none"})


def run_proxy_sweeps(spec, *, sampler: SweepSampler, progress: Callable[[str], None] | None = None) -> StageOutcome:
    """Run (or reuse) every sweep of ``spec`` on its engine; what the `proxy_runs` asset shows."""
    layout, cfg = Layout.at(spec.data_root), spec.proxies
    layout.proxy_runs.mkdir(parents=True, exist_ok=True)
    remove_stale_sweeps(layout, {s.name for s in cfg.sweeps})
    runs: dict[str, SweepRun] = {}
    for sweep in cfg.sweeps:
        runs[sweep.name] = run_sweep(sweep, config=cfg, bins_dir=layout.token_bins, out_dir=layout.proxy_sweep(sweep.name),
                                     work_dir=layout.proxy_sweep_work(sweep.name), seed=spec.seed_for(f"proxy_runs/{sweep.name}"),
                                     sampler=sampler, execution=spec.execution, progress=progress)
    finals = {name: r.results.filter(pl.col("step") == pl.col("step").max()) if r.results.height else r.results
              for name, r in runs.items()}
    final = pl.concat(list(finals.values()), how="diagonal_relaxed") if finals else pl.DataFrame()
    summary = {name: {"members": finals[name].height,
                      "reused": r.reused, "train_seconds": r.train_seconds, "populations": r.populations,
                      "sampler": r.meta.get("sampler", "disabled")} for name, r in runs.items()}
    losses = [c for c in final.columns if c.startswith("loss_")]
    metadata: dict = {}
    png = loss_curves(layout, list(runs))
    if png is not None:
        plots.save_png(png, layout.proxy_loss_curves)
        metadata["loss_curves"] = Image(png, alt="proxy validation loss curves")
    metadata |= {"sweeps": summary, "members": final.height,
                 "loss_spread": {c: [round(float(final[c].min()), 3), round(float(final[c].max()), 3)] for c in losses}
                 if final.height else {},
                 "path": layout.proxy_runs}
    version = hashlib.sha256("".join(file_sha256(layout.proxy_sweep(n) / RESULTS) for n in runs).encode()).hexdigest()
    return StageOutcome(metadata=metadata, data_version=version[:16],
                        checks=[finite_losses(final, Bins.open(layout.token_bins))])


__all__ = ["run_proxy_sweeps", "remove_stale_sweeps", "loss_curves", "finite_losses"]
