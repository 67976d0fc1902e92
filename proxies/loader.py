"""Mixture-sampling batches: every sequence picks its domain from the mixture, then a random window in it.

This is the sampling RegMix's proxies train with (a weighted random draw over domains, with replacement) rather
than a fixed per-domain token quota; a domain with weight 0 is never read. A mixture may change over training
(a schedule: piecewise-constant mixtures, as Aioli's rounds produce).

Determinism: the batch of step ``s`` depends only on ``(seed, s)`` (a fresh ``numpy`` generator per step), so a
run can resume at any step and a member reads the same stream whether it trains alone or in a population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def as_mixture(weights: Sequence[float] | np.ndarray, n_domains: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_domains,):
        raise ValueError(f"a mixture needs {n_domains} weights, got shape {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"mixture weights must be finite, non-negative and not all zero: {w}")
    return w / w.sum()


@dataclass(frozen=True)
class MixtureSchedule:
    """Piecewise-constant mixtures: ``weights[i]`` applies from step ``starts[i]`` (``starts[0] == 0``)."""

    starts: tuple[int, ...]
    weights: np.ndarray  # (n_pieces, n_domains), rows on the simplex

    @classmethod
    def constant(cls, weights: Sequence[float] | np.ndarray) -> "MixtureSchedule":
        w = np.asarray(weights, dtype=np.float64)
        return cls((0,), as_mixture(w, len(w))[None, :])

    @classmethod
    def of(cls, mixture: "MixtureSchedule | Sequence[float] | np.ndarray") -> "MixtureSchedule":
        return mixture if isinstance(mixture, MixtureSchedule) else cls.constant(mixture)

    def __post_init__(self) -> None:
        if not self.starts or self.starts[0] != 0 or list(self.starts) != sorted(set(self.starts)):
            raise ValueError("schedule starts must begin at 0 and increase")
        if len(self.starts) != len(self.weights):
            raise ValueError("one mixture per schedule start")

    @property
    def n_domains(self) -> int:
        return self.weights.shape[1]

    def at(self, step: int) -> np.ndarray:
        return self.weights[int(np.searchsorted(self.starts, step, side="right")) - 1]

    def average(self, steps: int) -> np.ndarray:
        """The mixture averaged over steps [0, steps): the effective mixture a proxy has seen."""
        ends = list(self.starts[1:]) + [max(steps, self.starts[-1])]
        lengths = np.array([max(0, min(e, steps) - s) for s, e in zip(self.starts, ends)], dtype=np.float64)
        if lengths.sum() == 0:
            return self.weights[0]
        return (lengths[:, None] * self.weights).sum(0) / lengths.sum()


class MixtureLoader:
    """Batches of ``batch_size`` windows of ``seq_len + 1`` tokens from per-domain token arrays."""

    def __init__(self, arrays: Sequence[np.ndarray], schedule: MixtureSchedule, *, batch_size: int, seq_len: int,
                 seed: int):
        if schedule.n_domains != len(arrays):
            raise ValueError(f"the mixture has {schedule.n_domains} weights but there are {len(arrays)} domains")
        for j, a in enumerate(arrays):
            if len(a) == 0 and (schedule.weights[:, j] > 0).any():
                raise ValueError(f"domain #{j} has no tokens but weight {schedule.weights[:, j].max():.3g}")
        self.arrays, self.schedule = list(arrays), schedule
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, int(seed)
        self._window = np.arange(seq_len + 1)

    def domains_at(self, step: int) -> tuple[np.random.Generator, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        return rng, rng.choice(len(self.arrays), size=self.batch_size, p=self.schedule.at(step))

    def batch(self, step: int) -> np.ndarray:
        """Token windows (batch_size, seq_len + 1) as int64; short domains wrap around."""
        rng, domains = self.domains_at(step)
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int64)
        for i, d in enumerate(domains):
            array = self.arrays[d]
            n = len(array)
            if n > self.seq_len + 1:
                start = int(rng.integers(0, n - self.seq_len))
                out[i] = array[start : start + self.seq_len + 1]
            else:
                start = int(rng.integers(0, n))
                out[i] = np.take(array, start + self._window, mode="wrap")
        return out


__all__ = ["MixtureSchedule", "MixtureLoader", "as_mixture"]
