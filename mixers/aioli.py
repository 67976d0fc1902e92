"""Aioli (Chen et al., 2024, "Aioli: A Unified Optimization Framework for Language Model Data Mixing"):
online mixing inside one training run, written against a small trainer interface.

Linear Mixing Optimization: the loss of group i moves as L_i^{t+1} = L_i^t - sum_j A_ij p_j (the dynamic
mixing law); Aioli estimates A on the fly and updates the proportions by exponentiated gradient,
p_j <- p_j exp(eta * sum_i A_ij).

One round (``update_steps`` training steps):
1. LearnParams: ``lp_rounds`` passes over a random permutation of the k groups; for group j train
   ``lp_steps`` steps on the (smoothed) one-hot mixture q_j (``one_hot_factor`` on j, the rest spread evenly),
   evaluate, and accumulate B[:, j] += loss_before - loss_after (loss_before = the previous evaluation).
   B is averaged over passes; with a smoothed one-hot, A solves A Q^T = B (Q's rows are the q_j; singular when
   one_hot_factor = 1/k, refused). We also divide by ``lp_steps`` so A is a per-step rate (the reference keeps
   the raw drop; the normalization below makes the two identical for the update).
2. Normalize A: subtract min(A) if negative, then divide by its sum.
3. Update p. Without EMA: p <- p * exp(eta * colsum(A)), cumulative from uniform. With EMA (all released
   scripts): Abar = (1 - ema) A + ema Abar_prev, p = normalize(exp(eta * colsum(Abar))) from uniform.
4. Train on p for the rest of the round.

Budget: every training step, probes included, counts: the steps passed to ``trainer.train`` sum to exactly
``total_steps`` (the reference's 7-group configuration advances its counter by more than it trains; here a
round that cannot hold its probes is refused up front). The last round takes the remainder of the budget.

Restricted setting: train ``prior_steps`` on a given ``prior_mixture`` first (counted in the budget), then run
the loop over the remaining steps; the loop starts from uniform as the reference does, or from the prior
mixture with ``init="prior"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np


class MixtureTrainer(Protocol):
    """What Aioli needs from a training run. ``train`` runs exactly ``steps`` optimizer steps with batches drawn
    by ``mixture`` (a length-k vector on the simplex over the training groups); ``evaluate`` returns the
    current validation loss of each evaluation group (usually the same k groups)."""

    def train(self, mixture: np.ndarray, steps: int) -> None: ...

    def evaluate(self) -> np.ndarray: ...


@dataclass(frozen=True)
class AioliParams:
    total_steps: int
    update_steps: int = 250
    lp_rounds: int = 4
    lp_steps: int = 4
    one_hot_factor: float = 0.625
    eta: float = 0.2
    ema: float | None = 0.1
    prior_mixture: tuple[float, ...] | None = None
    prior_steps: int = 0
    init: Literal["uniform", "prior"] = "uniform"
    seed: int = 0


@dataclass(frozen=True)
class Segment:
    start: int
    steps: int
    mixture: tuple[float, ...]
    kind: Literal["prior", "probe", "train"]


@dataclass
class AioliResult:
    mixture: np.ndarray                      # p at the end of the run
    average_mixture: np.ndarray              # step-weighted average of the training segments ("train" kind)
    schedule: list[Segment]
    history: list[dict] = field(default_factory=list)   # per round: A, p, losses before
    steps_trained: int = 0


def smoothed_one_hot(k: int, j: int, factor: float) -> np.ndarray:
    q = np.full(k, (1.0 - factor) / (k - 1) if k > 1 else 0.0)
    q[j] = factor if k > 1 else 1.0
    return q


def probe_matrix(k: int, factor: float) -> np.ndarray:
    """Q with row j = q_j."""
    return np.stack([smoothed_one_hot(k, j, factor) for j in range(k)])


def learn_params(trainer: MixtureTrainer, k: int, *, lp_rounds: int, lp_steps: int, one_hot_factor: float,
                 rng: np.random.Generator, on_segment=None) -> np.ndarray:
    """Estimate the (n_eval x k) mixing-law matrix A per training step from one-hot probes."""
    if k > 1 and abs(one_hot_factor - 1.0 / k) < 1e-12:
        raise ValueError(f"one_hot_factor = 1/k = {1.0 / k:.4f} makes the probes identical (Q is singular)")
    before = np.asarray(trainer.evaluate(), np.float64)
    B = np.zeros((len(before), k))
    Q = probe_matrix(k, one_hot_factor)
    for _ in range(lp_rounds):
        for j in rng.permutation(k):
            trainer.train(Q[j], lp_steps)
            if on_segment is not None:
                on_segment(Q[j], lp_steps)
            after = np.asarray(trainer.evaluate(), np.float64)
            B[:, j] += before - after
            before = after
    B /= lp_rounds
    if one_hot_factor == 1.0:
        A = B
    else:
        # B = A Q^T  =>  A^T = solve(Q, B^T)   (Q square, rows q_j).
        A = np.linalg.solve(Q, B.T).T
    return A / lp_steps


def normalize_A(A: np.ndarray) -> np.ndarray:
    A = np.array(A, np.float64)
    if A.min() < 0:
        A = A - A.min()
    total = A.sum()
    if total <= 0:
        # Nothing learned (all-equal A): no direction to move in.
        return np.full_like(A, 1.0 / A.size)
    return A / total


def eg_update(log_p: np.ndarray, A_norm: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """Exponentiated gradient in log space: returns (new log p, p on the simplex)."""
    log_p = log_p + eta * A_norm.sum(axis=0)
    log_p = log_p - log_p.max()
    p = np.exp(log_p)
    return log_p, p / p.sum()


def plan_rounds(budget: int, update_steps: int) -> list[int]:
    """Round lengths that sum to ``budget``: full rounds, the last one takes the remainder."""
    if budget <= 0:
        return []
    n = max(1, budget // update_steps)
    rounds = [update_steps] * n
    rounds[-1] += budget - update_steps * n
    return rounds


def run_aioli(trainer: MixtureTrainer, k: int, params: AioliParams) -> AioliResult:
    """Run Aioli's online loop; returns the final mixture and the full schedule of trained segments."""
    P = params
    probe_steps = P.lp_rounds * k * P.lp_steps
    if P.prior_steps < 0 or P.prior_steps > P.total_steps:
        raise ValueError("prior_steps must be within the budget")
    if P.prior_steps and P.prior_mixture is None:
        raise ValueError("prior_steps > 0 needs prior_mixture (the restricted setting)")
    rounds = plan_rounds(P.total_steps - P.prior_steps, P.update_steps)
    if rounds and min(rounds) < probe_steps:
        raise ValueError(f"a round of {min(rounds)} steps cannot hold its {probe_steps} probe steps "
                         f"(lp_rounds x k x lp_steps = {P.lp_rounds} x {k} x {P.lp_steps}); raise update_steps")
    rng = np.random.default_rng(P.seed)
    schedule: list[Segment] = []
    step = 0

    def record(mixture, steps, kind):
        nonlocal step
        schedule.append(Segment(step, int(steps), tuple(float(x) for x in mixture), kind))
        step += int(steps)

    prior = None if P.prior_mixture is None else np.asarray(P.prior_mixture, np.float64)
    if prior is not None:
        if prior.shape != (k,) or np.any(prior < 0) or abs(prior.sum() - 1) > 1e-6:
            raise ValueError("prior_mixture must be k non-negative weights summing to 1")
    if P.prior_steps:
        trainer.train(prior, P.prior_steps)
        record(prior, P.prior_steps, "prior")

    if P.init == "prior" and prior is not None:
        log_p = np.log(np.clip(prior, 1e-12, None))
    else:
        log_p = np.zeros(k)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    base_log_p = log_p.copy()
    A_bar = None
    history = []
    for length in rounds:
        A = learn_params(trainer, k, lp_rounds=P.lp_rounds, lp_steps=P.lp_steps,
                         one_hot_factor=P.one_hot_factor, rng=rng,
                         on_segment=lambda q, s: record(q, s, "probe"))
        A_n = normalize_A(A)
        if P.ema is None:
            log_p, p = eg_update(log_p, A_n, P.eta)
        else:
            A_bar = A_n if A_bar is None else (1 - P.ema) * A_n + P.ema * A_bar
            log_p, p = eg_update(base_log_p, A_bar, P.eta)
        history.append({"A": A.tolist(), "A_normalized": A_n.tolist(), "mixture": p.tolist()})
        rest = length - probe_steps
        if rest:
            trainer.train(p, rest)
            record(p, rest, "train")
    if step != P.total_steps:  # pragma: no cover - guarded by plan_rounds; kept as an invariant
        raise AssertionError(f"trained {step} steps, budget {P.total_steps}")
    trained = [s for s in schedule if s.kind == "train"]
    if trained:
        avg = sum(np.asarray(s.mixture) * s.steps for s in trained) / sum(s.steps for s in trained)
    else:
        avg = p.copy()
    return AioliResult(mixture=p, average_mixture=avg, schedule=schedule, history=history, steps_trained=step)


__all__ = ["AioliParams", "AioliResult", "MixtureTrainer", "Segment", "eg_update", "learn_params",
           "normalize_A", "plan_rounds", "probe_matrix", "run_aioli", "smoothed_one_hot"]
