"""Spec section `output` (owned by emission)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputConfig:
    total_tokens: int = 1_000_000
