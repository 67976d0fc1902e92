"""Orders as rules: the Feistel permutation, streamed schedules, the mixed order and streamed shard cuts
agree with the same things built whole in memory."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipeline.emission import shuffle, writer
from pipeline.emission.shuffle import (DomainOrder, MixedOrder, Permutation, domain_schedule, permutation, sub_seed)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 16, 17, 1000, 4097, 65_537])
def test_permutation_is_a_bijection_at_any_positions(n):
    perm = permutation(n, seed=7)
    assert sorted(perm.tolist()) == list(range(n))
    if n:
        picks = np.random.default_rng(0).integers(0, n, size=50)
        assert Permutation(n, 7)(picks).tolist() == perm[picks].tolist()
        assert np.array_equal(permutation(n, seed=7), perm)  # deterministic


def test_permutations_look_random():
    n = 100_000
    perm = permutation(n, seed=3)
    assert abs(np.corrcoef(np.arange(n), perm)[0, 1]) < 0.02
    assert not np.array_equal(perm, permutation(n, seed=4))
    assert np.mean(perm == permutation(n, seed=4)) < 0.001
    # Small n, many seeds: each value comes first about equally often.
    firsts = Counter(int(Permutation(5, s)(np.array([0]))[0]) for s in range(5000))
    assert sorted(firsts) == [0, 1, 2, 3, 4] and min(firsts.values()) > 850 and max(firsts.values()) < 1150


def _schedule_in_memory(lengths: np.ndarray, quota: int, seed: int):
    """The schedule built whole: every epoch's order in full, cut where the running total reaches the quota."""
    docs, epochs, takes, remaining, epoch = [], [], [], quota, 0
    while remaining > 0:
        order = permutation(len(lengths), sub_seed(seed, "epoch", epoch))
        cum = np.cumsum(lengths[order])
        k = len(order) if remaining >= cum[-1] else int(np.searchsorted(cum, remaining)) + 1
        take = lengths[order[:k]].copy()
        if remaining < cum[-1]:
            take[-1] = remaining - (int(cum[k - 2]) if k >= 2 else 0)
        docs += order[:k].tolist()
        epochs += [epoch] * k
        takes += take.tolist()
        remaining -= int(take.sum())
        epoch += 1
    return docs, epochs, takes


@pytest.mark.parametrize("trial", range(40))
def test_streamed_schedules_equal_schedules_built_whole(trial, monkeypatch):
    monkeypatch.setattr(shuffle, "SCAN_BLOCK", 7)  # many blocks, cuts across their edges
    rng = np.random.default_rng(trial)
    lengths = rng.integers(1, 50, size=int(rng.integers(1, 60)))
    quota = int(rng.integers(1, 4 * lengths.sum()))
    s = domain_schedule(lengths, quota, seed=trial)
    docs, epochs, takes = _schedule_in_memory(lengths, quota, seed=trial)
    assert (s.doc.tolist(), s.epoch.tolist(), s.take.tolist()) == (docs, epochs, takes)
    assert s.tokens == quota == sum(takes)
    assert s.unique_documents == len(set(docs)) and s.epochs_started == max(epochs) + 1
    assert s.last() == (docs[-1], takes[-1])


def test_mixed_order_holds_every_domains_copies_once():
    rng = np.random.default_rng(5)
    schedules = [domain_schedule(rng.integers(1, 30, size=n), q, seed=i)
                 for i, (n, q) in enumerate([(40, 900), (3, 200), (25, 0), (60, 400)])]
    mixed = MixedOrder(schedules, seed=11)
    assert len(mixed) == sum(len(s) for s in schedules)
    everything = mixed.entries(0, len(mixed))
    pieces = [mixed.entries(a, min(len(mixed), a + 13)) for a in range(0, len(mixed), 13)]
    assert np.array_equal(np.concatenate([p.take for p in pieces]), everything.take)  # any range, same answer
    got = Counter(zip(everything.dom.tolist(), everything.doc.tolist(), everything.epoch.tolist(),
                      everything.take.tolist()))
    want = Counter()
    for i, s in enumerate(schedules):
        e = DomainOrder(i, s).entries(0, len(s))
        want.update(zip(e.dom.tolist(), e.doc.tolist(), e.epoch.tolist(), e.take.tolist()))
    assert got == want
    assert everything.dom[:20].tolist() != sorted(everything.dom[:20].tolist())  # interleaved, not end to end


def _shard_bounds_in_memory(take: np.ndarray, shard_tokens: int) -> list[tuple[int, int]]:
    cum = np.concatenate([[0], np.cumsum(take, dtype=np.int64)])
    total = int(cum[-1])
    for k in range(max(1, -(-total // shard_tokens)), len(take) + 1):
        cuts = np.searchsorted(cum, np.arange(1, k) * (total / k), side="right") - 1
        edges = np.unique(np.concatenate([[0], cuts, [len(take)]]))
        sizes = np.diff(cum[edges])
        if np.all((sizes <= shard_tokens) | (np.diff(edges) == 1)):
            return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return [(i, i + 1) for i in range(len(take))]


@pytest.mark.parametrize("trial", range(40))
def test_streamed_shard_cuts_equal_cuts_over_the_whole_array(trial, monkeypatch):
    monkeypatch.setattr(writer, "CUT_BLOCK", 4 if trial % 2 else 5)  # 5 does not divide the scan block: 15 is used
    monkeypatch.setattr(shuffle, "SCAN_BLOCK", 16)
    rng = np.random.default_rng(trial)
    take = rng.integers(1, 200, size=int(rng.integers(1, 300)))
    if trial % 4 == 0:
        take[rng.integers(0, len(take))] = 5_000  # one document larger than a shard
    shard_tokens = int(rng.integers(150, 3_000))
    assert writer._shard_bounds(take, shard_tokens) == _shard_bounds_in_memory(take, shard_tokens)
    mixed = MixedOrder([domain_schedule(take, int(take.sum()) * 2 - 3, seed=trial)], seed=1)
    whole = mixed.entries(0, len(mixed)).take
    assert writer._shard_bounds(mixed, shard_tokens) == _shard_bounds_in_memory(whole, shard_tokens)


def test_index_written_in_chunks_equals_the_layout(tmp_path, monkeypatch):
    from pipeline.emission import megatron

    monkeypatch.setattr(megatron, "INDEX_CHUNK", 3)  # every section spans several chunks
    rng = np.random.default_rng(0)
    writer_ = megatron.IndexedDatasetWriter(tmp_path / "s.bin", tmp_path / "s.idx", np.uint16)
    lengths = []
    for _ in range(4):
        part = rng.integers(1, 9, size=int(rng.integers(1, 6)))
        writer_.add_documents(rng.integers(0, 1000, size=int(part.sum())), part)
        lengths += part.tolist()
    writer_.finish()
    index = megatron.read_index(tmp_path / "s.idx")
    assert index.lengths.tolist() == lengths and writer_.documents == len(lengths)
    assert index.pointers.tolist() == (2 * np.concatenate([[0], np.cumsum(lengths)[:-1]])).tolist()
    assert index.document_indices.tolist() == list(range(len(lengths) + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.bin", "s.idx"]  # the lengths sidecar is gone
