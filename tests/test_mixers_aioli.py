"""Aioli on a synthetic linear (dynamic) mixing law with a known A: L^{t+1} = L^t - A p^t per step."""

import numpy as np
import pytest

from mixers.aioli import (AioliParams, eg_update, learn_params, normalize_A, plan_rounds, probe_matrix,
                          run_aioli)


class LinearLawTrainer:
    """Each step on mixture p lowers the losses by A @ p (plus optional noise); counts every step."""

    def __init__(self, A: np.ndarray, noise: float = 0.0, seed: int = 0):
        self.A = np.asarray(A, float)
        self.loss = np.full(self.A.shape[0], 10.0)
        self.steps = 0
        self.calls: list[tuple[np.ndarray, int]] = []
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def train(self, mixture, steps):
        p = np.asarray(mixture, float)
        assert steps > 0 and p.shape == (self.A.shape[1],)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
        self.loss = self.loss - steps * (self.A @ p)
        self.steps += steps
        self.calls.append((p.copy(), steps))

    def evaluate(self):
        return self.loss + self.noise * self.rng.normal(size=self.loss.shape)


A_TRUE = np.array([[0.30, 0.05, 0.00],
                   [0.02, 0.10, 0.01],
                   [0.00, 0.04, 0.20]]) * 1e-2


@pytest.mark.parametrize("factor", [1.0, 0.625, 0.5])
def test_learn_params_recovers_A_noise_free(factor):
    trainer = LinearLawTrainer(A_TRUE)
    A = learn_params(trainer, 3, lp_rounds=2, lp_steps=5, one_hot_factor=factor, rng=np.random.default_rng(0))
    np.testing.assert_allclose(A, A_TRUE, rtol=1e-9, atol=1e-12)
    assert trainer.steps == 2 * 3 * 5


def test_learn_params_refuses_the_singular_factor():
    with pytest.raises(ValueError, match="singular"):
        learn_params(LinearLawTrainer(A_TRUE), 3, lp_rounds=1, lp_steps=1, one_hot_factor=1 / 3,
                     rng=np.random.default_rng(0))
    assert np.linalg.matrix_rank(probe_matrix(3, 0.5)) == 3


def test_normalization_and_update_stay_on_the_simplex():
    A = np.array([[-0.2, 0.5], [0.1, 0.3]])
    An = normalize_A(A)
    assert An.min() == 0 and An.sum() == pytest.approx(1.0)
    log_p = np.zeros(2)
    for _ in range(50):
        log_p, p = eg_update(log_p, An, eta=5.0)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
    assert p[1] > 0.99  # column 1 has the larger sum: repeated updates move all mass there


def test_uniform_column_sums_leave_p_uniform():
    A = np.array([[0.2, 0.1, 0.3], [0.3, 0.4, 0.2], [0.1, 0.1, 0.1]])  # every column sums to 0.6
    _, p = eg_update(np.zeros(3), normalize_A(A), eta=3.0)
    np.testing.assert_allclose(p, np.full(3, 1 / 3), atol=1e-15)
    # The same through the whole loop, EMA and not.
    trainer_A = A * 1e-3
    for ema in (None, 0.5):
        res = run_aioli(LinearLawTrainer(trainer_A), 3, AioliParams(total_steps=300, update_steps=100,
                                                                     lp_rounds=1, lp_steps=2, eta=1.0, ema=ema))
        np.testing.assert_allclose(res.mixture, np.full(3, 1 / 3), atol=1e-9)


@pytest.mark.parametrize("ema", [None, 0.1])
@pytest.mark.parametrize("total", [1000, 1037])
def test_budget_is_exact_probes_included(ema, total):
    trainer = LinearLawTrainer(A_TRUE)
    params = AioliParams(total_steps=total, update_steps=250, lp_rounds=4, lp_steps=4, one_hot_factor=0.625,
                         eta=0.2, ema=ema)
    res = run_aioli(trainer, 3, params)
    assert trainer.steps == total == res.steps_trained
    assert sum(s.steps for s in res.schedule) == total
    probes = [s for s in res.schedule if s.kind == "probe"]
    assert len(probes) == 4 * 3 * 4 and all(s.steps == 4 for s in probes)
    # Segments are contiguous and in order.
    assert [s.start for s in res.schedule] == list(np.cumsum([0] + [s.steps for s in res.schedule[:-1]]))


def test_aioli_moves_toward_the_group_that_helps_most():
    trainer = LinearLawTrainer(A_TRUE)
    res = run_aioli(trainer, 3, AioliParams(total_steps=2000, update_steps=200, lp_rounds=2, lp_steps=4,
                                             one_hot_factor=0.75, eta=1.0, ema=None))
    # Column sums of A_TRUE: 0.32, 0.19, 0.21 (x1e-2): group 0 lowers the total loss most.
    assert res.mixture.argmax() == 0 and res.mixture[0] > 0.5
    ema = run_aioli(LinearLawTrainer(A_TRUE), 3, AioliParams(total_steps=2000, update_steps=200, lp_rounds=2,
                                                             lp_steps=4, one_hot_factor=0.75, eta=1.0, ema=0.1))
    # With EMA, p restarts from uniform each round: p_max / p_min <= e^eta.
    assert ema.mixture.argmax() == 0 and ema.mixture.max() / ema.mixture.min() <= np.e + 1e-9


def test_restricted_setting_trains_the_prior_first_within_the_budget():
    trainer = LinearLawTrainer(A_TRUE)
    prior = (0.6, 0.3, 0.1)
    res = run_aioli(trainer, 3, AioliParams(total_steps=1000, update_steps=250, lp_rounds=1, lp_steps=4,
                                             prior_mixture=prior, prior_steps=500, init="prior", eta=0.5, ema=None))
    assert res.schedule[0].kind == "prior" and res.schedule[0].steps == 500
    assert res.schedule[0].mixture == pytest.approx(prior)
    assert trainer.steps == 1000
    assert plan_rounds(500, 250) == [250, 250]


def test_too_many_probe_steps_for_a_round_is_refused():
    with pytest.raises(ValueError, match="probe steps"):
        run_aioli(LinearLawTrainer(A_TRUE), 3, AioliParams(total_steps=100, update_steps=20, lp_rounds=4, lp_steps=4))


def test_noisy_law_still_ranks_groups():
    trainer = LinearLawTrainer(A_TRUE, noise=1e-4, seed=3)
    A = learn_params(trainer, 3, lp_rounds=4, lp_steps=20, one_hot_factor=1.0, rng=np.random.default_rng(1))
    assert np.argmax(A.sum(axis=0)) == 0
