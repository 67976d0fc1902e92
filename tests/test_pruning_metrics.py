"""The pruning metrics against the papers' semantics (SemDeDup, DBP, SSL prototypes, SeTa)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.pruning.dbp import capped_simplex, cluster_complexity, dbp_budgets, dbp_select, round_budgets
from pipeline.pruning.embed import l2_normalize
from pipeline.pruning.semdedup import order_key, semdedup
from pipeline.pruning.seta import (SeTaSampler, kmeans_1d, loss_groups, random_thinning, seta_static,
                                   window_for_epoch)
from pipeline.pruning.ssl_prototypes import random_select, ssl_select


def _rot(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0]


# --- SemDeDup -------------------------------------------------------------------------------------

def test_semdedup_chain_removes_b_and_c_not_greedy():
    step = math.degrees(math.acos(0.97))  # cos(a,b) = cos(b,c) = 0.97, cos(a,c) ~ 0.88
    e = np.array([_rot(0), _rot(step), _rot(2 * step)], dtype=np.float32)
    assert float(e[0] @ e[2]) == pytest.approx(0.88, abs=0.005)
    r = semdedup(e, np.zeros(3, dtype=np.int64), epsilon=0.05, key=np.arange(3.0))
    assert r.remove.tolist() == [False, True, True]
    assert r.duplicate_of.tolist() == [-1, 0, 1]  # c's closest earlier member is the removed b


def _with_duplicates(seed=0, n=60, dim=16):
    rng = np.random.default_rng(seed)
    base = l2_normalize(rng.normal(size=(n, dim)))
    e = np.concatenate([base, base[:10], l2_normalize(base[10:20] + 0.02 * rng.normal(size=(10, dim)))])
    return l2_normalize(e)


def test_semdedup_epsilon_zero_removes_nothing_and_tiny_epsilon_removes_exact_duplicates():
    e = _with_duplicates()
    labels = np.zeros(len(e), dtype=np.int64)
    assert not semdedup(e, labels, epsilon=0.0, key=np.arange(len(e), dtype=float)).remove.any()
    r = semdedup(e, labels, epsilon=1e-6, key=np.arange(len(e), dtype=float))
    # exactly the 10 later exact copies; the near copies (noise 0.02) survive a tiny epsilon
    assert np.flatnonzero(r.remove).tolist() == list(range(60, 70))
    assert r.duplicate_of[60:70].tolist() == list(range(10))


def test_semdedup_one_cluster_equals_all_pairs_dedup():
    e = _with_duplicates(seed=1)
    n, eps = len(e), 0.02
    sims = np.clip(e @ e.T, -1, 1)
    brute = np.array([any(sims[i, j] > 1 - eps for i in range(j)) for j in range(n)])
    assert brute.sum() >= 15
    got = semdedup(e, np.zeros(n, dtype=np.int64), epsilon=eps, key=np.arange(n, dtype=float)).remove
    assert got.tolist() == brute.tolist()


def test_semdedup_singletons_kept_and_no_cross_cluster_removal():
    e = _with_duplicates(seed=2)
    n = len(e)
    labels = np.arange(n, dtype=np.int64)  # every document alone: nothing can go
    assert not semdedup(e, labels, epsilon=0.5).remove.any()
    labels = np.zeros(n, dtype=np.int64)
    labels[60:70] = 1  # exact copies of 0..9 put in another cluster: never compared with them
    assert not semdedup(e, labels, epsilon=1e-6).remove[60:70].any()


def test_semdedup_order_policy_decides_which_copy_survives():
    e = l2_normalize(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32))
    labels = np.zeros(3, dtype=np.int64)
    distance = np.array([0.1, 0.4, 0.3])
    hard = semdedup(e, labels, epsilon=1e-6, key=order_key("hardest_first", distance=distance))
    easy = semdedup(e, labels, epsilon=1e-6, key=order_key("easiest_first", distance=distance))
    assert hard.remove.tolist() == [True, False, False]  # the farther copy (0.4) comes first and stays
    assert easy.remove.tolist() == [False, True, False]


# --- DBP --------------------------------------------------------------------------------------------

def _three_orthogonal(sizes=(100, 100, 100), spreads=(0.1, 0.2, 0.3)):
    labels = np.concatenate([np.full(s, j) for j, s in enumerate(sizes)]).astype(np.int64)
    distance = np.concatenate([np.linspace(0.5, 1.5, s) * d for s, d in zip(sizes, spreads)])
    return labels, distance, np.eye(3, dtype=np.float32)


def test_dbp_budgets_sum_to_target_and_respect_caps():
    rng = np.random.default_rng(0)
    k = 12
    sizes = rng.integers(1, 80, size=k)
    labels = np.repeat(np.arange(k), sizes)
    distance = rng.uniform(0, 1, size=len(labels))
    centroids = l2_normalize(rng.normal(size=(k, 8)))
    for target in (1, 17, len(labels) // 2, len(labels) - 3, len(labels), len(labels) + 10):
        budgets, _ = dbp_budgets(labels, distance, centroids, target=target, tau=0.1, l=4)
        assert budgets.sum() == min(target, len(labels))
        assert (budgets <= sizes).all() and (budgets >= 0).all()


def test_dbp_caps_spread_the_surplus_of_small_clusters():
    labels = np.concatenate([np.zeros(5), np.ones(200), np.full(200, 2)]).astype(np.int64)
    distance = np.concatenate([np.full(5, 0.9), np.full(200, 0.2), np.full(200, 0.2)])
    budgets, cx = dbp_budgets(labels, distance, np.eye(3, dtype=np.float32), target=300, tau=0.05, l=2)
    assert cx.share[0] > 0.9  # the small cluster wants most of the budget...
    assert budgets.tolist() == [5, 148, 147] or budgets.tolist() == [5, 147, 148]  # ...gets its cap


def test_dbp_budget_grows_with_d_intra():
    labels, distance, centroids = _three_orthogonal()
    budgets, cx = dbp_budgets(labels, distance, centroids, target=90, tau=0.1, l=2)
    assert np.allclose(cx.d_inter, 1.0)
    assert budgets[0] < budgets[1] < budgets[2]
    assert budgets.sum() == 90


def test_dbp_budget_grows_with_d_inter():
    labels, distance, _ = _three_orthogonal(spreads=(0.2, 0.2, 0.2))
    centroids = np.array([_rot(0), _rot(10), [0, 0, 1]], dtype=np.float32)  # 0 and 1 are near, 2 apart
    budgets, cx = dbp_budgets(labels, distance, centroids, target=90, tau=0.1, l=1)
    assert cx.d_inter[2] > cx.d_inter[0] == pytest.approx(cx.d_inter[1])
    assert budgets[2] > budgets[0] and budgets[2] > budgets[1]


def test_dbp_budgets_tend_to_even_share_as_tau_grows():
    labels, distance, centroids = _three_orthogonal(sizes=(100, 150, 200), spreads=(0.1, 0.5, 0.9))
    spread = []
    for tau in (0.01, 0.1, 1.0, 1e6):
        budgets, _ = dbp_budgets(labels, distance, centroids, target=150, tau=tau, l=2)
        spread.append(budgets.max() - budgets.min())
    assert spread[-1] <= 1 and spread == sorted(spread, reverse=True) and spread[0] > 50


def test_dbp_keeps_least_prototypical_within_cluster():
    labels, distance, centroids = _three_orthogonal()
    res = dbp_select(labels, distance, centroids, target=60, tau=0.5, l=2)
    for j in range(3):
        members = labels == j
        kept, dropped = distance[members & res.keep], distance[members & ~res.keep]
        assert len(kept) == res.budgets[j]
        assert kept.min() >= dropped.max()


def test_dbp_lower_bound_and_rounding():
    x = capped_simplex(np.array([0.7, 0.2, 0.1]), 10.0, np.array([3, 20, 20]), np.array([0, 2, 3]))
    assert x.sum() == pytest.approx(10.0) and x[0] == 3 and x[2] >= 3
    out = round_budgets(np.array([1.5, 1.5, 1.0]), 4, np.array([5, 5, 5]))
    assert out.sum() == 4 and (out >= 1).all()
    labels, distance, centroids = _three_orthogonal(spreads=(0.1, 0.1, 0.9))
    budgets, _ = dbp_budgets(labels, distance, centroids, target=60, tau=0.01, l=2, balance=0.5)
    assert budgets.sum() == 60 and budgets.min() >= 10  # m = 0.5 * 60 / 3


def test_cluster_complexity_matches_definitions():
    labels, distance, centroids = _three_orthogonal()
    cx = cluster_complexity(labels, distance, centroids, l=20, tau=0.5)
    assert cx.d_intra == pytest.approx([0.1, 0.2, 0.3])
    assert cx.complexity == pytest.approx(cx.d_intra * cx.d_inter)
    z = np.exp(cx.complexity / 0.5)
    assert cx.share == pytest.approx(z / z.sum())


# --- SSL prototypes and random ----------------------------------------------------------------------

def test_ssl_prototypes_keep_hardest_per_cluster_at_exact_target():
    labels, distance, _ = _three_orthogonal(sizes=(33, 50, 17))
    keep, quotas = ssl_select(labels, distance, target=50, keep="hard")
    assert keep.sum() == 50 and quotas.sum() == 50
    assert np.all(np.abs(quotas - np.array([33, 50, 17]) * 0.5) < 1)
    for j in range(3):
        m = labels == j
        assert distance[m & keep].min() >= distance[m & ~keep].max()
    easy, _ = ssl_select(labels, distance, target=50, keep="easy")
    for j in range(3):
        m = labels == j
        assert distance[m & easy].max() <= distance[m & ~easy].min()


def test_random_select_is_seeded_and_sized():
    a = random_select(100, target=37, rng=np.random.default_rng(5))
    b = random_select(100, target=37, rng=np.random.default_rng(5))
    assert a.sum() == 37 and (a == b).all()


# --- SeTa ---------------------------------------------------------------------------------------------

def test_seta_window_sweeps_as_the_reference():
    def windows(scale, epochs):
        out = []
        for t in range(epochs):
            w = window_for_epoch(t, groups=5, window_scale=scale, num_epochs=100)
            out.append((w.phase, w.start, w.start + w.width - 1))
        return out

    assert windows(0.6, 8) == [("warmup", 0, 4), ("window", 1, 3), ("window", 2, 4), ("window", 0, 2),
                               ("window", 1, 3), ("window", 2, 4), ("window", 0, 2), ("window", 1, 3)]
    # round(4.5) == 4 (half to even): width 4, k - w + 1 = 2
    assert windows(0.9, 4)[1:] == [("window", 1, 4), ("window", 0, 3), ("window", 1, 4)]


def test_seta_annealing_in_last_epochs():
    phases = [window_for_epoch(t, groups=5, window_scale=0.6, num_epochs=16).phase for t in range(16)]
    assert phases[0] == "warmup" and phases[1:14] == ["window"] * 13 and phases[14:] == ["anneal", "anneal"]
    assert window_for_epoch(7, groups=5, window_scale=0.6, num_epochs=8).phase == "anneal"


def _banded_losses(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    losses = np.concatenate([g + 0.05 * rng.standard_normal(n_per) for g in (1.0, 2.0, 3.0, 4.0, 5.0)])
    return losses[rng.permutation(len(losses))]


def test_kmeans_1d_orders_groups_easy_to_hard():
    losses = _banded_losses()
    groups = kmeans_1d(losses, 5)
    assert (groups == np.rint(losses).astype(int) - 1).all()
    assert loss_groups(np.full(10, 3.0), 5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_seta_sampler_window_moves_over_loss_groups():
    losses = _banded_losses()
    band = np.rint(losses).astype(int) - 1  # true easy->hard group of each sample
    sampler = SeTaSampler(len(losses), num_epochs=100, prune_ratio=0.2, groups=5, window_scale=0.6, seed=3)
    first = list(sampler)  # epoch 0: all groups of the thinned subset, scores still all 3.0
    assert len(first) == int(len(losses) * 0.8) == len(set(first))
    sampler.update(torch.arange(len(losses)), torch.tensor(losses))
    seen = []
    for _ in range(3):
        idx = np.array(list(sampler))
        seen.append(sorted(set(band[idx].tolist())))
    assert seen == [[1, 2, 3], [2, 3, 4], [0, 1, 2]]


def test_seta_full_width_window_equals_random_thinning():
    losses = _banded_losses(seed=1)
    sampler = SeTaSampler(len(losses), num_epochs=10, prune_ratio=0.3, window_scale=1.0, seed=9)
    sampler.update(np.arange(len(losses)), losses)
    for epoch in (1, 2, 5):
        sampler.set_epoch(epoch)
        got = sorted(sampler)
        expected = sorted(random_thinning(len(losses), 0.7, np.random.default_rng([9, epoch])).tolist())
        assert got == expected
    # the static metric: a full window is a random subset with the same generator
    st = seta_static(losses, target=77, groups=5, window_scale=1.0, rng=np.random.default_rng(4))
    assert (st.keep == random_select(len(losses), target=77, rng=np.random.default_rng(4))).all()


def test_seta_sampler_anneals_to_random_thinning():
    losses = _banded_losses()
    sampler = SeTaSampler(len(losses), num_epochs=8, prune_ratio=0.2, seed=0)
    sampler.update(np.arange(len(losses)), losses)
    sampler.set_epoch(6)
    assert len(list(sampler)) < 0.8 * len(losses)  # a 3-of-5 window
    plan = sampler.plan(7)
    assert plan.window.phase == "anneal" and len(plan.indices) == int(0.8 * len(losses))


def test_infobatch_option_thins_well_learned_and_reweights():
    losses = _banded_losses()
    sampler = SeTaSampler(len(losses), num_epochs=8, prune_ratio=0.5, method="infobatch", seed=0)
    assert len(list(sampler)) == len(losses)  # epoch 0: all equal, nothing is below the mean
    sampler.update(np.arange(len(losses)), losses)
    idx = np.array(list(sampler))
    easy = losses < losses.mean()
    assert set(np.flatnonzero(~easy)) <= set(idx.tolist())
    assert (easy[idx]).sum() == int(0.5 * easy.sum())
    w = sampler.weights_for(torch.tensor(idx)).numpy()
    assert np.allclose(w[easy[idx]], 2.0) and np.allclose(w[~easy[idx]], 1.0)
    sampler.set_epoch(7)
    assert len(list(sampler)) == len(losses)


class _Indexed(Dataset):
    def __init__(self, n):
        self.x = torch.arange(n, dtype=torch.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return i, self.x[i]


def test_seta_sampler_in_a_dataloader_advances_epochs():
    n = 100
    sampler = SeTaSampler(n, num_epochs=8, prune_ratio=0.3, seed=1)
    loader = DataLoader(_Indexed(n), batch_size=16, sampler=sampler)
    sizes = []
    for _ in range(8):
        seen = 0
        for idx, x in loader:
            sampler.update(idx, (x - 50).abs() / 10)  # a loss per sample
            seen += len(idx)
        sizes.append(seen)
    assert sampler.epoch == 8
    assert sizes[0] == 70 and sizes[7] == 70 and max(sizes[1:7]) < 70  # warmup, window x 6, anneal


def test_seta_static_window_and_fill():
    losses = _banded_losses(n_per=50)
    band = np.rint(losses).astype(int) - 1
    st = seta_static(losses, target=100, groups=5, window_scale=0.6, rng=np.random.default_rng(0))
    assert st.keep.sum() == 100 and set(band[st.keep]) <= {1, 2, 3} and st.window == (1, 3)
    st = seta_static(losses, target=180, groups=5, window_scale=0.6, rng=np.random.default_rng(0))
    assert st.keep.sum() == 180 and st.filled_from and set(band[st.keep]) >= {1, 2, 3}
    st = seta_static(losses, target=40, groups=5, window_scale=0.4, window_start=0, rng=np.random.default_rng(0))
    assert set(band[st.keep]) <= {0, 1}


# --- the spec section ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pruning,where", [
    ({"method": "magic"}, "pruning.method"),
    ({"target_fraction": 0}, "pruning.target_fraction"),
    ({"seta": {"groups": 5, "window_scale": 0.6, "window_start": 3}}, "pruning.seta.window_start"),
    ({"dbp": {"tau": 0}}, "pruning.dbp.tau"),
    ({"semdedup": {"epsilon": 0.1, "extra": 1}}, "pruning.semdedup.extra"),
])
def test_pruning_spec_errors_name_the_key(tmp_path, pruning, where):
    from pipeline.spec import SpecError, spec_from_dict

    (tmp_path / "a.txt").write_text("hello")
    data = {"name": "t", "sources": [{"name": "s", "path": "a.txt", "domain": "d"}], "pruning": pruning}
    with pytest.raises(SpecError, match=where.replace(".", r"\.")):
        spec_from_dict(data, path=tmp_path / "spec.yaml")


def test_pruning_spec_defaults_and_values(tmp_path):
    from pipeline.spec import spec_from_dict

    (tmp_path / "a.txt").write_text("hello")
    data = {"name": "t", "sources": [{"name": "s", "path": "a.txt", "domain": "d"}],
            "pruning": {"method": "semdedup+dbp", "target_fraction": 0.3, "clusters": {"k": 50},
                        "dbp": {"tau": 0.1, "l": 5}, "seta": {"window_scale": 0.9}}}
    cfg = spec_from_dict(data, path=tmp_path / "spec.yaml").pruning
    assert (cfg.method, cfg.target_fraction, cfg.clusters.k, cfg.dbp.tau, cfg.dbp.l) == ("semdedup+dbp", 0.3, 50, 0.1, 5)
    assert cfg.semdedup.epsilon == 0.05 and cfg.semdedup.order == "hardest_first" and cfg.active
