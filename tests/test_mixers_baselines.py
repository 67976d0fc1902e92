import numpy as np
import pytest

from mixers.baselines import InfeasibleCapsError, apply_caps, baseline_mixture, epoch_caps, epochs

AVAILABLE = {"web": 8_000_000, "code": 1_000_000, "math": 100_000, "law": 900_000}


def test_natural_uncapped_is_token_share():
    p = baseline_mixture("natural", AVAILABLE)
    total = sum(AVAILABLE.values())
    assert p == pytest.approx({d: n / total for d, n in AVAILABLE.items()})


def test_uniform_respects_epoch_cap_and_stays_uniform_elsewhere():
    # 4M-token budget, at most 2 epochs: math can give at most 200k tokens = 5% of the budget.
    p = baseline_mixture("uniform", AVAILABLE, budget=4_000_000, max_epochs=2)
    assert p["math"] == pytest.approx(0.05)
    assert p["web"] == pytest.approx(p["code"]) == pytest.approx(p["law"]) == pytest.approx(0.95 / 3)
    assert sum(p.values()) == pytest.approx(1.0)
    assert max(epochs(p, AVAILABLE, 4_000_000).values()) <= 2 + 1e-9


def test_temperature_between_natural_and_uniform():
    nat = baseline_mixture("natural", AVAILABLE)
    t2 = baseline_mixture("temperature", AVAILABLE, temperature=2.0)
    t1 = baseline_mixture("temperature", AVAILABLE, temperature=1.0)
    assert t1 == pytest.approx(nat)
    assert nat["math"] < t2["math"] < 0.25
    assert nat["web"] > t2["web"] > 0.25
    w = np.sqrt(np.array(list(AVAILABLE.values()), float))
    assert list(t2.values()) == pytest.approx(list(w / w.sum()))


def test_cascading_caps_and_redistribution_are_proportional():
    p = apply_caps(np.array([0.5, 0.3, 0.2]), np.array([0.3, 1.0, 0.25]))
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(0.3) and p[2] == pytest.approx(0.25)
    assert np.all(p <= [0.3, 1.0, 0.25])
    # Zero-weight domains fill up only when every weighted domain is capped.
    q = apply_caps(np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.5, 0.5]))
    assert q == pytest.approx([0.5, 0.25, 0.25])


def test_infeasible_caps_are_refused():
    with pytest.raises(InfeasibleCapsError):
        baseline_mixture("natural", AVAILABLE, budget=100_000_000, max_epochs=4)


def test_regmix_bound_is_the_budget_equal_to_available_case():
    caps = epoch_caps(AVAILABLE, max_epochs=15)
    total = sum(AVAILABLE.values())
    assert caps == pytest.approx({d: min(15 * n / total, 1.0) for d, n in AVAILABLE.items()})
