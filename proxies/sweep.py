"""Glue for the proxy assets: candidate mixtures (until the mixers provide RegMix's sampler), saved proxies.

``candidate_mixtures`` is a simplified version of RegMix's ``synthesize_mixture``: Dirichlet draws around the
tempered token prior (prior ** 0.5) at a concentration picked per draw from 15 strengths in logspace(0.1, 5),
rejected if a weight exceeds 15x its untempered prior (RegMix's epoch bound), small weights zeroed, and
rejected within L1 distance ``min_distance`` of an earlier candidate (RegMix de-duplicates at 1e-5 after rounding
to a grid; we skip the grid and de-duplicate more coarsely). When ``mixers.regmix.sample_mixtures`` exists, the asset uses it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from pipeline.config.proxies import ModelConfig
from pipeline.config.typed import build, to_plain
from proxies.model import PopulationLM


def candidate_mixtures(prior: np.ndarray, n: int, *, seed: int, temperature: float = 0.5, max_epochs: float = 15.0,
                       min_weight: float = 2e-4, min_distance: float = 1e-3, max_tries: int = 100_000,
                       min_strength: float = 0.1, max_strength: float = 5.0) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    tempered = prior**temperature
    tempered /= tempered.sum()
    bound = np.minimum(max_epochs * prior, 1.0)
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), 15)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        alpha = np.maximum(tempered * strengths[rng.integers(len(strengths))], 1e-6)
        w = rng.dirichlet(alpha)
        w[w < min_weight] = 0.0
        if w.sum() == 0:
            continue
        w /= w.sum()
        # RegMix de-duplicates its candidates; at low concentration many draws collapse onto the same vertex.
        if (w <= bound + 1e-12).all() and all(np.abs(w - kept).sum() > min_distance for kept in out):
            out.append(w)
    if len(out) < n:
        raise ValueError(f"only {len(out)} of {n} mixtures satisfied the epoch bound after {max_tries} draws")
    return np.stack(out)


def sample_sweep_mixtures(prior: np.ndarray, n: int, *, seed: int, temperature: float = 0.5,
                          min_strength: float = 0.1, max_strength: float = 5.0) -> tuple[np.ndarray, str]:
    """Mixtures for a sweep and the name of the sampler used: the mixers' RegMix sampler when present."""
    opts = dict(temperature=temperature, min_strength=min_strength, max_strength=max_strength)
    try:
        from mixers.regmix import sample_mixtures  # type: ignore[attr-defined]
    except ImportError:
        return candidate_mixtures(prior, n, seed=seed, **opts), "proxies.sweep.candidate_mixtures"
    return np.asarray(sample_mixtures(prior, n, seed=seed, **opts), dtype=np.float64), "mixers.regmix.sample_mixtures"


def save_proxy(folder: str | os.PathLike, model: PopulationLM, member: int, *, extra: dict | None = None) -> None:
    """One member's weights (safetensors) and its config (JSON) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.member_state(member), str(folder / "model.safetensors"))
    meta = {"model": to_plain(model.config), "vocab_size": model.vocab_size} | (extra or {})
    (folder / "proxy.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_proxy(folder: str | os.PathLike) -> tuple[PopulationLM, dict]:
    folder = Path(folder)
    meta = json.loads((folder / "proxy.json").read_text())
    config = build(ModelConfig, meta["model"])
    model = PopulationLM.from_members(config, meta["vocab_size"], [load_file(str(folder / "model.safetensors"))])
    return model, meta


__all__ = ["candidate_mixtures", "sample_sweep_mixtures", "save_proxy", "load_proxy"]
