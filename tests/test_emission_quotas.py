"""Quotas: exact for random mixtures and budgets; the epoch cap and its two policies; schedules."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from pipeline.emission.quotas import QuotaError, apportion, plan_quotas
from pipeline.emission.shuffle import domain_schedule, permutation


@pytest.mark.parametrize("trial", range(200))
def test_apportion_exact_for_random_mixtures(trial):
    rng = random.Random(trial)
    k = rng.randint(1, 12)
    weights = {f"d{i}": rng.choice([0.0, rng.random(), rng.random() * 1e-6, float(rng.randint(1, 9))]) for i in range(k)}
    weights[f"d{rng.randrange(k)}"] = rng.random() + 0.01  # at least one positive weight
    total = rng.choice([1, 7, 1000, rng.randint(1, 10**7), 10**12 + rng.randint(0, 999)])
    shares = apportion(total, weights)
    assert sum(shares.values()) == total
    norm = math.fsum(weights.values())
    for d, w in weights.items():
        assert abs(shares[d] - total * w / norm) < 1 + 1e-9 * total
        if w == 0:
            assert shares[d] == 0


@pytest.mark.parametrize("trial", range(60))
def test_schedules_fill_quotas_exactly(trial):
    rng = np.random.default_rng(trial)
    domains = [f"d{i}" for i in range(rng.integers(1, 6))]
    lengths = {d: rng.integers(1, 400, size=rng.integers(1, 40)) for d in domains}
    available = {d: int(v.sum()) for d, v in lengths.items()}
    props = {d: float(rng.random()) + 1e-3 for d in domains}
    total = int(rng.integers(1, 3 * sum(available.values())))
    plan = plan_quotas(props, available, total_tokens=total, max_epochs=1000.0, over_cap="renormalize")
    assert sum(q.quota for q in plan.domains.values()) == total
    for d, q in plan.domains.items():
        s = domain_schedule(lengths[d], q.quota, seed=trial)
        assert s.tokens == q.quota  # exact, EOS included
        full = lengths[d][s.doc]
        assert np.all(s.take[:-1] == full[:-1])  # every document whole but the last
        assert 1 <= s.take[-1] <= full[-1]
        # Each epoch is a permutation: no document appears twice within an epoch, all appear in full epochs.
        for e in np.unique(s.epoch):
            docs = s.doc[s.epoch == e]
            assert len(np.unique(docs)) == len(docs)
            if e < s.epoch.max():
                assert sorted(docs.tolist()) == list(range(len(lengths[d])))


def test_epochs_reshuffle_and_are_deterministic():
    lengths = np.full(50, 10)
    s = domain_schedule(lengths, 50 * 10 * 3, seed=1)
    orders = [s.doc[s.epoch == e].tolist() for e in range(3)]
    assert orders[0] != orders[1] != orders[2]
    again = domain_schedule(lengths, 50 * 10 * 3, seed=1)
    assert np.array_equal(s.doc, again.doc)
    assert not np.array_equal(s.doc, domain_schedule(lengths, 1500, seed=2).doc)
    assert sorted(permutation(1000, 5).tolist()) == list(range(1000))


def test_epoch_cap_fail_names_the_domain():
    with pytest.raises(QuotaError, match=r"small: quota 800 tokens needs 8\.00 epochs"):
        plan_quotas({"big": 0.2, "small": 0.8}, {"big": 10_000, "small": 100}, total_tokens=1000,
                    max_epochs=4.0, over_cap="fail")
    plan = plan_quotas({"big": 0.2, "small": 0.8}, {"big": 10_000, "small": 300}, total_tokens=1000,
                       max_epochs=4.0, over_cap="fail")
    assert plan.domains["small"].epochs == pytest.approx(800 / 300) and not plan.renormalized


def test_epoch_cap_renormalize_water_fills():
    props = {"a": 0.5, "b": 0.3, "c": 0.2}
    available = {"a": 100, "b": 10_000, "c": 10_000}
    plan = plan_quotas(props, available, total_tokens=3000, max_epochs=2.5, over_cap="renormalize")
    q = {d: v.quota for d, v in plan.domains.items()}
    assert q["a"] == 250 and plan.domains["a"].capped and plan.renormalized
    assert sum(q.values()) == 3000
    # The rest keeps b:c = 3:2 (to within one token).
    assert abs(q["b"] - 2750 * 0.6) <= 1 and abs(q["c"] - 2750 * 0.4) <= 1
    assert all(v.epochs <= 2.5 for v in plan.domains.values())


def test_cascading_caps_and_impossible_budget():
    props = {"a": 0.6, "b": 0.3, "c": 0.1}
    available = {"a": 100, "b": 300, "c": 100_000}
    plan = plan_quotas(props, available, total_tokens=5000, max_epochs=2.0, over_cap="renormalize")
    assert plan.domains["a"].quota == 200 and plan.domains["b"].quota == 600
    assert plan.domains["c"].quota == 4200
    with pytest.raises(QuotaError, match="exceeds what the mixture's domains hold"):
        plan_quotas({"a": 1.0}, {"a": 100}, total_tokens=1000, max_epochs=2.0, over_cap="renormalize")
    with pytest.raises(QuotaError, match="no documents"):
        plan_quotas({"a": 1.0, "z": 0.5}, {"a": 100}, total_tokens=10, max_epochs=2.0, over_cap="fail")
