"""Deterministic shuffles: per-domain epoch orders and the global shuffle across domains.

A permutation is "sort the indices by a keyed hash" (SplitMix64 of ``seed`` and the index, ties
impossible in practice and broken by index): it depends only on ``(n, seed)``, not on a library's
RNG stream, so the same spec gives byte-identical shards on any numpy version. Seeds come from
``spec.seed_for("emission")`` and are mixed with the domain name and epoch number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def permutation(n: int, seed: int) -> np.ndarray:
    """A pseudo-random permutation of ``range(n)`` that depends only on ``n`` and ``seed``."""
    base = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        keys = _splitmix64(np.arange(n, dtype=np.uint64) * _GOLDEN ^ _splitmix64(np.array([base]))[0])
    return np.argsort(keys, kind="stable").astype(np.int64)


def sub_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one use (a domain's epoch, the global shuffle) derived from ``seed``."""
    digest = hashlib.sha256(":".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Schedule:
    """The documents one domain contributes, in order: which document, which epoch, how many tokens.

    ``take[i] == lengths[doc[i]]`` except possibly for the last entry, which is cut so that the
    domain's tokens equal its quota exactly (the cut document keeps ``take - 1`` tokens plus EOS).
    """

    doc: np.ndarray  # int64 document index within the domain
    epoch: np.ndarray  # int32
    take: np.ndarray  # int64 tokens emitted, EOS included

    def __len__(self) -> int:
        return len(self.doc)

    @property
    def tokens(self) -> int:
        return int(self.take.sum())


def domain_schedule(lengths: np.ndarray, quota: int, *, seed: int) -> Schedule:
    """Fill ``quota`` tokens from documents of ``lengths`` tokens, whole documents, a new order per epoch."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    available = int(lengths.sum())
    if quota > 0 and available == 0:
        raise ValueError("a domain with no tokens cannot fill a positive quota")
    docs, epochs, takes = [], [], []
    remaining, epoch = quota, 0
    while remaining > 0:
        order = permutation(n, sub_seed(seed, "epoch", epoch))
        cum = np.cumsum(lengths[order])
        if remaining >= available:
            k = n
            take = lengths[order]
        else:
            # First position whose running total reaches the remainder: that document is the last.
            k = int(np.searchsorted(cum, remaining, side="left")) + 1
            take = lengths[order[:k]].copy()
            take[-1] = remaining - (int(cum[k - 2]) if k >= 2 else 0)
        docs.append(order[:k])
        epochs.append(np.full(k, epoch, dtype=np.int32))
        takes.append(np.asarray(take, dtype=np.int64))
        remaining -= int(takes[-1].sum())
        epoch += 1
    if not docs:
        return Schedule(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    return Schedule(np.concatenate(docs), np.concatenate(epochs), np.concatenate(takes))


__all__ = ["Schedule", "domain_schedule", "permutation", "sub_seed"]
