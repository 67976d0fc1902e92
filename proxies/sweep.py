"""Glue for the proxy assets: a sweep's candidate mixtures (RegMix's sampler, from ``mixers.regmix``) and saved
proxies (one member's weights as safetensors with its config)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from pipeline.config.proxies import ModelConfig
from pipeline.config.typed import build, to_plain
from proxies.model import PopulationLM


def sample_sweep_mixtures(prior: np.ndarray, n: int, *, seed: int, temperature: float = 0.5,
                          min_strength: float = 0.1, max_strength: float = 5.0) -> tuple[np.ndarray, str]:
    """Mixtures for a sweep (RegMix's candidate sampler) and the sampler's name for the sweep's meta.json."""
    from mixers.regmix import sample_mixtures

    mixtures = sample_mixtures(prior, n, seed=seed, temperature=temperature, min_strength=min_strength,
                               max_strength=max_strength)
    return np.asarray(mixtures, dtype=np.float64), "mixers.regmix.sample_mixtures"


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


__all__ = ["sample_sweep_mixtures", "save_proxy", "load_proxy"]
