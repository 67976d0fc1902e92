"""Proxy training throughput: tokens/s, achieved FLOP/s vs this machine's measured matmul peak, population scaling.

Measured in one run, on the same machine, under the same load:
- ``peak``: the best fp32 (CPU) or bf16 (GPU) square-matmul rate, sampled before, between and after the training
  measurements (the machine is shared: the max of the samples is the peak the hardware gave us; each measurement is
  also compared with the mean of the two samples taken just before and after it, under the same load, and FLOPs per
  CPU-second of this process are compared likewise, which discounts the time other processes hold the cores);
- ``plain``: the issue's reference point, a 2-layer d=128 vocab-4096 proxy, eager (no torch.compile);
- ``default``: the default proxy config (``ProxiesConfig()``), trained as the sweep trains it;
- ``population`` vs ``sequential``: N members in one batched model vs N single-member runs, tokens/s per member.

FLOPs are model FLOPs (``proxies.model.train_flops_per_token``: matmuls and causal attention, 3x forward), the
usual MFU convention. Timings exclude compilation (a warm-up fit runs first) and evaluation; they include data
loading and the optimizer. Runnable alone: ``python -m bench.bench_proxies --device cuda --members 64``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig
from proxies.bins import Bins
from proxies.loader import MixtureLoader, MixtureSchedule
from proxies.model import non_embedding_params, train_flops_per_token
from proxies.population import ChunkTrainer, pick_device

VOCAB = 4096


def matmul_peak(device: torch.device, *, n: int = 2048, reps: int = 10) -> tuple[float, float]:
    """(best FLOP/s over wall time, best FLOP per CPU-second of this process) of an n x n matmul."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, best_cpu = 0.0, 0.0
    for _ in range(3):
        a @ b
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
        best_cpu = max(best_cpu, 2 * n**3 * reps / max(1e-9, time.process_time() - c))
    return best, best_cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_bins(n_domains: int = 4, tokens: int = 200_000, seed: int = 0) -> Bins:
    rng = np.random.default_rng(seed)
    train = {f"d{j}": rng.integers(0, VOCAB, tokens).astype(np.uint16) for j in range(n_domains)}
    val = {d: a[:2048] for d, a in train.items()}
    return Bins(vocab_size=VOCAB, eot=0, domains=list(train), train=train, val=val)


def measure(config: ProxiesConfig, n_members: int, steps: int, device: torch.device, bins: Bins) -> dict:
    """tokens/s (all members together) of ``steps`` training steps of an ``n_members`` population."""
    trainer = ChunkTrainer(config.model, config.train, VOCAB, n_members, device)
    mixtures = np.random.default_rng(1).dirichlet(np.ones(len(bins.domains)), size=n_members)
    loaders = [MixtureLoader([bins.train[d] for d in bins.domains], MixtureSchedule.constant(m),
                             batch_size=config.train.batch_size, seq_len=config.model.seq_len, seed=i)
               for i, m in enumerate(mixtures)]
    seeds = list(range(n_members))
    t = time.perf_counter()
    trainer.fit(loaders, seeds, 3, lambda *_: None)  # warm-up (and compilation)
    _sync(device)
    warm = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    trainer.fit(loaders, seeds, steps, lambda *_: None)
    _sync(device)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - c
    tokens = n_members * steps * config.train.batch_size * config.model.seq_len
    flops = tokens * train_flops_per_token(config.model, VOCAB)
    return {"members": n_members, "steps": steps, "seconds": round(seconds, 2), "warmup_seconds": round(warm, 1),
            "tokens_per_s": round(tokens / seconds, 1), "gflop_per_s": round(flops / seconds / 1e9, 2),
            "gflop_per_cpu_s": round(flops / max(cpu_seconds, 1e-9) / 1e9, 2)}


def run(quick: bool = False, *, device: str = "auto", members: int | None = None, compile: bool | None = None) -> dict:
    dev = pick_device(device)
    torch.manual_seed(0)
    bins = random_bins()
    default = ProxiesConfig()
    if compile is not None:
        default = dataclasses.replace(default, train=dataclasses.replace(default.train, compile=compile))
    default = dataclasses.replace(default, train=dataclasses.replace(default.train, device=dev.type))
    plain = ProxiesConfig(model=ModelConfig(n_layers=2, d_model=128, n_heads=4, d_ff=256, seq_len=256),
                          train=TrainConfig(batch_size=16, compile=False, device=dev.type))
    steps = 4 if quick else 12
    n_pop = members or (64 if dev.type == "cuda" else 4)
    peaks = [matmul_peak(dev)]
    out: dict = {"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(0),
                 "threads": torch.get_num_threads(), "vocab_size": VOCAB}
    out["plain"] = measure(plain, 1, steps, dev, bins) | {"config": dataclasses.asdict(plain.model)}
    peaks.append(matmul_peak(dev))
    out["default"] = measure(default, 1, steps, dev, bins) | {
        "config": dataclasses.asdict(default.model), "batch_size": default.train.batch_size,
        "compile": default.train.compile, "non_embedding_params": non_embedding_params(default.model)}
    peaks.append(matmul_peak(dev))
    pop = measure(default, n_pop, steps if dev.type == "cpu" else 3 * steps, dev, bins)
    peaks.append(matmul_peak(dev))
    out["population"] = pop
    # Sequential training of N members takes N times one member's time: its throughput is one member's tokens/s.
    out["sequential_tokens_per_s"] = out["default"]["tokens_per_s"]
    out["population_speedup_vs_sequential"] = round(pop["tokens_per_s"] / out["default"]["tokens_per_s"], 3)
    cpu_peak = max(p[1] for p in peaks)
    peaks = [p[0] for p in peaks]
    peak = max(peaks)
    out["peak_gflop_per_s"] = round(peak / 1e9, 1)
    out["peak_samples_gflop_per_s"] = [round(p / 1e9, 1) for p in peaks]
    out["peak_gflop_per_cpu_s"] = round(cpu_peak / 1e9, 1)
    for i, key in enumerate(("plain", "default", "population")):
        out[key]["fraction_of_peak"] = round(out[key]["gflop_per_s"] * 1e9 / peak, 3)
        # The machine is shared: the peaks sampled just before and after a measurement saw the same load.
        out[key]["fraction_of_adjacent_peak"] = round(out[key]["gflop_per_s"] * 2e9 / (peaks[i] + peaks[i + 1]), 3)
        # Per CPU-second of this process: insensitive to how much of the machine other processes take (on CPU).
        out[key]["fraction_of_peak_per_cpu_s"] = round(out[key]["gflop_per_cpu_s"] * 1e9 / cpu_peak, 3)
    out["goal_default_fraction_of_peak"] = 0.5
    return out


def summarize(f: dict) -> str:
    d, p = f["default"], f["population"]
    return (f"On {f['device']} ({f['threads']} threads; measured matmul peak {f['peak_gflop_per_s']} GFLOP/s, samples "
            f"{f['peak_samples_gflop_per_s']}): the plain 2-layer d=128 proxy (eager) trains at "
            f"{f['plain']['tokens_per_s']:.0f} tokens/s = {f['plain']['gflop_per_s']} GFLOP/s "
            f"({f['plain']['fraction_of_peak']:.0%} of peak); the default proxy (d={d['config']['d_model']}, "
            f"compile={d['compile']}) at {d['tokens_per_s']:.0f} tokens/s = {d['gflop_per_s']} GFLOP/s "
            f"({d['fraction_of_peak']:.0%} of the max peak sample, {d['fraction_of_adjacent_peak']:.0%} of the adjacent "
            f"samples, {d['fraction_of_peak_per_cpu_s']:.0%} per CPU-second; goal 50%). A population of {p['members']} members trains at "
            f"{p['tokens_per_s']:.0f} tokens/s in all, {f['population_speedup_vs_sequential']}x the "
            f"{f['sequential_tokens_per_s']:.0f} tokens/s of training the members one after another "
            f"({p['fraction_of_peak']:.0%} of peak).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    figures = run(args.quick, device=args.device, members=args.members, compile=False if args.no_compile else None)
    print(json.dumps(figures, indent=2))
    print(summarize(figures))
