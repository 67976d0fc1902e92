"""Spec section `curation` (owned by the curation stage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CurationConfig:
    enabled: bool = True
