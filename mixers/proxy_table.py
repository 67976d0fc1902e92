"""Read the proxies' results table (one row per member and checkpoint) into RegMix's ``ProxyRuns``.

Columns (proxies/population.py): ``run_id``, ``seed``, ``step``, ``w_<domain>`` (the mixture the member saw),
``loss_<domain>`` (held-out validation loss per domain), ``loss_target_<t>`` (target sets). Target names in the
spec's ``mixing.target_weights`` are the domain name for ``loss_<domain>`` and ``target:<t>`` for a target set.

Only the last checkpoint of each run is used (RegMix regresses the final loss). A run id that appears with
several seeds is kept as separate rows (``<run_id>@<seed>``): the regression sees the seed noise, as it should.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from mixers.regmix.fit import ProxyRuns


def target_column(name: str) -> str:
    return f"loss_target_{name.removeprefix('target:')}" if name.startswith("target:") else f"loss_{name}"


def proxy_runs_from_table(table: pl.DataFrame, domains: Sequence[str]) -> ProxyRuns:
    missing = [f"w_{d}" for d in domains if f"w_{d}" not in table.columns]
    missing += [c for c in ("run_id", "step") if c not in table.columns]
    if missing:
        raise ValueError(f"the proxy-run table lacks columns {missing}")
    keys = ["run_id", "seed"] if "seed" in table.columns else ["run_id"]
    last = table.sort("step").group_by(keys, maintain_order=True).last().sort(keys)
    if last.height == 0:
        raise ValueError("the proxy-run table is empty")
    ids = last["run_id"].cast(pl.String).to_list()
    if "seed" in keys and last["seed"].n_unique() > 1:
        ids = [f"{r}@{s}" for r, s in zip(ids, last["seed"].to_list())]
    W = last.select([f"w_{d}" for d in domains]).to_numpy().astype(np.float64)
    W = W / W.sum(axis=1, keepdims=True)
    losses: dict[str, np.ndarray] = {}
    for d in domains:
        if f"loss_{d}" in last.columns:
            losses[d] = last[f"loss_{d}"].to_numpy().astype(np.float64)
    for c in last.columns:
        if c.startswith("loss_target_"):
            losses["target:" + c.removeprefix("loss_target_")] = last[c].to_numpy().astype(np.float64)
    # A domain with an empty validation split has NaN losses: it cannot be a target.
    losses = {k: v for k, v in losses.items() if np.all(np.isfinite(v))}
    return ProxyRuns(ids, list(domains), W, losses)


__all__ = ["proxy_runs_from_table", "target_column"]
