"""Deterministic shuffles as rules, not arrays: per-domain epoch orders and the global order across domains.

A training set may hold billions of document copies; no order here is ever built whole. A
``Permutation`` of ``range(n)`` is a keyed bijection evaluated at any positions on demand (a balanced
Feistel network over the smallest even number of bits covering ``n``, values past ``n`` walked on
through the network until they land inside: "cycle walking"), so it costs O(1) memory whatever ``n``.
A domain's ``Schedule`` says which document, epoch and token count sits at each of its positions; the
``MixedOrder`` interleaves every domain's schedule through one more permutation. Both hand out
``Entries`` for any range of positions, which the writer streams in bounded chunks.

Everything depends only on ``(n, seed)`` and integer arithmetic (SplitMix64 round functions), not on a
library's RNG stream, so the same spec gives byte-identical shards on any numpy version. Seeds come
from ``spec.seed_for("emission")`` mixed with the domain name and epoch number (``sub_seed``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
FEISTEL_ROUNDS = 6
# Positions evaluated per numpy call when a whole order is scanned: large enough that the per-call cost
# vanishes, small enough that the scan's memory is a few tens of MB whatever the corpus.
SCAN_BLOCK = 1 << 20


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def sub_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one use (a domain's epoch, the global shuffle) derived from ``seed``."""
    digest = hashlib.sha256(":".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Permutation:
    """A seeded pseudo-random permutation of ``range(n)``, evaluated at any positions without building it."""

    def __init__(self, n: int, seed: int):
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self._half = np.uint64((bits + 1) // 2)  # balanced halves: the domain is 4**half >= n, < 4n
        self._mask = np.uint64((1 << int(self._half)) - 1)
        base = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        with np.errstate(over="ignore"):
            self._keys = _splitmix64(np.arange(1, FEISTEL_ROUNDS + 1, dtype=np.uint64) * _GOLDEN ^ base)

    def __len__(self) -> int:
        return self.n

    def _network(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_splitmix64(right ^ key) & self._mask)
        return (left << self._half) | right

    def __call__(self, positions) -> np.ndarray:
        """The permuted values at ``positions`` (each in ``range(n)``), as int64."""
        x = self._network(np.asarray(positions, dtype=np.uint64))
        outside = np.flatnonzero(x >= self.n)
        while len(outside):  # the walk from a value inside the range comes back inside: it ends
            x[outside] = self._network(x[outside])
            outside = outside[x[outside] >= self.n]
        return x.astype(np.int64)


def permutation(n: int, seed: int) -> np.ndarray:
    """The whole of ``Permutation(n, seed)`` as an array (for small ``n``: inspection and tests)."""
    return Permutation(n, seed)(np.arange(n, dtype=np.int64))


@lru_cache(maxsize=64)
def _epoch_order(n: int, seed: int, epoch: int) -> Permutation:
    return Permutation(n, sub_seed(seed, "epoch", epoch))


@dataclass(frozen=True)
class Entries:
    """Document copies, in order: domain index, document index, epoch, tokens taken (EOS included)."""

    dom: np.ndarray  # int32
    doc: np.ndarray  # int64 document index within its domain
    epoch: np.ndarray  # int32
    take: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.doc)

    def slice(self, a: int, b: int) -> Entries:
        return Entries(self.dom[a:b], self.doc[a:b], self.epoch[a:b], self.take[a:b])


@dataclass(frozen=True)
class Schedule:
    """The document copies one domain contributes, in order, as a rule: position ``j`` is position
    ``j % n`` of epoch ``j // n``'s permutation of the domain's ``n`` documents, each whole, except the
    last copy, which is cut (``last_take`` tokens: a prefix plus EOS) so that the domain's tokens equal
    its quota exactly.

    ``lengths[i]`` is document ``i``'s tokens as emitted (ids plus EOS): an array, or anything that
    gathers like one (a token cache's ``DocLengths`` reads them from memory-mapped offsets).
    """

    lengths: object
    seed: int
    count: int  # document copies
    tokens: int  # their tokens: the quota
    last_take: int

    def __len__(self) -> int:
        return self.count

    @property
    def documents(self) -> int:
        return len(self.lengths)

    @property
    def epochs_started(self) -> int:
        return -(-self.count // self.documents) if self.count else 0

    @property
    def unique_documents(self) -> int:
        return min(self.count, self.documents)  # every epoch is a permutation

    def at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(doc, epoch, take) at ``positions`` (each in ``range(len(self))``)."""
        positions = np.asarray(positions, dtype=np.int64)
        n = self.documents
        epoch, pos = np.divmod(positions, n)
        doc = np.empty(len(positions), dtype=np.int64)
        for e in np.unique(epoch).tolist():
            here = epoch == e
            doc[here] = _epoch_order(n, self.seed, e)(pos[here])
        take = np.asarray(self.lengths[doc], dtype=np.int64)
        take[positions == self.count - 1] = self.last_take
        return doc, epoch.astype(np.int32), take

    def last(self) -> tuple[int, int]:
        """(document, tokens taken) of the last copy: the one that may be cut."""
        doc, _epoch, take = self.at(np.array([self.count - 1]))
        return int(doc[0]), int(take[0])

    # The whole schedule as arrays: for small schedules (tests, inspection), never on the emission path.
    @property
    def doc(self) -> np.ndarray:
        return self.at(np.arange(self.count))[0]

    @property
    def epoch(self) -> np.ndarray:
        return self.at(np.arange(self.count))[1]

    @property
    def take(self) -> np.ndarray:
        return self.at(np.arange(self.count))[2]


def domain_schedule(lengths, quota: int, *, seed: int) -> Schedule:
    """Fill ``quota`` tokens from documents of ``lengths`` tokens: whole epochs, a new order each, then as much
    of one more epoch as the rest needs (its last document cut to fit)."""
    if not hasattr(lengths, "sum"):
        lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    available = int(lengths.sum())
    if quota > 0 and available == 0:
        raise ValueError("a domain with no tokens cannot fill a positive quota")
    if quota <= 0:
        return Schedule(lengths, seed, count=0, tokens=0, last_take=0)
    epochs, rest = divmod(quota, available)
    if rest == 0:
        last = _epoch_order(n, seed, epochs - 1)(np.array([n - 1]))
        return Schedule(lengths, seed, count=epochs * n, tokens=quota, last_take=int(lengths[last][0]))
    order, before = _epoch_order(n, seed, epochs), 0
    for a in range(0, n, SCAN_BLOCK):
        cum = before + np.cumsum(np.asarray(lengths[order(np.arange(a, min(n, a + SCAN_BLOCK)))], dtype=np.int64))
        if cum[-1] >= rest:
            i = int(np.searchsorted(cum, rest, side="left"))  # the first document whose running total reaches it
            kept_before = int(cum[i - 1]) if i else before
            return Schedule(lengths, seed, count=epochs * n + a + i + 1, tokens=quota, last_take=rest - kept_before)
        before = int(cum[-1])
    raise AssertionError("an epoch holds every available token")  # rest < available


class DomainOrder:
    """One domain's schedule as ``Entries`` (its per-domain set)."""

    def __init__(self, index: int, schedule: Schedule):
        self.index, self.schedule = index, schedule

    def __len__(self) -> int:
        return len(self.schedule)

    def entries(self, a: int, b: int) -> Entries:
        doc, epoch, take = self.schedule.at(np.arange(a, b))
        return Entries(np.full(len(doc), self.index, np.int32), doc, epoch, take)


class MixedOrder:
    """Every domain's schedule in one global order: position ``g`` is copy ``perm(g)`` of the domains'
    schedules laid end to end (domains in the given order), ``perm`` seeded by ``sub_seed(seed, "global")``."""

    def __init__(self, schedules: list[Schedule], seed: int):
        self.schedules = schedules
        self.starts = np.concatenate([[0], np.cumsum([len(s) for s in schedules], dtype=np.int64)])
        self.order = Permutation(int(self.starts[-1]), sub_seed(seed, "global"))

    def __len__(self) -> int:
        return len(self.order)

    def entries(self, a: int, b: int) -> Entries:
        index = self.order(np.arange(a, b))
        dom = (np.searchsorted(self.starts, index, side="right") - 1).astype(np.int32)
        doc = np.empty(len(index), np.int64)
        epoch = np.empty(len(index), np.int32)
        take = np.empty(len(index), np.int64)
        for d in np.unique(dom).tolist():
            here = dom == d
            doc[here], epoch[here], take[here] = self.schedules[d].at(index[here] - self.starts[d])
        return Entries(dom, doc, epoch, take)


def takes(order, a: int, b: int) -> np.ndarray:
    """Tokens of positions ``a..b`` of ``order`` (``DomainOrder``, ``MixedOrder``, or an array of takes)."""
    if isinstance(order, np.ndarray):
        return np.asarray(order[a:b], dtype=np.int64)
    return order.entries(a, b).take


def scan_takes(order, block: int | None = None):
    """(start, takes) of consecutive blocks of ``block`` (default ``SCAN_BLOCK``) positions of ``order``, in order:
    a whole order in bounded memory."""
    n, block = len(order), block or SCAN_BLOCK
    for a in range(0, n, block):
        yield a, takes(order, a, min(n, a + block))


__all__ = ["DomainOrder", "Entries", "MixedOrder", "Permutation", "Schedule", "domain_schedule", "permutation",
           "scan_takes", "sub_seed", "takes"]
