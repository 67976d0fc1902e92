"""The data mixing law (Ye et al. 2024, "Data Mixing Laws", eq. 1 and its multi-domain form eq. 4):
the validation loss of target i under mixture r is ``L_i(r) = c_i + k_i * exp(sum_j t_ij * r_j)``.

One law per target (per domain, per target set); the caller combines them with the target weights exactly as
``fit: per_target`` combines any other regressor. M + 2 parameters per target, so it fits from a few dozen runs
where a 1000-tree forest is data-starved, and it extrapolates smoothly instead of predicting a constant outside
the sampled region.

Identifiability: mixtures sit on the simplex (sum_j r_j = 1), so ``log k`` and a common shift of the t_j are
the same function. We fit the canonical form ``c + exp(sum_j s_j r_j)`` (M + 1 free parameters, identifiable)
and report ``k = exp(mean s)``, ``t = s - mean s`` (sum t = 0).

Fitting (the paper fits each law by least squares from several initializations and keeps the best; we add a
robust loss because a proxy run that diverged or was cut short must not bend the whole law):
- initialization: for several floors c0 below min(y), ``log(y - c0)`` is linear in r, solved by least squares;
  plus seeded random perturbations of those starts;
- refinement: scipy's bounded trust-region least squares with a Huber loss, its scale set from the
  residuals' median absolute deviation;
- bounds: 0 <= c <= min(y) (the loss floor cannot exceed the best run; below 0 only for a negative target) and |s_j| <= S_BOUND;
- the ``refined`` starts with the lowest cost are refined, the one with the lowest robust cost after wins; equal inputs and seed give equal parameters (deterministic).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

S_BOUND = 30.0
# Floors tried for the linearized start, as fractions of the gap between 0 and min(y).
FLOOR_FRACTIONS = (0.0, 0.9, 0.98)


def _predict(params: np.ndarray, X: np.ndarray) -> np.ndarray:
    return params[0] + np.exp(np.clip(X @ params[1:], -S_BOUND * 2, S_BOUND * 2))


def _linearized_start(X: np.ndarray, y: np.ndarray, floor: float) -> np.ndarray:
    """``log(y - floor) ~ X @ s`` by (lightly regularized) least squares: a start for the robust fit."""
    z = np.log(np.maximum(y - floor, 1e-9))
    m = X.shape[1]
    s = np.linalg.solve(X.T @ X + 1e-6 * np.eye(m), X.T @ z)
    return np.concatenate([[floor], np.clip(s, -S_BOUND + 1e-6, S_BOUND - 1e-6)])


@dataclass
class MixingLawRegressor:
    """``L(r) = c + k * exp(t . r)`` fit by robust bounded least squares from several seeded starts."""

    restarts: int = 1          # random perturbations per linearized start (on top of the starts themselves)
    refined: int = 3           # starts refined by the robust fit (the lowest-cost ones)
    seed: int = 42
    kind: str = "mixing_law"
    params: np.ndarray | None = field(default=None, repr=False)   # canonical (c, s_1..s_M)

    @property
    def c(self) -> float:
        return float(self.params[0])

    @property
    def t(self) -> np.ndarray:
        s = self.params[1:]
        return s - s.mean()

    @property
    def k(self) -> float:
        return float(np.exp(self.params[1:].mean()))

    def fit(self, X: np.ndarray, y: np.ndarray) -> MixingLawRegressor:
        from scipy.optimize import least_squares

        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        if len(X) < 2:
            raise ValueError("the mixing law needs at least 2 runs")
        lo_y = float(np.min(y))
        m = X.shape[1]
        # A loss floor of 0 for losses (positive); a target that can be negative gets room below its minimum.
        lower_c = 0.0 if lo_y > 0 else lo_y - (float(np.ptp(y)) + 1.0)
        lower = np.concatenate([[lower_c], np.full(m, -S_BOUND)])
        upper = np.concatenate([[lo_y], np.full(m, S_BOUND)])
        rng = np.random.default_rng(self.seed)
        starts = []
        for frac in FLOOR_FRACTIONS:
            base = _linearized_start(X, y, lo_y * frac - 1e-6 * abs(lo_y) if frac and lo_y > 0 else lower_c)
            starts.append(base)
            for _ in range(self.restarts):
                jitter = np.concatenate([[0.0], rng.normal(0.0, 0.3, m)])
                starts.append(base + jitter)
        starts = [np.clip(x0, lower + 1e-9, upper - 1e-9) for x0 in starts]
        # Refine only the most promising starts (lowest robust cost as they are): the rest end in the same basin.
        scale0 = _common_scale(y)
        starts = sorted(starts, key=lambda x0: _huber_cost(_predict(x0, X) - y, scale0))[: self.refined]
        best, best_cost = None, np.inf
        for x0 in starts:
            r0 = _predict(x0, X) - y
            scale = max(1.4826 * float(np.median(np.abs(r0 - np.median(r0)))), 1e-6 * (np.ptp(y) + 1e-12), 1e-12)
            res = least_squares(lambda p: _predict(p, X) - y, x0, bounds=(lower, upper), loss="huber",
                                f_scale=scale, method="trf", max_nfev=200 * (m + 2))
            # Compare starts on one scale: the Huber cost at a common scale (the data's spread).
            cost = _huber_cost(res.fun, _common_scale(y))
            if cost < best_cost - 1e-15:
                best, best_cost = res.x, cost
        self.params = best
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _predict(self.params, np.asarray(X, np.float64))

    def fingerprint(self) -> str:
        return hashlib.sha256(b"mixing_law:" + np.asarray(self.params, "<f8").tobytes()).hexdigest()


def _common_scale(y: np.ndarray) -> float:
    return max(0.01 * float(np.std(y)), 1e-12)


def _huber_cost(r: np.ndarray, delta: float) -> float:
    a = np.abs(r)
    return float(np.sum(np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))))


__all__ = ["MixingLawRegressor"]
