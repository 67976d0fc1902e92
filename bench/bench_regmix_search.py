"""RegMix's search, 1,000,000 simulated mixtures + top-100 average, for every regressor: the default search
(tree models screened by a small distilled forest, the best 10,000 rescored with the full model) next to today's
full search (every candidate predicted by the full model), in one run.

Data: ../shared/regmix, every regressor fit on the 512 training runs (Pile-CC loss), the paper's prior and
bounds. Figures per regressor: fit seconds, search seconds (default), and for the tree models the full search's
seconds, the speed-up, the share of the full search's top-100 the screened one also finds, the L1 distance
between the two chosen mixtures, their Pile-CC weights and the full model's prediction at each.
Goal (issue 14): under 10 s for every regressor on 2 cores. ``quick``: 200,000 mixtures.
"""

from __future__ import annotations

import time

import numpy as np

from bench.bench_mixers import PILE_CC, PILE_PRIOR, _load
from mixers.regmix import regmix_bounds, search
from mixers.regmix.fit import ProxyRuns, fit_model
from mixers.regmix.regressors import CANDIDATES

RESCORE = 10_000
TREES = ("lightgbm", "law_lightgbm")


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(quick: bool = False) -> dict:
    Xtr, ytr = _load("train")
    n = 200_000 if quick else 1_000_000
    upper = regmix_bounds(PILE_PRIOR)
    runs = ProxyRuns([str(i) for i in range(len(Xtr))], [f"d{j}" for j in range(17)], Xtr, {"pile_cc": ytr})
    out: dict = {"n_search": n, "top_k": 100, "rescore": RESCORE, "regressors": {}}
    # The floor every search pays: drawing the candidates (a predictor that costs nothing).
    _, out["sampling_only_s"] = _timed(lambda: search(lambda X: -X[:, PILE_CC], PILE_PRIOR, n=n, top_k=100, seed=0,
                                                      upper=upper))
    out["sampling_only_s"] = round(out["sampling_only_s"], 2)
    for kind in (*CANDIDATES, "auto"):
        model, fit_s = _timed(lambda: fit_model(runs, {"pile_cc": 1.0}, kind))
        rescore = RESCORE if model.has_trees else None
        found, search_s = _timed(lambda: search(model.predict, PILE_PRIOR, n=n, top_k=100, seed=0, upper=upper,
                                                rescore=rescore))
        row = {"fit_s": round(fit_s, 2), "search_s": round(search_s, 2), "screened": bool(rescore),
               "pile_cc_weight": round(float(found.mixture[PILE_CC]), 4)}
        if kind == "auto":
            row["chosen"] = model.choices()["combined"]["chosen"]
        if kind in TREES:
            full, full_s = _timed(lambda: search(model.predict, PILE_PRIOR, n=n, top_k=100, seed=0, upper=upper))
            both = {tuple(r) for r in np.round(full.top, 12)} & {tuple(r) for r in np.round(found.top, 12)}
            row.update({
                "full_search_s": round(full_s, 2), "speedup": round(full_s / search_s, 1),
                "top100_overlap": len(both) / 100,
                "mixture_l1_vs_full": round(float(np.abs(found.mixture - full.mixture).sum()), 4),
                "full_pile_cc_weight": round(float(full.mixture[PILE_CC]), 4),
                "predicted_at_screened": round(float(model.predict(found.mixture[None])[0]), 4),
                "predicted_at_full": round(float(model.predict(full.mixture[None])[0]), 4),
            })
        out["regressors"][kind] = row
        print(kind, row, flush=True)
    out["goal_under_10s_every_regressor"] = all(r["search_s"] < 10 for r in out["regressors"].values())
    return out


def summarize(f: dict) -> str:
    head = ["regressor", "fit s", "search s (default)", "full search s", "speed-up", "top-100 shared",
            "L1 to full mixture", "Pile-CC weight (default / full)"]
    lines = [f"Search over {f['n_search']:,} simulated mixtures, top-{f['top_k']} average, regressors fit on 512 "
             "RegMix runs:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in f["regressors"].items():
        name = f"{k} ({r['chosen']})" if "chosen" in r else k
        lines.append("| " + " | ".join(str(x) for x in [
            name, r["fit_s"], r["search_s"], r.get("full_search_s", "-"), r.get("speedup", "-"),
            r.get("top100_overlap", "-"), r.get("mixture_l1_vs_full", "-"),
            f"{r['pile_cc_weight']} / {r.get('full_pile_cc_weight', '-')}"]) + " |")
    lines += ["", f"Drawing the {f['n_search']:,} candidates alone (a predictor that costs nothing): "
              f"{f['sampling_only_s']} s in the same run.",
              "", f"Goal (< 10 s for every regressor): {'met' if f['goal_under_10s_every_regressor'] else 'NOT met'}"]
    return "\n".join(lines)
