"""Saved proxies for the proxy assets: one member's weights as safetensors with its config. (A sweep's candidate
mixtures come from RegMix's sampler, ``mixers.regmix.sampling.sample_sweep_mixtures``: proxies import nothing
from mixers.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from pipeline.config.proxies import ModelConfig
from pipeline.config.typed import build, to_plain
from proxies.model import PopulationLM


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


__all__ = ["save_proxy", "load_proxy"]
