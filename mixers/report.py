"""The mixture report: why these proportions. Markdown + PNG plots (matplotlib, Agg backend, no display).

- proportions.png: the chosen mixture next to the natural one (and the other baselines), per domain;
- fit.png (RegMix): predicted vs actual target loss on the held-out proxy runs, with Spearman and MSE;
- schedule.png (Aioli): the mixture over training steps, probe segments shaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_proportions(path: Path, domains: Sequence[str], chosen: Mapping[str, float], method: str,
                     baselines: Mapping[str, Mapping[str, float]], caps: Mapping[str, float] | None = None) -> Path:
    plt = _plt()
    series = {method: chosen, **baselines}
    x = np.arange(len(domains))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(domains) + 2), 4))
    for i, (name, mix) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [mix.get(d, 0.0) for d in domains], width, label=name)
    if caps:
        ax.scatter(x, [min(caps[d], 1.0) for d in domains], marker="_", s=400, color="black", label="epoch cap",
                   zorder=3)
    ax.set_xticks(x, domains, rotation=30, ha="right")
    ax.set_ylabel("proportion")
    ax.set_title(f"{method} mixture vs baselines")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fit(path: Path, predicted: np.ndarray, actual: np.ndarray, *, title: str, spearman: float,
             mse: float) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(actual, predicted, s=14, alpha=0.8)
    lo = float(min(np.min(actual), np.min(predicted)))
    hi = float(max(np.max(actual), np.max(predicted)))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.set_xlabel("actual held-out loss")
    ax.set_ylabel("predicted loss")
    ax.set_title(f"{title}\nSpearman {spearman:.3f}, MSE {mse:.2e}, n={len(actual)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_schedule(path: Path, domains: Sequence[str], segments: Sequence[dict]) -> Path:
    """``segments``: dicts with start, steps, mixture (list), kind."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    train = [s for s in segments if s["kind"] != "probe"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, d in enumerate(domains):
        color = colors[j % len(colors)]
        for i, s in enumerate(train):
            # One flat line per trained segment: probes in between are shaded, not drawn as this mixture.
            ax.hlines(s["mixture"][j], s["start"], s["start"] + s["steps"], colors=color, label=d if i == 0 else None)
    for s in segments:
        if s["kind"] == "probe":
            ax.axvspan(s["start"], s["start"] + s["steps"], color="grey", alpha=0.15, lw=0)
    ax.set_xlabel("training step (grey: LearnParams probes)")
    ax.set_ylabel("proportion")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return out


def paired_differences(validation: Mapping[str, dict], name: str, baseline: str) -> list[float] | None:
    """Per-seed differences of the average held-out loss, ``name`` minus ``baseline`` (negative: better).
    Seeds are paired: the same seed gives the same initialization and data stream to every mixture."""
    a, b = validation.get(name, {}), validation.get(baseline, {})
    if "per_seed_average" not in a or "per_seed_average" not in b or len(a["per_seed_average"]) != len(
            b["per_seed_average"]):
        return None
    return [float(x - y) for x, y in zip(a["per_seed_average"], b["per_seed_average"])]


def paired_lines(validation: Mapping[str, dict], method: str) -> list[str]:
    """A table of the chosen method's (and its online run's) paired per-seed differences vs each baseline."""
    rows = []
    for name in [n for n in (method, f"{method}_online") if n in validation]:
        for base in [n for n in validation if n not in (method, f"{method}_online")]:
            d = paired_differences(validation, name, base)
            if not d:
                continue
            se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")  # one seed: none
            rows.append([f"{name} - {base}", float(np.mean(d)), se if np.isfinite(se) else "-",
                         f"{sum(x < 0 for x in d)}/{len(d)}"])
    if not rows:
        return []
    return ["Paired by seed (negative = the chosen mixture is better; one seed's noise is often 0.05-0.1):", "",
            *_table(["difference", "mean", "std. error", "seeds better"], rows), ""]


def choice_lines(choices: Mapping[str, dict], quality: Mapping[str, dict]) -> list[str]:
    """``regressor: auto``: each candidate's cross-validated Spearman per target, the chosen one in bold."""
    names = list(dict.fromkeys(c for v in choices.values() for c in v["cv_spearman"]))
    rows = []
    for t, v in choices.items():
        cells = [f"**{v['cv_spearman'][c]:.3f}**" if c == v["chosen"] and c in v["cv_spearman"]
                 else (f"{v['cv_spearman'][c]:.3f}" if c in v["cv_spearman"] else "-") for c in names]
        own = (quality.get(t) or {}).get("weight_only_spearman")
        rows.append([t, *cells, v["chosen"], "-" if own is None else float(own)])
    return ["## Regressor choice (auto: 5-fold cross-validated Spearman on the proxy runs)", "",
            *_table(["target", *names, "chosen", "rank by own weight"], rows), ""]


def validation_lines(title: str, validation: Mapping[str, dict], method: str) -> list[str]:
    names = list(validation)
    targets = sorted({t for v in validation.values() for t in v["losses"]})
    rows = [[t, *[float(validation[n]["losses"][t]) for n in names]] for t in targets]
    rows.append(["**average**", *[float(validation[n]["average"]) for n in names]])
    return [title, "", *_table(["target", *names], rows), "", *paired_lines(validation, method)]


def report_markdown(*, method: str, domains: Sequence[str], chosen: Mapping[str, float],
                    baselines: Mapping[str, Mapping[str, float]], caps: Mapping[str, float],
                    epochs: Mapping[str, float], predicted: Mapping[str, float] | None = None,
                    quality: Mapping[str, dict] | None = None, validation: Mapping[str, dict] | None = None,
                    choices: Mapping[str, dict] | None = None, validation_large: Mapping | None = None,
                    notes: Sequence[str] = ()) -> str:
    lines = [f"# Mixture report ({method})", ""]
    header = ["domain", method, *baselines, "cap", "epochs"]
    rows = [[d, float(chosen[d]), *[float(b[d]) for b in baselines.values()], float(caps[d]),
             float(epochs[d])] for d in domains]
    lines += ["## Proportions", "", *_table(header, rows), "", "![proportions](proportions.png)", ""]
    if predicted:
        lines += ["## Predicted target loss (regression model)", "",
                  *_table(["mixture", "predicted"], [[k, float(v)] for k, v in predicted.items()]), ""]
    if quality:
        rows = [[t, q["n_fit"], q["n_heldout"], q["spearman"], q["mse"],
                 q.get("weight_only_spearman") if q.get("weight_only_spearman") is not None else "-"]
                for t, q in quality.items()]
        lines += ["## Fit quality on held-out proxy runs", "",
                  *_table(["target", "runs fit", "held out", "Spearman", "MSE", "rank by own weight"], rows),
                  "", "![fit](fit.png)", ""]
    if choices:
        lines += choice_lines(choices, quality or {})
    if validation:
        lines += validation_lines("## Validation runs (same token budget, held-out loss)", validation, method)
    if validation_large:
        ratio = validation_large["ratio_to_proxies"]
        title = (f"## Validation at a larger scale ({validation_large['non_embedding_params']:,} non-embedding "
                 f"parameters, {ratio:.1f}x the proxies'; {validation_large['steps']} steps)")
        lines += validation_lines(title, validation_large["runs"], method)
        if ratio < 8:
            lines += [f"Note: {ratio:.1f}x is below the 8x RegMix checks rank invariance at.", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


__all__ = ["choice_lines", "plot_fit", "plot_proportions", "plot_schedule", "report_markdown"]
