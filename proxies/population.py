"""Train N proxies with N mixtures as one batched model, and evaluate them per domain and per target.

Semantics follow RegMix's proxy training (AdamW with betas (0.9, 0.95), weight decay 0.1 on matrices only,
gradient clipping at 1.0, linear warm-up then a constant LR), applied *per member*: each member has its own
weights, AdamW moments (AdamW is elementwise, so stacked moments are per-member moments), its own gradient-norm
clip (the norm is taken over that member's parameters only, never the population's) and its own data stream.
A member therefore follows the same trajectory alone or inside a population, up to float rounding of batched
matmuls; the test suite checks this.

Results table (one row per member and checkpoint; what the mixers read):

    run_id          str    the member's identifier (given, or "m<index>")
    member          int    position in the ``mixtures`` array
    seed            int    the member's seed (weights init and data stream)
    step            int    optimizer steps done at this checkpoint
    tokens          int    training tokens seen by the member
    w_<domain>      float  the member's mixture weight per domain (for a schedule: its average over the steps
                           trained), in ``bins.domains`` order
    loss_<domain>   float  mean next-token loss on the domain's held-out validation tokens
    loss_target_<t> float  the same on target set ``t``
    loss_val_mean   float  unweighted mean of the ``loss_<domain>`` columns
    train_loss      float  the member's mean training loss over the steps since the previous checkpoint
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import polars as pl
import torch

from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig
from proxies.bins import Bins
from proxies.loader import MixtureLoader, MixtureSchedule
from proxies.model import PopulationLM


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on ``device`` when ``precision`` is "bf16"; plain fp32 otherwise (``TrainConfig.precision``).

    The context must wrap only the forward pass and the loss (autocast's rule): backward runs outside it with the
    dtypes the forward recorded, and the optimizer updates fp32 master weights.
    """
    if precision == "fp32":
        return nullcontext()
    if precision == "tf32":
        return tf32_matmuls(device)
    if precision != "bf16":
        raise ValueError(f"precision must be 'fp32', 'tf32' or 'bf16', got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def tf32_matmuls(device: torch.device):
    """fp32 tensors whose matmuls run on TF32 tensor cores (a 10-bit mantissa, against bf16's 7) while inside; the
    setting before is restored after. CUDA only: elsewhere plain fp32."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def step_precision(device: torch.device, precision: str):
    """The context a whole training step runs in: tf32 must cover the backward's matmuls too (two thirds of a
    step's work), whereas bf16 autocast wraps only the forward (autocast_for)."""
    return tf32_matmuls(device) if precision == "tf32" else nullcontext()


def lr_at(step: int, train: TrainConfig) -> float:
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    if train.min_lr_ratio >= 1.0:
        return train.lr
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    floor = train.lr * train.min_lr_ratio
    return floor + 0.5 * (train.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def checkpoints(train: TrainConfig, steps: int) -> list[int]:
    return sorted({s for s in train.eval_at if 0 < s < steps} | {steps})


# -- evaluation -----------------------------------------------------------------------------------------------
def eval_windows(array: np.ndarray, seq_len: int, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping prediction windows over the first ``max_tokens`` predicted tokens of ``array``.

    Returns inputs+targets (S, seq_len + 1) and a mask (S, seq_len) of the targets that count; the last window is
    padded. Every token after the first is predicted exactly once, with the context of its own window.
    """
    n = min(len(array), max_tokens + 1)
    if n < 2:
        return np.zeros((0, seq_len + 1), np.int64), np.zeros((0, seq_len), bool)
    tokens = np.asarray(array[:n], dtype=np.int64)
    starts = np.arange(0, n - 1, seq_len)
    windows = np.zeros((len(starts), seq_len + 1), np.int64)
    mask = np.zeros((len(starts), seq_len), bool)
    for i, s in enumerate(starts):
        piece = tokens[s : s + seq_len + 1]
        windows[i, : len(piece)] = piece
        mask[i, : len(piece) - 1] = True
    return windows, mask


@torch.no_grad()
def evaluate(model: PopulationLM, windows: np.ndarray, mask: np.ndarray, *, device: torch.device,
             batch_windows: int = 16, precision: str = "fp32") -> np.ndarray:
    """Mean masked token loss of every member on the same windows: (N,) float64 (NaN if nothing to score)."""
    n = model.n_members
    if len(windows) == 0:
        return np.full(n, np.nan)
    total = torch.zeros(n, dtype=torch.float64, device=device)
    count = 0
    for s in range(0, len(windows), batch_windows):
        w = torch.from_numpy(windows[s : s + batch_windows]).to(device)
        m = torch.from_numpy(mask[s : s + batch_windows]).to(device)
        with autocast_for(device, precision):
            losses = model.token_losses(w.unsqueeze(0).expand(n, -1, -1))
        total += (losses * m).flatten(1).sum(1).double()
        count += int(m.sum())
    return (total / count).cpu().numpy()


# -- training -------------------------------------------------------------------------------------------------
def _optimizer(model: PopulationLM, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for name, p in model.named_parameters() if "norm" not in name]
    no_decay = [p for name, p in model.named_parameters() if "norm" in name]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train.lr, betas=(train.beta1, train.beta2), fused=device.type in ("cpu", "cuda"),
    )


def clip_per_member(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each member's gradient so that its own global norm is at most ``max_norm``; return the norms."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


def train_step(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor], batch: torch.Tensor, step: int,
               train: TrainConfig, losses_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One optimizer step of every member at global step ``step`` (the schedule's learning rate, per-member
    gradient clipping, AdamW); returns the members' training losses. Sweep members, Aioli's online run and the
    validation runs all train through here (proxies/online.py)."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, train)
    with step_precision(batch.device, train.precision):
        losses = losses_of(batch)
        losses.sum().backward()
    clip_per_member(params, train.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return losses


def allow_recompiles(limit: int) -> None:
    """Let torch compile ``member_losses`` for at least ``limit`` model shapes in this process. Every trainer compiles
    that one function, once per model config, population size and precision; past torch's default of 8 it silently
    runs eagerly, slower and with other rounding, so a long process (`curamix run`'s whole graph, a test session)
    trained differently from a fresh one."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))


class ChunkTrainer:
    """Trains groups of ``n`` members, reusing one model (and its compiled step) across groups of that size."""

    def __init__(self, model_config: ModelConfig, train: TrainConfig, vocab_size: int, n: int, device: torch.device):
        self.train, self.device = train, device
        self.model = PopulationLM(model_config, vocab_size, n).to(device)
        self.loss_fn = self.model.member_losses
        if train.compile:
            allow_recompiles(64)
            self.loss_fn = torch.compile(self.model.member_losses, dynamic=False)

    def _losses(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            with autocast_for(self.device, self.train.precision):
                return self.loss_fn(batch)
        except Exception as exc:  # compilation failed: keep training, eagerly
            if self.loss_fn == self.model.member_losses:
                raise
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); training eagerly", stacklevel=2)
            self.loss_fn = self.model.member_losses
            with autocast_for(self.device, self.train.precision):
                return self.loss_fn(batch)

    def fit(self, loaders: Sequence[MixtureLoader], seeds: Sequence[int], steps: int,
            on_checkpoint: Callable[[int, np.ndarray], None], progress: Callable[[str], None] | None = None) -> PopulationLM:
        model, train, device = self.model, self.train, self.device
        model.init_members(seeds)  # torch generator: weights; the loaders' numpy streams use the same seed
        model.to(device)
        opt = _optimizer(model, train, device)
        params = list(model.parameters())
        marks = checkpoints(train, steps)
        running = torch.zeros(model.n_members, dtype=torch.float64, device=device)
        since, started = 0, time.perf_counter()
        for step in range(steps):
            batch = torch.from_numpy(np.stack([loader.batch(step) for loader in loaders]))
            if device.type == "cuda":  # page-locked, so the copy is truly asynchronous (pageable memory blocks)
                batch = batch.pin_memory()
            losses = train_step(opt, params, batch.to(device, non_blocking=True), step, train, self._losses)
            running += losses.detach().double()
            since += 1
            if step + 1 in marks:
                on_checkpoint(step + 1, (running / since).cpu().numpy())
                running.zero_()
                since = 0
            if progress and (step + 1) % max(1, steps // 10) == 0:
                progress(f"step {step + 1}/{steps}: mean train loss {float(losses.detach().mean()):.3f} "
                         f"({time.perf_counter() - started:.0f}s)")
        return model


def chunk_sizes(n: int, limit: int) -> list[int]:
    """Split n members into chunks of at most ``limit``: equal chunks when a divisor of n is at least half the
    limit, else near-equal ones (at most two distinct sizes: each size is one model to build and compile)."""
    limit = max(1, min(limit, n))
    divisor = max(d for d in range(1, limit + 1) if n % d == 0)
    if 2 * divisor >= limit:
        return [divisor] * (n // divisor)
    k = math.ceil(n / limit)
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


# What one CPU population may hold while it trains (issue 12: the demo's whole run under 1.5 GB).
CPU_POPULATION_BYTES = 256 << 20


def auto_chunk(config: ProxiesConfig, vocab_size: int, device: torch.device) -> int:
    if config.train.population_chunk > 0:
        return config.train.population_chunk
    if device.type == "cuda":
        return 64
    # On CPU one member already fills the cores; chunks only bound memory. A training step holds about eight
    # float32 tensors of a member's logits size (logits, log-softmax, their gradients, the allocator's slack):
    # measured 140 MB a member for the demo's shape (16 x 128 tokens, vocabulary 2048), 1.7 GB for 12 members.
    # On the CPU measured (2-core EPYC) members trained to the same bits in populations of 1, 2, 3, 6 and 12
    # (checked 2026-11-30 on the demo's shape), so the budget changes memory, not results.
    per_member = 8 * 4 * config.train.batch_size * config.model.seq_len * vocab_size
    return max(1, min(16, int(CPU_POPULATION_BYTES // per_member)))


def train_population(bins: Bins, mixtures: np.ndarray | Sequence[MixtureSchedule], config: ProxiesConfig,
                     seed: int | Sequence[int], *, run_ids: Sequence[str] | None = None, steps: int | None = None,
                     progress: Callable[[str], None] | None = None,
                     keep: Callable[[int, PopulationLM, int], None] | None = None) -> pl.DataFrame:
    """Train one proxy per mixture (rows of ``mixtures`` over ``bins.domains``, or schedules) and return the
    results table described in the module docstring.

    ``seed`` is one seed for every member (same init and data-stream seed; only the mixture differs) or one per
    member. ``keep(member_index, model, index_in_model)`` is called after training so that callers can save
    weights (e.g. the reference proxy).
    """
    schedules = [MixtureSchedule.of(m) for m in (mixtures if not isinstance(mixtures, np.ndarray) else list(mixtures))]
    n = len(schedules)
    if n == 0:
        raise ValueError("no mixtures to train")
    seeds = [int(seed)] * n if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"{n} mixtures but {len(seeds)} seeds")
    run_ids = list(run_ids) if run_ids is not None else [f"m{i}" for i in range(n)]
    steps = steps or config.train.steps
    device = pick_device(config.train.device)
    mcfg, tcfg = config.model, config.train
    evals = {f"loss_{d}": eval_windows(bins.val[d], mcfg.seq_len, tcfg.eval_tokens) for d in bins.domains}
    evals |= {f"loss_target_{t}": eval_windows(a, mcfg.seq_len, tcfg.eval_tokens) for t, a in bins.targets.items()}
    trainers: dict[int, ChunkTrainer] = {}
    rows: list[dict] = []
    start = 0
    for size in chunk_sizes(n, auto_chunk(config, bins.vocab_size, device)):
        members = list(range(start, start + size))
        start += size
        if size not in trainers:
            trainers[size] = ChunkTrainer(mcfg, tcfg, bins.vocab_size, size, device)
        trainer = trainers[size]
        loaders = [MixtureLoader([bins.train[d] for d in bins.domains], schedules[i], batch_size=tcfg.batch_size,
                                 seq_len=mcfg.seq_len, seed=seeds[i]) for i in members]

        def on_checkpoint(step: int, train_loss: np.ndarray, members=members) -> None:
            losses = {name: evaluate(trainer.model, w, m, device=device, precision=tcfg.precision)
                      for name, (w, m) in evals.items()}
            for j, i in enumerate(members):
                row = {"run_id": run_ids[i], "member": i, "seed": seeds[i], "step": step,
                       "tokens": step * tcfg.batch_size * mcfg.seq_len}
                row |= {f"w_{d}": float(x) for d, x in zip(bins.domains, schedules[i].average(step))}
                row |= {name: float(v[j]) for name, v in losses.items()}
                row["loss_val_mean"] = float(np.nanmean([row[f"loss_{d}"] for d in bins.domains]))
                row["train_loss"] = float(train_loss[j])
                rows.append(row)

        if progress:
            progress(f"training members {members[0]}..{members[-1]} of {n} on {device}")
        model = trainer.fit(loaders, [seeds[i] for i in members], steps, on_checkpoint, progress)
        if keep is not None:
            for j, i in enumerate(members):
                keep(i, model, j)
    return pl.DataFrame(rows).sort("member", "step")


__all__ = ["train_population", "evaluate", "eval_windows", "pick_device", "lr_at", "clip_per_member",
           "chunk_sizes", "ChunkTrainer", "train_step"]
