"""The mixing law regressor (Ye et al. 2024) and ``regressor: auto`` on synthetic runs with a known truth."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from mixers.regmix import ProxyRuns, run_regmix
from mixers.regmix.auto import AutoRegressor
from mixers.regmix.law import MixingLawRegressor

C, K, T = 2.0, 0.8, np.array([-2.0, 1.0, 0.6, 0.4])   # sum(T) = 0: the canonical form the fit reports


def law(X):
    return C + K * np.exp(X @ T)


def mixtures(n, seed, m=4):
    return np.random.default_rng(seed).dirichlet(np.ones(m), size=n)


def test_law_recovers_its_parameters_and_predicts_up_to_noise():
    X = mixtures(60, seed=0)
    y = law(X) + np.random.default_rng(1).normal(0, 0.002, 60)
    fit = MixingLawRegressor().fit(X, y)
    assert fit.c == pytest.approx(C, abs=0.03)
    assert fit.k == pytest.approx(K, rel=0.05)
    assert np.abs(fit.t - T).max() < 0.1
    fresh = mixtures(500, seed=2)
    assert np.abs(fit.predict(fresh) - law(fresh)).max() < 0.01   # 5x the noise, on mixtures never seen
    # Deterministic: the same runs give the same parameters.
    assert np.array_equal(MixingLawRegressor().fit(X, y).params, fit.params)


def test_law_is_robust_to_a_diverged_run():
    X = mixtures(40, seed=3)
    y = law(X) + np.random.default_rng(4).normal(0, 0.002, 40)
    y[[5, 17]] += 1.5                                             # two proxy runs that diverged
    fit = MixingLawRegressor().fit(X, y)
    fresh = mixtures(500, seed=5)
    assert np.abs(fit.predict(fresh) - law(fresh)).max() < 0.02
    assert fit.c == pytest.approx(C, abs=0.05)


def test_law_respects_its_bounds():
    X = mixtures(30, seed=6)
    y = 0.5 + 0.01 * np.exp(X @ np.array([10.0, -10.0, 0.0, 0.0]))
    fit = MixingLawRegressor().fit(X, y)
    assert 0 <= fit.c <= y.min()
    assert np.all(np.abs(fit.params[1:]) <= 30.0)
    # A target that can be negative (e.g. a loss difference): the floor may go below 0, below its minimum.
    shifted = MixingLawRegressor().fit(X, y - 1.0)
    assert shifted.c <= (y - 1.0).min() and np.abs(shifted.predict(X) - (y - 1.0)).max() < 1e-3


def _truths():
    """One synthetic truth per candidate, each built so that candidate's form is the right one."""
    a = np.array([1.0, -0.5, 0.3, -0.8])
    return {
        # Linear: ridge is exact, and the simplest.
        "ridge": (40, lambda X: 3.0 + X @ a, 0.01),
        # Log-shaped returns in two domains pulling opposite ways: not monotone in any linear score.
        "ridge_log": (40, lambda X: 3.0 - 0.3 * np.log(X[:, 0] + 0.01) + 0.3 * np.log(X[:, 1] + 0.01), 0.01),
        # The law with two diverged runs: the robust fit ignores them, least squares bends towards them.
        "mixing_law": (40, law, "outliers"),
        # An exclusive-or of two thresholds: trees; a smooth law fits a spurious trend the trees must undo.
        "lightgbm": (200, lambda X: 3.0 + 0.5 * ((X[:, 0] > 0.25) ^ (X[:, 1] > 0.25)) + 0.05 * X[:, 2], 0.005),
        # The law plus a step on top: the law carries the trend, trees the step.
        "law_lightgbm": (200, lambda X: law(X) + 0.3 * ((X[:, 2] > 0.25) & (X[:, 3] > 0.25)), 0.01),
    }


@pytest.mark.parametrize("winner", list(_truths()))
def test_auto_chooses_the_candidate_whose_form_is_true(winner):
    n, truth, noise = _truths()[winner]
    X = mixtures(n, seed=11)
    rng = np.random.default_rng(12)
    if noise == "outliers":
        y = truth(X) + rng.normal(0, 0.005, n)
        y[[3, 9, 21]] += 2.0
    else:
        y = truth(X) + rng.normal(0, noise, n)
    auto = AutoRegressor(num_boost_round=300).fit(X, y)
    assert auto.chosen == winner, auto.cv_scores
    assert set(auto.cv_scores) == {"ridge", "ridge_log", "mixing_law", "lightgbm", "law_lightgbm"}
    assert auto.model.kind == winner
    fresh = mixtures(300, seed=13)
    assert spearmanr(auto.predict(fresh), truth(fresh)).statistic > (0.6 if winner == "lightgbm" else 0.8)


def test_auto_per_target_in_run_regmix_reports_its_choice():
    X = mixtures(30, seed=20)
    rng = np.random.default_rng(21)
    losses = {"a": law(X) + rng.normal(0, 0.003, 30), "b": 3.0 + X @ np.array([0.2, -1.0, 0.1, 0.3])}
    runs = ProxyRuns([f"r{i}" for i in range(30)], ["a", "b", "c", "d"], X, losses)
    res = run_regmix(runs, prior=np.full(4, 0.25), regressor="auto", num_samples=5000, top_k=20,
                     target_weights={"a": 0.5, "b": 0.5}, num_boost_round=100)
    choices = res.model.choices()
    assert set(choices) == {"a", "b"}
    assert choices["b"]["chosen"] == "ridge"
    # Few runs: the tree candidates are not eligible (a fold of 24 runs still grows them; 30 runs do).
    assert all(len(c["cv_spearman"]) >= 3 for c in choices.values())
    # Quality comes from the out-of-fold predictions the choice was made on: every run, once.
    assert res.quality["combined"].n_heldout == 30 and res.quality["a"].spearman > 0.8
    # The combined prediction is the weighted sum of the chosen per-target models.
    x = X[:5]
    assert np.allclose(res.model.predict(x), 0.5 * res.model.regressors["a"].predict(x)
                       + 0.5 * res.model.regressors["b"].predict(x))
