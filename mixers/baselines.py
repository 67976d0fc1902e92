"""Baseline mixtures: uniform (stratified), natural, temperature; all under a per-domain epoch cap.

A mixture is a dict ``domain -> proportion`` on the simplex. The cap says a domain may not be repeated more
than ``max_epochs`` times: with ``available[d]`` tokens and a training budget of ``budget`` tokens, its share
is at most ``min(max_epochs * available[d] / budget, 1)`` (RegMix's bound ``min(15 x prior, 1)`` is the case
``budget = sum(available)``, ``max_epochs = 15``).

Mass that a cap removes is handed to the uncapped domains in proportion to their own weight (water-filling),
so a capped uniform mixture stays uniform over the uncapped domains and a capped natural mixture stays
proportional to tokens over them. That is the usual reading of "sample by X, but never repeat more than E
epochs"; the papers do not specify the redistribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

BASELINES = ("uniform", "natural", "temperature")


class InfeasibleCapsError(ValueError):
    """The budget needs more tokens than ``max_epochs`` passes over all domains provide."""


def epoch_caps(available: Mapping[str, float], *, budget: float | None = None,
               max_epochs: float | None = None) -> dict[str, float]:
    """Per-domain upper bound on the proportion; 1.0 everywhere when no cap is set."""
    if max_epochs is None:
        return {d: 1.0 for d in available}
    total = float(sum(available.values()))
    budget = total if budget is None else float(budget)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    return {d: min(max_epochs * float(n) / budget, 1.0) for d, n in available.items()}


def apply_caps(weights: np.ndarray, caps: np.ndarray, *, tol: float = 1e-12) -> np.ndarray:
    """Scale ``weights`` to sum 1 while no entry exceeds its cap; surplus goes pro rata to uncapped entries.

    Solves p_j = min(cap_j, s * w_j) for the scale s with sum(p) = 1. Domains with zero weight stay zero
    unless every positive-weight domain is capped, in which case the rest is spread uniformly over them.
    """
    w = np.asarray(weights, dtype=np.float64)
    u = np.asarray(caps, dtype=np.float64)
    if w.shape != u.shape or w.ndim != 1:
        raise ValueError("weights and caps must be 1-d arrays of the same length")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    if u.sum() < 1 - 1e-9:
        raise InfeasibleCapsError(
            f"the caps sum to {u.sum():.4f} < 1: the budget needs more repeats than max_epochs allows")
    p = np.zeros_like(w)
    capped = np.zeros(w.shape, dtype=bool)
    # Each pass pins at least one more domain at its cap, so this ends in at most len(w) passes.
    for _ in range(len(w) + 1):
        free = ~capped & (w > 0)
        remaining = 1.0 - u[capped].sum()
        if not free.any():
            break
        p[free] = w[free] * remaining / w[free].sum()
        p[capped] = u[capped]
        over = free & (p > u + tol)
        if not over.any():
            return p
        capped |= over
    # Every positive-weight domain is capped: fill the zero-weight ones uniformly up to their caps.
    p = np.where(capped, u, 0.0)
    rest = ~capped
    return p + _waterfill_uniform(1.0 - p.sum(), u * rest, rest)


def _waterfill_uniform(mass: float, caps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(caps)
    active = mask.copy()
    while mass > 1e-15 and active.any():
        level = mass / active.sum()
        fill = np.minimum(caps - out, level) * active
        out += fill
        mass -= fill.sum()
        active &= out < caps - 1e-15
    return out


def baseline_mixture(name: str, available: Mapping[str, float], *, budget: float | None = None,
                     max_epochs: float | None = None, temperature: float = 2.0) -> dict[str, float]:
    """One of the baselines over the domains of ``available`` (tokens per domain), capped.

    - ``uniform`` (stratified): equal share per domain (Aioli's strongest baseline).
    - ``natural``: proportional to available tokens.
    - ``temperature``: proportional to tokens^(1/T) (T = 1 is natural, T -> inf is uniform).
    """
    domains: Sequence[str] = list(available)
    tokens = np.array([float(available[d]) for d in domains])
    if np.any(tokens < 0):
        raise ValueError("available token counts must be non-negative")
    if name == "uniform":
        w = (tokens > 0).astype(float)
    elif name == "natural":
        w = tokens
    elif name == "temperature":
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        w = np.where(tokens > 0, tokens, 0.0) ** (1.0 / temperature)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    caps = epoch_caps(available, budget=budget, max_epochs=max_epochs)
    p = apply_caps(w, np.array([caps[d] for d in domains]))
    return dict(zip(domains, p.tolist()))


def epochs(mixture: Mapping[str, float], available: Mapping[str, float], budget: float) -> dict[str, float]:
    """How many passes over each domain a mixture needs for ``budget`` tokens."""
    out = {}
    for d, share in mixture.items():
        if available[d] > 0:
            out[d] = share * budget / available[d]
        else:
            out[d] = float("inf") if share > 0 else 0.0
    return out


__all__ = ["BASELINES", "InfeasibleCapsError", "apply_caps", "baseline_mixture", "epoch_caps", "epochs"]
