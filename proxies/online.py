"""Proxies trained for the mixers: Aioli's online run (``ProxyMixtureTrainer``, the two-method trainer interface
of ``mixers.aioli.MixtureTrainer``) and the validation runs of chosen mixtures.

Both train through ``proxies.population``'s optimizer and ``train_step`` (learning-rate schedule, per-member
gradient clipping, AdamW), so an Aioli run trains exactly like a sweep member; the mixers only call in here
(lazily, so RegMix and the baselines work without torch).

Held-out splits. The proxies evaluate on the first ``eval_tokens`` of each domain's validation tokens; RegMix
fits those numbers and Aioli's LearnParams probes read the same slice. The validation runs therefore score on
the *next* slice of the validation tokens (``test`` slice), which no mixer has seen, falling back to the whole
validation split (and saying so) when a domain's validation split is too short to hold both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def _slices(array: np.ndarray, eval_tokens: int, min_test_tokens: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(probe slice, test slice, disjoint?) of a validation array."""
    probe = array[: eval_tokens + 1]
    rest = array[eval_tokens + 1:]
    if len(rest) >= min_test_tokens:
        return probe, rest[: eval_tokens + 1], True
    return probe, array[: eval_tokens + 1], False


class ProxyMixtureTrainer:
    """One proxy LM trained step by step on whatever mixture Aioli asks for (``mixers.aioli.MixtureTrainer``).

    The learning-rate schedule spans ``total_steps`` (warm-up, then constant or cosine as the proxies config
    says). Batches of global step s come from the proxies' loader with seed ``seed`` at step s, so the data
    stream is the one a sweep member with this seed would read, whatever the mixture.
    """

    def __init__(self, bins, config, *, seed: int, total_steps: int, eval_tokens: int | None = None,
                 min_test_tokens: int = 2048):
        import torch

        from proxies.model import PopulationLM
        from proxies.population import _optimizer, eval_windows, pick_device

        self.torch = torch
        self.bins, self.seed = bins, int(seed)
        self.train_cfg = dataclasses.replace(config.train, steps=int(total_steps))
        self.model_cfg = config.model
        self.device = pick_device(config.train.device)
        torch.manual_seed(self.seed)
        self.model = PopulationLM(config.model, bins.vocab_size, 1)
        self.model.init_members([self.seed])
        self.model.to(self.device)
        t = self.train_cfg
        self.opt = _optimizer(self.model, t, self.device)
        self.arrays = [bins.train[d] for d in bins.domains]
        self.step = 0
        # Probes read (a prefix of) the slice the sweep is scored on; the test slice is the validation runs' one.
        probe_tokens = min(eval_tokens or t.eval_tokens, t.eval_tokens)
        seq = config.model.seq_len
        self.probe_sets, self.test_sets, self.disjoint = [], [], []
        for d in bins.domains:
            probe, test, disjoint = _slices(np.asarray(bins.val[d]), t.eval_tokens, min_test_tokens)
            self.probe_sets.append(eval_windows(probe, seq, probe_tokens))
            self.test_sets.append(eval_windows(test, seq, t.eval_tokens))
            self.disjoint.append(disjoint)
        self.evaluations = 0

    def train(self, mixture: np.ndarray, steps: int) -> None:
        from proxies.loader import MixtureLoader, MixtureSchedule
        from proxies.population import autocast_for, train_step

        torch = self.torch
        loader = MixtureLoader(self.arrays, MixtureSchedule.constant(np.asarray(mixture, np.float64)),
                               batch_size=self.train_cfg.batch_size, seq_len=self.model_cfg.seq_len, seed=self.seed)
        params = list(self.model.parameters())

        def losses_of(batch):
            with autocast_for(self.device, self.train_cfg.precision):
                return self.model.member_losses(batch)

        for _ in range(int(steps)):
            batch = torch.from_numpy(loader.batch(self.step)[None]).to(self.device)
            train_step(self.opt, params, batch, self.step, self.train_cfg, losses_of)
            self.step += 1

    def _score(self, sets) -> np.ndarray:
        from proxies.population import evaluate

        self.model.eval()
        try:
            return np.array([evaluate(self.model, w, m, device=self.device, precision=self.train_cfg.precision)[0] for w, m in sets])
        finally:
            self.model.train()

    def evaluate(self) -> np.ndarray:
        self.evaluations += 1
        return self._score(self.probe_sets)

    def test_losses(self) -> np.ndarray:
        return self._score(self.test_sets)


def validation_runs(bins, config, mixtures: Mapping[str, Sequence[float]], *, steps: int, seeds: Sequence[int],
                    eval_tokens: int | None = None, min_test_tokens: int = 2048,
                    progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Train one proxy per (mixture, seed) with the same steps (hence tokens); score each on the test slice.

    Returns name -> {"losses": domain -> mean loss over seeds, "average": mean over domains, "per_seed": [...],
    "tokens": training tokens, "disjoint_test": domains whose test slice is disjoint from the probe slice}.
    """
    from proxies.population import eval_windows, evaluate, train_population

    eval_tokens = eval_tokens or config.train.eval_tokens
    seq = config.model.seq_len
    tests, disjoint = {}, []
    for d in bins.domains:
        _, test, ok = _slices(np.asarray(bins.val[d]), eval_tokens, min_test_tokens)
        tests[d] = eval_windows(test, seq, eval_tokens)
        if ok:
            disjoint.append(d)
    names = list(mixtures)
    rows = [(n, s) for s in seeds for n in names]
    W = np.stack([np.asarray(mixtures[n], np.float64) for n, _ in rows])
    scores: dict[int, dict[str, float]] = {}

    def keep(i, model, j):
        import torch

        device = next(model.parameters()).device
        # Score member j of the trained population on every domain's test slice.
        sub = type(model).from_members(model.config, model.vocab_size, [model.member_state(j)]).to(device)
        with torch.no_grad():
            scores[i] = {d: float(evaluate(sub, w, m, device=device)[0]) for d, (w, m) in tests.items()}

    table = train_population(bins, W, config, [int(s) for _, s in rows], run_ids=[f"{n}@{s}" for n, s in rows],
                             steps=steps, progress=progress, keep=keep)
    tokens = int(table["tokens"].max())
    out: dict[str, dict] = {}
    for n in names:
        per_seed = [scores[i] for i, (m, _) in enumerate(rows) if m == n]
        losses = {d: float(np.mean([p[d] for p in per_seed])) for d in bins.domains}
        out[n] = {"losses": losses, "average": float(np.mean(list(losses.values()))),
                  "per_seed_average": [float(np.mean(list(p.values()))) for p in per_seed],
                  "tokens": tokens, "steps": steps, "seeds": list(seeds), "disjoint_test": disjoint}
    return out


__all__ = ["ProxyMixtureTrainer", "validation_runs"]
