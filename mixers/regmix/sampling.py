"""RegMix candidate mixtures for the proxy sweep, following the reference `synthesize_mixture.py`.

Steps (RegMix, sail-sg/regmix ``mixture_config/synthesize_mixture.py``):
1. prior = each domain's share of the available tokens;
2. upper bound per domain min(max_epochs x prior, 1), from the *untempered* prior (or caps given explicitly);
3. tempered prior = prior^temperature (0.5), renormalized;
4. candidates: Dirichlet(tempered_prior x s) with s drawn among 15 strengths log-spaced in [0.1, 5.0];
   a candidate with any weight above its bound is rejected;
5. weights below ``minimum`` (2e-4) are zeroed, the row renormalized and rounded to the ``minimum`` grid;
6. de-duplicate: sort rows lexicographically, drop a row within L1 distance 1e-5 of the last kept row;
7. draw the requested number of rows without replacement with the seed.

Deliberate differences from the reference, none of which changes the distribution of the candidates:
- the reference draws one Dirichlet sample at each of the 15 strengths and keeps one at random; we pick the
  strength uniformly at random and draw only that sample (same distribution, 15x fewer draws), vectorized;
- after grid rounding the reference rows sum to 1 only approximately (the released data: "about 1"); we put
  the rounding residual (a few grid steps at most) on the largest entry so every candidate lies exactly on
  the simplex, which the proxy loader requires. The residual is re-checked against the bound.
"""

from __future__ import annotations

import numpy as np

TEMPERATURE = 0.5
MIN_STRENGTH = 0.1
MAX_STRENGTH = 5.0
N_STRENGTHS = 15
MAX_EPOCHS = 15.0
MINIMUM = 2e-4
SAMPLE_MULTIPLIER = 100


def token_prior(available_tokens: np.ndarray) -> np.ndarray:
    tokens = np.asarray(available_tokens, dtype=np.float64)
    if tokens.ndim != 1 or np.any(tokens < 0) or tokens.sum() <= 0:
        raise ValueError("available tokens must be a non-negative vector with a positive sum")
    return tokens / tokens.sum()


def regmix_bounds(prior: np.ndarray, *, max_epochs: float = MAX_EPOCHS) -> np.ndarray:
    """Upper bound per domain: min(max_epochs x prior, 1), prior untempered (the reference's rule)."""
    return np.minimum(np.asarray(prior, dtype=np.float64) * max_epochs, 1.0)


def strengths(min_strength: float = MIN_STRENGTH, max_strength: float = MAX_STRENGTH,
              count: int = N_STRENGTHS) -> np.ndarray:
    return np.logspace(np.log10(min_strength), np.log10(max_strength), count)


def dirichlet_candidates(alpha: np.ndarray, scales: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from Dirichlet(alpha x s), s uniform over ``scales``; rows that underflow are dropped."""
    which = rng.integers(0, len(scales), size=n)
    out = np.empty((n, len(alpha)))
    for i, s in enumerate(scales):
        rows = np.flatnonzero(which == i)
        if len(rows):
            out[rows] = rng.dirichlet(alpha * s, size=len(rows))
    return out[np.isfinite(out).all(axis=1)]


def round_to_grid(samples: np.ndarray, minimum: float) -> np.ndarray:
    """Zero weights below ``minimum``, renormalize, round to the ``minimum`` grid, fix the residual."""
    x = np.where(samples < minimum, 0.0, samples)
    x = x / x.sum(axis=1, keepdims=True)
    steps = np.round(x / minimum)
    total = int(round(1.0 / minimum))
    residual = total - steps.sum(axis=1)
    top = steps.argmax(axis=1)
    steps[np.arange(len(steps)), top] += residual
    return steps * minimum


def sort_and_deduplicate(samples: np.ndarray, *, threshold: float = 1e-5) -> np.ndarray:
    """Lexicographic sort (last column primary, as numpy's lexsort of the transposed array), then drop each
    row within L1 ``threshold`` of the previous *kept* row."""
    if len(samples) == 0:
        return samples
    ordered = samples[np.lexsort(samples.T)]
    # Consecutive near-duplicates almost always chain to the kept row; a vectorized first pass finds the
    # candidates and the exact sequential rule is applied only where rows are close to a neighbour.
    gaps = np.abs(np.diff(ordered, axis=0)).sum(axis=1)
    if not np.any(gaps <= threshold):
        return ordered
    kept = [ordered[0]]
    for row in ordered[1:]:
        if np.abs(row - kept[-1]).sum() > threshold:
            kept.append(row)
    return np.stack(kept)


def sample_mixtures(prior: np.ndarray, n: int, seed: int, *, temperature: float = TEMPERATURE,
                    min_strength: float = MIN_STRENGTH, max_strength: float = MAX_STRENGTH,
                    n_strengths: int = N_STRENGTHS, upper: np.ndarray | None = None,
                    max_epochs: float = MAX_EPOCHS, minimum: float = MINIMUM,
                    sample_multiplier: int = SAMPLE_MULTIPLIER) -> np.ndarray:
    """``n`` distinct RegMix candidate mixtures, shape (n, k), each row on the simplex and within bounds.

    ``prior`` is the token share of each domain (it need not be normalized). ``upper`` overrides the
    per-domain bound (default ``min(max_epochs x prior, 1)``); pass the caps from the training budget
    (``mixers.baselines.epoch_caps``) when the budget differs from the available tokens.
    """
    prior = token_prior(prior)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    bound = regmix_bounds(prior, max_epochs=max_epochs) if upper is None else np.asarray(upper, dtype=np.float64)
    if bound.shape != prior.shape:
        raise ValueError("upper must have one bound per domain")
    if bound.sum() < 1 - 1e-9:
        raise ValueError(f"the bounds sum to {bound.sum():.4f} < 1: no mixture satisfies them")
    alpha = prior ** temperature if temperature != 1.0 else prior.copy()
    alpha = alpha / alpha.sum()
    rng = np.random.default_rng(seed)
    scales = strengths(min_strength, max_strength, n_strengths)
    target = n * sample_multiplier
    kept: list[np.ndarray] = []
    have = 0
    # Rejection can be heavy when the bounds are tight; keep drawing (bounded) until enough survive.
    for _ in range(50):
        draw = dirichlet_candidates(alpha, scales, target, rng)
        draw = draw[np.all(draw <= bound, axis=1)]
        draw = round_to_grid(draw, minimum) if len(draw) else draw
        draw = draw[np.all(draw <= bound + 1e-12, axis=1)]
        kept.append(draw)
        have += len(draw)
        if have >= target and len(sort_and_deduplicate(np.concatenate(kept))) >= n:
            break
    pool = sort_and_deduplicate(np.concatenate(kept))
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} distinct candidates satisfy the bounds; asked for {n}")
    return pool[rng.choice(len(pool), size=n, replace=False)]


def sample_sweep_mixtures(prior: np.ndarray, n: int, *, seed: int, temperature: float = 0.5,
                          min_strength: float = 0.1, max_strength: float = 5.0) -> tuple[np.ndarray, str]:
    """Mixtures for a sweep (RegMix's candidate sampler) and the sampler's name for the sweep's meta.json."""
    mixtures = sample_mixtures(prior, n, seed=seed, temperature=temperature, min_strength=min_strength,
                               max_strength=max_strength)
    return np.asarray(mixtures, dtype=np.float64), "mixers.regmix.sample_mixtures"


__all__ = ["MAX_EPOCHS", "sample_sweep_mixtures", "MINIMUM", "TEMPERATURE", "dirichlet_candidates", "regmix_bounds", "round_to_grid",
           "sample_mixtures", "sort_and_deduplicate", "strengths", "token_prior"]
