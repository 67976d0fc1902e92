"""Small PNG charts for asset metadata: the pictures people would rather look at than read.

Each function draws one figure with matplotlib's object API on the Agg canvas (no pyplot state, so
it is safe in threads and in a headless run worker) and returns the PNG bytes; ``save_png`` writes
them atomically. The PNG carries no timestamp or software tag, so the same data gives the same bytes.
Show one in the Dagster UI with ``assets.ops_metadata.image_metadata``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before any backend is chosen: a run worker has no display

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.store import atomic_file  # noqa: E402

WIDTH, HEIGHT, DPI = 6.4, 3.6, 90
# Colour-blind-safe pair (Okabe-Ito blue and orange) for "chosen" vs "reference".
CHOSEN, REFERENCE, NEUTRAL = "#0072B2", "#E69F00", "#555555"


def _figure(height: float = HEIGHT) -> Figure:
    figure = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No Software/date chunks: identical data -> identical bytes (useful for hashing and tests).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def mixture_bars(
    mixture: Mapping[str, float],
    reference: Mapping[str, float] | None = None,
    *,
    title: str = "Mixture",
    label: str = "chosen",
    reference_label: str = "natural",
) -> bytes:
    """Grouped bars per domain: the chosen proportions next to a reference (e.g. the natural mixture)."""
    domains = list(mixture) + [d for d in (reference or {}) if d not in mixture]
    figure = _figure()
    ax = figure.add_subplot()
    width = 0.4 if reference else 0.7
    xs = range(len(domains))
    ax.bar([x - (width / 2 if reference else 0) for x in xs], [mixture.get(d, 0.0) for d in domains],
           width, label=label, color=CHOSEN)
    if reference:
        ax.bar([x + width / 2 for x in xs], [reference.get(d, 0.0) for d in domains], width,
               label=reference_label, color=REFERENCE)
        ax.legend(frameon=False)
    ax.set_xticks(list(xs), domains, rotation=30, ha="right")
    ax.set_ylabel("proportion")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def loss_curves(
    curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "Loss",
    xlabel: str = "step",
    ylabel: str = "loss",
    max_legend: int = 10,
) -> bytes:
    """One line per named curve: either a list of values (x = 0, 1, ...) or an ``(xs, ys)`` pair."""
    figure = _figure()
    ax = figure.add_subplot()
    for name, curve in curves.items():
        xs, ys = curve if isinstance(curve, tuple) else (range(len(curve)), curve)
        ax.plot(list(xs), list(ys), label=name, linewidth=1.2)
    if 0 < len(curves) <= max_legend:
        ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def predicted_vs_actual(
    predicted: Sequence[float],
    actual: Sequence[float],
    *,
    title: str = "Predicted vs actual",
    unit: str = "loss",
) -> bytes:
    """A scatter with the y = x diagonal and the Spearman rank correlation in the corner."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} actual values")
    figure = _figure(height=WIDTH * 0.75)
    ax = figure.add_subplot()
    ax.scatter(actual, predicted, s=14, color=CHOSEN, alpha=0.8)
    if actual:
        lo, hi = min(min(actual), min(predicted)), max(max(actual), max(predicted))
        ax.plot([lo, hi], [lo, hi], color=NEUTRAL, linewidth=0.8, linestyle="--")
    rho = spearman(predicted, actual)
    if rho is not None:
        ax.text(0.03, 0.95, f"Spearman ρ = {rho:.3f}  (n = {len(actual)})", transform=ax.transAxes, va="top")
    ax.set_xlabel(f"actual {unit}")
    ax.set_ylabel(f"predicted {unit}")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def histogram(
    values: Sequence[float],
    *,
    bins: int = 30,
    title: str = "Histogram",
    xlabel: str = "value",
    ylabel: str = "count",
) -> bytes:
    figure = _figure()
    ax = figure.add_subplot()
    finite = [v for v in values if v is not None and math.isfinite(v)]
    ax.hist(finite, bins=bins, color=CHOSEN)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} (n = {len(finite)})")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def drops_by_reason(
    counts: Mapping[str, int] | Mapping[str, Mapping[str, int]],
    *,
    title: str = "Documents dropped, by reason",
) -> bytes:
    """Horizontal bars per reason, largest first; with ``{domain: {reason: n}}`` stacked by domain."""
    nested = bool(counts) and all(isinstance(v, Mapping) for v in counts.values())
    by_domain: dict[str, Mapping[str, int]] = counts if nested else {"": counts}  # type: ignore[assignment]
    totals: dict[str, int] = {}
    for per_reason in by_domain.values():
        for reason, n in per_reason.items():
            totals[reason] = totals.get(reason, 0) + int(n)
    reasons = sorted(totals, key=lambda r: (-totals[r], r))
    figure = _figure(height=max(1.6, 0.35 * len(reasons) + 1.0))
    ax = figure.add_subplot()
    left = [0] * len(reasons)
    for domain, per_reason in by_domain.items():
        widths = [int(per_reason.get(r, 0)) for r in reasons]
        ax.barh(reasons, widths, left=left, label=domain or None, color=None if nested else CHOSEN)
        left = [a + b for a, b in zip(left, widths)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:,}", va="center", fontsize="small")
    if nested:
        ax.legend(frameon=False, fontsize="small", loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.set_title(title if reasons else f"{title}: none")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation with average ranks for ties (None when undefined)."""
    if len(a) < 2 or len(a) != len(b):
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else None


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def save_png(png: bytes, path: str | os.PathLike) -> Path:
    """Write PNG bytes through a temporary name and a rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_bytes(png)
    return path


__all__ = [
    "drops_by_reason",
    "histogram",
    "loss_curves",
    "mixture_bars",
    "predicted_vs_actual",
    "save_png",
    "spearman",
]
