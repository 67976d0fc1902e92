"""Spec section `mixing` (owned by mixers/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MixingConfig:
    method: Literal["regmix", "aioli", "uniform", "natural", "temperature"] = "regmix"
