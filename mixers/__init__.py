"""Mixture optimizers: baselines (uniform, natural, temperature), RegMix, Aioli; plain Python, no Dagster.

``sample_mixtures`` (RegMix's candidate sampler) is re-exported for the proxy sweep.
"""

from mixers.baselines import apply_caps, baseline_mixture, epoch_caps
from mixers.regmix.sampling import sample_mixtures

__all__ = ["apply_caps", "baseline_mixture", "epoch_caps", "sample_mixtures"]
