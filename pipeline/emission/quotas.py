"""Mixture + token budget -> exact per-domain token quotas, with an epoch cap.

Quotas are the largest-remainder (Hamilton) apportionment of ``total_tokens`` by the mixture's
proportions, so they sum to the budget exactly and each is within one token of ``p * total``.
A domain whose quota exceeds its available tokens is repeated (``epochs = quota / available``)
up to ``max_epochs``. Past the cap, policy "fail" raises ``QuotaError`` naming every such domain;
"renormalize" water-fills: capped domains take exactly ``floor(max_epochs * available)`` and the
rest of the budget is re-apportioned over the others in proportion to their weights (repeated
until no domain exceeds its cap). This is the data-constrained recipe of Muennighoff et al. 2023
(repeat up to ~4 epochs, then spend the budget elsewhere) rather than silently over-repeating.

Token counts include each document's EOS token, since that is what a training job sees.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal


class QuotaError(ValueError):
    """The budget cannot be met within the epoch cap (or the mixture is unusable)."""


@dataclass(frozen=True)
class DomainQuota:
    domain: str
    target_proportion: float  # the mixture's weight, normalized over all domains
    quota: int  # tokens this domain contributes
    available: int  # tokens in one pass over the domain (EOS included)
    capped: bool  # the quota was cut to max_epochs * available

    @property
    def epochs(self) -> float:
        return self.quota / self.available if self.available else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "epochs": self.epochs}


@dataclass(frozen=True)
class QuotaPlan:
    total_tokens: int
    max_epochs: float
    over_cap: str
    domains: dict[str, DomainQuota]

    @property
    def renormalized(self) -> bool:
        return any(d.capped for d in self.domains.values())


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` into integers proportional to ``weights`` that sum to ``total`` exactly.

    Floors first, then the leftover units go to the largest fractional parts (ties: domain name),
    so every share is within one unit of its exact value.
    """
    if total < 0:
        raise QuotaError(f"cannot apportion a negative total {total}")
    positive = {d: float(w) for d, w in weights.items() if w > 0}
    if not positive:
        if total == 0:
            return {d: 0 for d in weights}
        raise QuotaError("the mixture gives no domain a positive proportion")
    norm = math.fsum(positive.values())
    exact = {d: total * w / norm for d, w in positive.items()}
    shares = {d: min(total, math.floor(x)) for d, x in exact.items()}
    leftover = total - sum(shares.values())
    order = sorted(positive, key=lambda d: (-(exact[d] - shares[d]), d))
    # Floating error can make leftover exceed the number of domains only by rounding slop; cycle.
    i = 0
    while leftover > 0:
        shares[order[i % len(order)]] += 1
        leftover -= 1
        i += 1
    while leftover < 0:  # float floors overshot (huge totals); take back from the smallest parts
        d = order[-1 - (i % len(order))]
        if shares[d] > 0:
            shares[d] -= 1
            leftover += 1
        i += 1
    return {d: shares.get(d, 0) for d in weights}


def plan_quotas(
    proportions: dict[str, float],
    available: dict[str, int],
    *,
    total_tokens: int,
    max_epochs: float,
    over_cap: Literal["fail", "renormalize"],
) -> QuotaPlan:
    """Per-domain quotas for ``total_tokens``; see the module docstring for the cap policy."""
    bad = {d: p for d, p in proportions.items() if not (p >= 0 and math.isfinite(p))}
    if bad:
        raise QuotaError(f"mixture proportions must be finite and >= 0: {bad}")
    missing = sorted(d for d, p in proportions.items() if p > 0 and d not in available)
    if missing:
        raise QuotaError(f"the mixture weights domains that have no documents: {', '.join(missing)}")
    norm = math.fsum(proportions.values())
    if norm <= 0:
        raise QuotaError("the mixture gives no domain a positive proportion")
    target = {d: p / norm for d, p in proportions.items()}
    cap = {d: math.floor(max_epochs * available.get(d, 0)) for d in proportions}

    quotas: dict[str, int] = {}
    capped: set[str] = set()
    pool = {d: p for d, p in proportions.items() if p > 0}
    remaining = total_tokens
    while True:
        shares = apportion(remaining, pool) if pool else {}
        over = sorted(d for d, q in shares.items() if q > cap[d])
        if not over:
            quotas.update(shares)
            break
        if over_cap == "fail":
            lines = [
                f"{d}: quota {shares[d]} tokens needs {shares[d] / available[d] if available[d] else math.inf:.2f} "
                f"epochs of {available[d]} tokens"
                for d in over
            ]
            raise QuotaError(
                f"the budget of {total_tokens} tokens exceeds output.max_epochs={max_epochs} for "
                + "; ".join(lines)
                + " (lower output.total_tokens, raise output.max_epochs, or set output.over_cap: renormalize)"
            )
        for d in over:
            quotas[d] = cap[d]
            capped.add(d)
            remaining -= cap[d]
            del pool[d]
        if not pool and remaining > 0:
            can = sum(cap[d] for d in proportions if proportions[d] > 0)
            raise QuotaError(
                f"the budget of {total_tokens} tokens exceeds what the mixture's domains hold at "
                f"output.max_epochs={max_epochs} ({can} tokens); lower output.total_tokens or raise max_epochs"
            )
    domains = {
        d: DomainQuota(domain=d, target_proportion=target[d], quota=quotas.get(d, 0),
                       available=available.get(d, 0), capped=d in capped)
        for d in sorted(proportions)
    }
    return QuotaPlan(total_tokens=total_tokens, max_epochs=max_epochs, over_cap=over_cap, domains=domains)


__all__ = ["DomainQuota", "QuotaError", "QuotaPlan", "apportion", "plan_quotas"]
