"""Spec section `pruning` (owned by the pruning stage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PruningConfig:
    enabled: bool = True
