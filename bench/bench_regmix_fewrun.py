"""RegMix with the proxy runs a team can afford: Spearman x100 on the released 1M test runs vs training runs.

Data: ../shared/regmix (512 training and 256 test runs, 17 Pile domains; target: Pile-CC validation loss, the
paper's). For 32, 64, 128, 256 and 512 training runs, 5 seeded random subsets each (at 512 every draw is the
full set), every regressor is fit on the subset and scored on the 256 test runs; mean and spread (std) over the
draws. ``auto`` chooses per target by 5-fold cross-validated Spearman on the subset only (mixers/regmix/auto.py);
which candidate it chose is counted.

Goals (issue 14): auto >= 95 at 64 runs and >= 99 at 512; at no run count more than 1 point below the best
single regressor. ``quick``: 32 and 64 runs, 2 draws.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from scipy.stats import spearmanr

from bench.bench_mixers import _load
from mixers.regmix.regressors import CANDIDATES, make_regressor

SIZES = (32, 64, 128, 256, 512)
DRAWS = 5
KINDS = (*CANDIDATES, "auto")


def _score(kind: str, X: np.ndarray, y: np.ndarray, Xte: np.ndarray, yte: np.ndarray):
    model = make_regressor(kind, len(X)).fit(X, y)
    return float(spearmanr(model.predict(Xte), yte).statistic) * 100, model


def run(quick: bool = False) -> dict:
    Xtr, ytr = _load("train")
    Xte, yte = _load("test")
    sizes, draws = ((32, 64), 2) if quick else (SIZES, DRAWS)
    out: dict = {"target": "pile_cc validation loss", "n_test_runs": len(Xte), "draws": draws, "sizes": {}}
    for n in sizes:
        scores = {k: [] for k in KINDS}
        chosen: Counter = Counter()
        seconds = {k: 0.0 for k in KINDS}
        for d in range(draws):
            rows = np.sort(np.random.default_rng(d).choice(len(Xtr), n, replace=False))
            for kind in KINDS:
                t = time.perf_counter()
                s, model = _score(kind, Xtr[rows], ytr[rows], Xte, yte)
                seconds[kind] += time.perf_counter() - t
                scores[kind].append(s)
                if kind == "auto":
                    chosen[model.chosen] += 1
        row = {k: {"mean": round(float(np.mean(v)), 2), "std": round(float(np.std(v)), 2)} for k, v in scores.items()}
        best_single = max(CANDIDATES, key=lambda k: row[k]["mean"])
        out["sizes"][str(n)] = {**row, "auto_chose": dict(chosen), "best_single": best_single,
                                "auto_minus_best_single": round(row["auto"]["mean"] - row[best_single]["mean"], 2),
                                "fit_s_per_draw": {k: round(v / draws, 2) for k, v in seconds.items()}}
        print(n, {k: row[k]["mean"] for k in KINDS}, dict(chosen), flush=True)
    s = out["sizes"]
    out["goals"] = {
        "auto_ge_95_at_64": s.get("64", {}).get("auto", {}).get("mean", 0) >= 95,
        "auto_ge_99_at_512": ("512" in s and s["512"]["auto"]["mean"] >= 99) if "512" in s else None,
        "auto_within_1_of_best_single": all(v["auto_minus_best_single"] >= -1 for v in s.values()),
    }
    return out


def summarize(f: dict) -> str:
    head = ["runs", *KINDS, "auto chose"]
    lines = ["Spearman x100 on the 256 RegMix 1M test runs (Pile-CC loss), mean ± std over "
             f"{f['draws']} random subsets of the training runs:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, r in f["sizes"].items():
        cells = [f"{r[k]['mean']:.1f} ± {r[k]['std']:.1f}" for k in KINDS]
        lines.append(f"| {n} | " + " | ".join(cells) + " | " + ", ".join(f"{k} {v}" for k, v in r["auto_chose"].items())
                     + " |")
    lines += ["", "Goals: " + ", ".join(f"{k}: {'met' if v else ('n/a' if v is None else 'NOT met')}"
                                        for k, v in f["goals"].items())]
    return "\n".join(lines)
