"""RegMix: the paper's table on the released 1M proxy runs, the candidate sampler, the guard, the search."""

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from pathlib import Path
from mixers.regmix import LightGBMRegressor, ProxyRuns, RidgeRegressor, make_regressor, run_regmix, search
from mixers.regmix.sampling import regmix_bounds, round_to_grid, sample_mixtures, sort_and_deduplicate

REGMIX = Path(__file__).resolve().parent.parent.parent / "shared" / "regmix"
# The Pile's token-distribution prior of the 17 training domains (RegMix reference, in the CSV column order).
PILE_PRIOR = {
    "arxiv": 0.113285273, "freelaw": 0.079608651, "nih_exporter": 0.003913491, "pubmed_central": 0.185375901,
    "wikipedia_en": 0.051081359, "dm_mathematics": 0.015962925, "github": 0.101750772, "philpapers": 0.003707518,
    "stackexchange": 0.066529351, "enron_emails": 0.001750772, "gutenberg_pg_19": 0.027085479,
    "pile_cc": 0.236869207, "ubuntu_irc": 0.01184346, "europarl": 0.007929969, "hackernews": 0.008032956,
    "pubmed_abstracts": 0.038825953, "uspto_backgrounds": 0.046446962,
}
PRIOR = np.array(list(PILE_PRIOR.values()))


def _load(split: str):
    mix = pl.read_csv(REGMIX / f"{split}_mixture_1m.csv")
    loss = pl.read_csv(REGMIX / f"{split}_pile_loss_1m.csv")
    assert mix["index"].to_list() == loss["index"].to_list()
    domains = [c.removeprefix("train_the_pile_") for c in mix.columns[1:]]
    assert domains == list(PILE_PRIOR)
    return mix.drop("index").to_numpy(), loss["metric/the_pile_pile_cc_val_loss"].to_numpy()


@pytest.fixture(scope="module")
def pile():
    if not REGMIX.exists():
        pytest.skip(f"{REGMIX} not present")
    Xtr, ytr = _load("train")
    Xte, yte = _load("test")
    assert (len(Xtr), len(Xte)) == (512, 256)
    return Xtr, ytr, Xte, yte


@pytest.fixture(scope="module")
def lgbm(pile):
    Xtr, ytr, _, _ = pile
    return LightGBMRegressor().fit(Xtr, ytr)


@pytest.mark.needs_shared
def test_paper_table_spearman_on_1m_test_runs(pile, lgbm):
    Xtr, ytr, Xte, yte = pile
    tree = spearmanr(lgbm.predict(Xte), yte).statistic * 100
    ridge = spearmanr(RidgeRegressor(alpha=0.01).fit(Xtr, ytr).predict(Xte), yte).statistic * 100
    weight_only = spearmanr(-Xte[:, list(PILE_PRIOR).index("pile_cc")], yte).statistic * 100
    # Paper: LightGBM 98.45, linear 90.08; METHODS re-run: LightGBM (no early stopping) 99.0, ridge 90.1.
    assert tree >= 98.0
    assert 89.0 <= ridge <= 91.5
    # The trivial ranking by the Pile-CC weight gives ~81.7: both models must beat it clearly.
    assert weight_only == pytest.approx(81.7, abs=1.0)
    assert ridge > weight_only + 5 and tree > ridge + 5


@pytest.mark.needs_shared
def test_search_puts_most_weight_on_pile_cc(lgbm):
    upper = regmix_bounds(PRIOR)
    found = search(lgbm.predict, PRIOR, n=100_000, top_k=100, seed=0, upper=upper)
    w = dict(zip(PILE_PRIOR, found.mixture))
    assert w["pile_cc"] > 0.8  # the paper's search on these files: ~0.89
    assert max(w, key=w.get) == "pile_cc"
    assert found.mixture.sum() == pytest.approx(1.0)
    assert np.all(found.mixture <= upper + 1e-12)
    assert found.top.shape == (100, 17) and np.all(np.diff(found.top_predicted) >= 0)
    assert found.predicted_best <= lgbm.predict(found.mixture[None])[0] + 0.05


def test_sample_mixtures_follows_the_reference_rules():
    a = sample_mixtures(PRIOR, 512, seed=7)
    b = sample_mixtures(PRIOR, 512, seed=7)
    assert np.array_equal(a, b)
    assert a.shape == (512, 17)
    assert np.allclose(a.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(a <= np.minimum(15 * PRIOR, 1.0) + 1e-12)
    # On the 2e-4 grid, no positive weight below the minimum, no two rows closer than 1e-5 in L1.
    steps = a / 2e-4
    assert np.allclose(steps, np.round(steps), atol=1e-6)
    assert np.all((a == 0) | (a >= 2e-4 - 1e-12))
    assert len(sort_and_deduplicate(a)) == 512
    assert 0.2 < (a == 0).mean() < 0.8
    assert not np.array_equal(a, sample_mixtures(PRIOR, 512, seed=8))


def test_sampler_uses_the_tempered_prior_and_the_untempered_bound():
    # Without bounds the Dirichlet mean is the tempered prior at every strength.
    free = sample_mixtures(PRIOR, 4000, seed=1, upper=np.ones(17), minimum=1e-6, sample_multiplier=1)
    tempered = np.sqrt(PRIOR) / np.sqrt(PRIOR).sum()
    assert np.abs(free.mean(axis=0) - tempered).max() < 0.02
    assert np.abs(free.mean(axis=0) - PRIOR).max() > 0.05
    # A tight explicit bound is obeyed.
    upper = np.full(17, 0.2)
    tight = sample_mixtures(PRIOR, 64, seed=1, upper=upper)
    assert np.all(tight <= 0.2 + 1e-12)


def test_round_to_grid_and_dedup():
    x = np.array([[0.50011, 0.49979, 0.0001], [0.5, 0.5, 0.0]])
    r = round_to_grid(x, 1e-3)
    assert np.allclose(r, [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert len(sort_and_deduplicate(r)) == 1



def _reference_loop(prior: np.ndarray, n_draws: int, seed: int, *, minimum: float = 2e-4) -> np.ndarray:
    """The reference script's loop written out draw by draw (one Dirichlet sample at each of the 15 strengths,
    one of them kept at random, bound check, zeroing, grid rounding, de-duplication), independent of our vectorized sampler."""
    rng = np.random.default_rng(seed)
    bound = np.minimum(prior * 15, 1.0)
    alpha = np.sqrt(prior) / np.sqrt(prior).sum()
    rows = []
    for _ in range(n_draws):
        draws = [rng.dirichlet(alpha * s) for s in np.logspace(np.log10(0.1), np.log10(5.0), 15)]
        x = draws[rng.integers(15)]
        if np.any(x > bound):
            continue
        x = np.where(x < minimum, 0.0, x)
        rows.append(np.round(x / x.sum() / minimum) * minimum)
    # On a grid step far above 1e-5, "within L1 1e-5 of a kept row" means "equal": unique rows.
    return np.unique(np.array(rows), axis=0)


def test_sampler_matches_the_reference_loop_not_the_released_runs(pile):
    """Same distribution as the published script's loop: zero fraction and column means agree.

    The released 1M runs are NOT what the published defaults produce: 44.4% of their entries are zero, the
    script's own settings give ~61% on the same prior (a flatter prior explains the released files better;
    see README, "RegMix candidate mixtures"). We follow the script and pin that difference here."""
    ours = sample_mixtures(PRIOR, 2000, seed=11)
    ref = _reference_loop(PRIOR, 4000, seed=12)
    assert abs((ours == 0).mean() - (ref == 0).mean()) < 0.03
    assert np.abs(ours.mean(axis=0) - ref.mean(axis=0)).max() < 0.03
    released = np.vstack([pile[0], pile[2]])
    assert abs((released == 0).mean() - 0.444) < 0.005
    assert (ours == 0).mean() - (released == 0).mean() > 0.1

SCALES = (0.1, 0.1, 0.2, 1.0)  # domain d is the one that rewards weight: optimum far from uniform and natural


def _synthetic_runs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    domains = ["a", "b", "c", "d"]
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    X = sample_mixtures(prior, n, seed=seed)
    # Loss of domain j falls with its own share and, less, with a related domain's share.
    help_ = np.array([[1, 0.3, 0, 0], [0.3, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0.5, 1]])
    eff = X @ help_.T

    def truth(W):
        return {d: 3.0 - np.log(W @ help_[j] + 0.02) * scale for (j, d), scale in zip(enumerate(domains), SCALES)}

    losses = {d: v + rng.normal(0, 0.005, n) for d, v in truth(X).items()}
    assert eff.shape == X.shape
    return ProxyRuns([f"r{i}" for i in range(n)], domains, X, losses), prior, truth


def test_run_regmix_beats_baselines_on_a_known_law():
    runs, prior, truth = _synthetic_runs(96, seed=3)
    upper = np.minimum(15 * prior, 1.0)
    uniform, natural = np.full(4, 0.25), prior
    res = run_regmix(runs, prior=prior, upper=upper, regressor="lightgbm", num_samples=20_000, top_k=50,
                     seed=0, baselines={"uniform": uniform, "natural": natural}, num_boost_round=300)
    p = np.array([res.mixture[d] for d in runs.domains])
    assert p.sum() == pytest.approx(1.0) and np.all(p <= upper + 1e-12)

    def mean_true(W):
        return np.mean([v for v in truth(W[None]).values()])

    assert mean_true(p) < min(mean_true(uniform), mean_true(natural))
    assert res.predicted["regmix"] < min(res.predicted["uniform"], res.predicted["natural"])
    q = res.quality["combined"]
    # 96 runs x 0.2 = 19 held out < 20: 5-fold cross-validation predicts every run once instead.
    assert q.n_heldout == 96 and q.spearman > 0.7 and np.isfinite(q.mse)
    assert len(res.model.fingerprint()) == 64


def test_small_sample_guard_keeps_trees_informative():
    runs, _, _ = _synthetic_runs(24, seed=5)
    y = runs.losses["a"]
    default = LightGBMRegressor(min_child_samples=20).fit(runs.weights, y)
    assert np.ptp(default.predict(runs.weights)) == 0  # LightGBM's default: a constant
    guarded = make_regressor("lightgbm", 24).fit(runs.weights, y)
    assert guarded.kind == "lightgbm"
    assert spearmanr(guarded.predict(runs.weights), y).statistic > 0.8
    assert make_regressor("lightgbm", 8).kind == "ridge"


def test_target_weights_must_name_known_losses():
    runs, prior, _ = _synthetic_runs(24, seed=2)
    with pytest.raises(ValueError, match="no losses"):
        run_regmix(runs, prior=prior, target_weights={"nope": 1.0}, num_samples=100, top_k=5)


def test_per_target_fit_predicts_the_weighted_sum_of_its_regressors():
    from mixers.regmix import fit_model

    runs, _, _ = _synthetic_runs(48, seed=4)
    targets = {"a": 0.5, "d": 0.5}
    per = fit_model(runs, targets, "lightgbm", mode="per_target", num_boost_round=50)
    comb = fit_model(runs, targets, "lightgbm", mode="combined", num_boost_round=50)
    assert per.mode == "per_target" and set(per.regressors) == {"a", "d"}
    assert comb.mode == "combined" and set(comb.regressors) == {"combined"}
    X = runs.weights[:7]
    alone = {t: make_regressor("lightgbm", 48, num_boost_round=50).fit(runs.weights, runs.losses[t]) for t in targets}
    assert np.allclose(per.predict(X), 0.5 * alone["a"].predict(X) + 0.5 * alone["d"].predict(X))
    assert not np.allclose(per.predict(X), comb.predict(X))
    assert per.fingerprint() != comb.fingerprint()
    # One target: both modes are the same single regressor.
    assert fit_model(runs, {"a": 1.0}, "ridge", mode="per_target").mode == "combined"
    with pytest.raises(ValueError, match="per_target"):
        fit_model(runs, targets, "ridge", mode="both")


def test_screened_search_finds_the_full_searchs_mixture():
    """Screening with a distilled forest, then rescoring the best few with the full model, keeps the answer."""
    runs, prior, _ = _synthetic_runs(96, seed=3)
    model = LightGBMRegressor(num_boost_round=300).fit(runs.weights, runs.losses["d"])
    calls = []

    def predict(X):
        calls.append(len(X))
        return model.predict(X)

    full = search(model.predict, prior, n=60_000, top_k=50, seed=1)
    screened = search(predict, prior, n=60_000, top_k=50, seed=1, rescore=3000)
    assert sum(calls) == 10_000 + 3000          # the surrogate's sample, then the shortlist: never all 60,000
    # The k best predictions are as low as the full search's (here a forest plateau: all k tie, so which k of
    # the tied mixtures are kept is arbitrary and the averages differ a little).
    assert np.all(screened.top_predicted <= full.top_predicted + 1e-12)
    assert np.abs(screened.mixture - full.mixture).sum() < 0.05
