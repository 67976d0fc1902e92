"""Integer hashing shared by MinHash and the n-gram filters (no config imports: the filters load with the spec)."""

from __future__ import annotations

import numpy as np


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a bijective scramble of uint64 values (avalanche for combined keys)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
