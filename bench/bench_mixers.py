"""Mixers benchmark: time to fit RegMix's regressors and to search 1,000,000 simulated mixtures.

Data: the released RegMix 1M proxy runs (../shared/regmix; 512 training runs, 17 domains, Pile-CC loss).
Figures: fit seconds (ridge, LightGBM 1000 rounds), search seconds and mixtures/s for 1M simulated mixtures
(Dirichlet sampling + prediction + running top-100), the Spearman x100 on the 256 test runs (the paper's
table), the Pile-CC weight of the searched mixture, and the candidate sampler's time for 512 mixtures.
``quick`` searches 100,000 mixtures instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from mixers.regmix import LightGBMRegressor, RidgeRegressor, regmix_bounds, sample_mixtures, search

REGMIX = Path(__file__).resolve().parent.parent.parent / "shared" / "regmix"
PILE_PRIOR = np.array([0.113285273, 0.079608651, 0.003913491, 0.185375901, 0.051081359, 0.015962925, 0.101750772,
                       0.003707518, 0.066529351, 0.001750772, 0.027085479, 0.236869207, 0.01184346, 0.007929969,
                       0.008032956, 0.038825953, 0.046446962])
PILE_CC = 11


def _load(split: str):
    X = pl.read_csv(REGMIX / f"{split}_mixture_1m.csv").drop("index").to_numpy()
    y = pl.read_csv(REGMIX / f"{split}_pile_loss_1m.csv")["metric/the_pile_pile_cc_val_loss"].to_numpy()
    return X, y


def run(quick: bool = False) -> dict:
    Xtr, ytr = _load("train")
    Xte, yte = _load("test")
    n = 100_000 if quick else 1_000_000
    upper = regmix_bounds(PILE_PRIOR)
    out: dict = {"n_train_runs": len(Xtr), "n_test_runs": len(Xte), "n_search": n}
    t = time.perf_counter()
    sample_mixtures(PILE_PRIOR, 512, seed=42)
    out["sample_512_candidates_s"] = round(time.perf_counter() - t, 3)
    for name, model in (("ridge", RidgeRegressor(alpha=0.01)), ("lightgbm", LightGBMRegressor())):
        t = time.perf_counter()
        model.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        found = search(model.predict, PILE_PRIOR, n=n, top_k=100, seed=0, upper=upper)
        search_s = time.perf_counter() - t
        out[name] = {
            "fit_s": round(fit_s, 3),
            "search_s": round(search_s, 2),
            "search_mixtures_per_s": round(n / search_s),
            "spearman_x100_test": round(float(spearmanr(model.predict(Xte), yte).statistic) * 100, 2),
            "pile_cc_weight": round(float(found.mixture[PILE_CC]), 3),
            "rejected_by_caps": found.n_rejected,
        }
    # Sampling alone (no prediction): how much of the search is the Dirichlet draws.
    t = time.perf_counter()
    search(lambda X: X[:, PILE_CC] * -1.0, PILE_PRIOR, n=n, top_k=100, seed=0, upper=upper)
    out["search_sampling_only_s"] = round(time.perf_counter() - t, 2)
    return out


def summarize(f: dict) -> str:
    lg, rd = f["lightgbm"], f["ridge"]
    return (f"RegMix on the released 1M runs: fit {rd['fit_s']} s (ridge) / {lg['fit_s']} s (LightGBM, 1000 rounds); "
            f"searching {f['n_search']:,} simulated mixtures takes {rd['search_s']} s with ridge and {lg['search_s']} s "
            f"with LightGBM ({f['search_sampling_only_s']} s of it is Dirichlet sampling). Spearman x100 on the 256 "
            f"test runs: LightGBM {lg['spearman_x100_test']} (paper 98.45), ridge {rd['spearman_x100_test']} "
            f"(paper 90.08); the LightGBM search puts {lg['pile_cc_weight']} on Pile-CC (paper ~0.89).")
