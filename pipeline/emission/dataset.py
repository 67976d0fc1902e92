"""A small PyTorch ``Dataset`` over Megatron ``.bin/.idx`` shards, yielding fixed-length sequences.

The shards of one set are read as one token stream (shards in manifest order, documents already
ending with EOS); sample ``i`` is the ``seq_length + 1`` tokens starting at ``i * seq_length``, so
inputs are ``s[:-1]`` and next-token targets ``s[1:]`` (the usual GPT packing: documents run into
each other, separated by EOS, and a sequence may straddle two shards). The mixed set is already
globally shuffled, so reading it in order is fine; shuffling sequences in the loader also works.

Example training loop (CPU or CUDA, bf16 autocast on GPU)::

    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from pipeline.emission.dataset import TokenSequenceDataset

    ds = TokenSequenceDataset.from_manifest("data/default/training_set", seq_length=256)
    loader = DataLoader(ds, batch_size=8, shuffle=True, drop_last=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.nn.Sequential(torch.nn.Embedding(ds.vocab_size, 128), torch.nn.Linear(128, ds.vocab_size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for step, batch in enumerate(loader):
        batch = batch.to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 100:
            break

``tests/test_emission_dataset.py`` runs this loop for a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.emission.megatron import open_tokens, read_index


class TokenSequenceDataset(Dataset):
    def __init__(self, prefixes: list[str | Path], *, seq_length: int, vocab_size: int | None = None):
        if seq_length <= 0:
            raise ValueError("seq_length must be positive")
        self.seq_length = seq_length
        self._tokens: list[np.ndarray] = []
        for prefix in prefixes:
            index = read_index(Path(f"{prefix}.idx"))
            data = open_tokens(Path(f"{prefix}.bin"), index.dtype)
            if len(data) != index.tokens:
                raise ValueError(f"{prefix}.bin holds {len(data)} tokens, its index says {index.tokens}")
            self._tokens.append(data)
        sizes = np.array([len(t) for t in self._tokens], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self.total_tokens = int(self._starts[-1])
        self.vocab_size = vocab_size

    @classmethod
    def from_manifest(cls, folder: str | Path, *, set_name: str = "mixed", seq_length: int | None = None):
        """The shards of ``set_name`` ("mixed" or "domains/<domain>") in a verified training set."""
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        if set_name not in manifest["sets"]:
            raise KeyError(f"{folder} has no set {set_name!r}; it has {sorted(manifest['sets'])}")
        shards = manifest["sets"][set_name]["shards"]
        prefixes = [folder / s["files"]["idx"]["path"][: -len(".idx")] for s in shards if "idx" in s["files"]]
        return cls(prefixes, seq_length=seq_length or manifest["sequence_length"],
                   vocab_size=manifest["tokenizer"]["vocab_size"])

    def __len__(self) -> int:
        return max(0, (self.total_tokens - 1) // self.seq_length)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start, end = i * self.seq_length, i * self.seq_length + self.seq_length + 1
        pieces = []
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        while start < end:
            local = start - int(self._starts[shard])
            take = min(end - start, len(self._tokens[shard]) - local)
            pieces.append(np.asarray(self._tokens[shard][local: local + take], dtype=np.int64))
            start += take
            shard += 1
        return torch.from_numpy(np.concatenate(pieces))


__all__ = ["TokenSequenceDataset"]
