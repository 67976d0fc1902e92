"""Spec sections `tokenizer` and `proxies` (owned by proxies/).

Defaults are sized for a 2-core CPU: the RegMix proxy shape (2 layers, SwiGLU, RMSNorm, RoPE) with a
narrower width and a short context, so that a sweep of dozens of proxies over ~200k tokens per domain
runs in minutes. On a GPU, raise ``model.d_model``, ``train.batch_size`` and ``train.steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 4096
    # A user-supplied tokenizer.json; when set, no tokenizer is trained.
    path: str | None = None
    min_frequency: int = 2
    # BPE is trained on at most this many bytes of text, drawn evenly across domains (seeded).
    max_training_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        if not 256 < self.vocab_size <= 2**32:
            raise ValueError("vocab_size must be above 256 (the byte alphabet) and fit in uint32")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only LM (see proxies/model.py). RegMix's 1M proxy: n_layers 2, d_model 256, n_heads 8, d_ff 512."""

    n_layers: int = 2
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 512  # SwiGLU inner width
    seq_len: int = 128
    rope_base: float = 10000.0
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model must split into n_heads heads of even width (rotary positions)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every member of a population (RegMix: AdamW, betas (0.9, 0.95),
    weight decay 0.1, grad clip 1.0, constant LR after warm-up)."""

    # 60 x 16 x 128 = 123k tokens per proxy: a 32-mixture sweep is ~4M tokens (minutes on an idle 2-core CPU).
    steps: int = 60
    batch_size: int = 16  # sequences per step, per member
    lr: float = 3e-3
    warmup_steps: int = 6
    # Cosine decay to lr * ratio after warm-up; 1.0 = constant (RegMix's setting). Decayed proxies end far less
    # noisily: two seeds of one mixture ended 0.18 apart in mean loss at a constant rate, ~0.05 decayed
    # (bench mixing_e2e), which is what lets a sweep's regression see the mixture's effect.
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # Steps at which validation losses are recorded (the last step is always added).
    eval_at: list[int] = field(default_factory=list)
    # Validation tokens per domain and per target at each checkpoint: a 4k slice left the ranking to noise; 32k
    # gave the measured mixing results (bench mixing_e2e). Capped by what the validation bins hold.
    eval_tokens: int = 32_768
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Members trained in one batched model at a time (0 = all at once; on CPU a few suffice to fill the cores).
    population_chunk: int = 0
    # torch.compile the training step (fuses the norms, RoPE and SwiGLU; ~1.4x on CPU). Falls back to eager
    # with a warning where compilation fails (e.g. no C++ compiler).
    compile: bool = True
    # Matmul precision of training, evaluation and scoring: fp32; tf32 (fp32 tensors, matmuls on TF32 tensor cores;
    # CUDA only, exactly fp32 elsewhere); or bf16 autocast (on CUDA, and on CPUs with bf16 support). tf32 is the
    # default: on an H200 it moved the final per-domain losses by at most 0.31% and trains a population of 64
    # 1.63x faster than fp32; bf16 is 1.92x faster but moved a loss by 1.02-2.35% (goal 1%; bench/results/gpu.json).
    precision: Literal["fp32", "tf32", "bf16"] = "tf32"


@dataclass(frozen=True)
class TargetSetConfig:
    """Text a mixture should make a model good at, e.g. a ../shared/eval JSONL; each row is rendered with
    ``template`` (``str.format`` over the row's fields) or, for plain text files, taken whole."""

    name: str
    path: str
    template: str | None = None
    max_docs: int | None = None


@dataclass(frozen=True)
class SweepConfig:
    """A sweep of candidate mixtures, each trained as a proxy (a unit of ``proxy_runs``, cached by its inputs)."""

    name: str = "sweep0"
    n_mixtures: int = 32
    seeds: list[int] = field(default_factory=lambda: [0])
    # RegMix's candidate sampler: Dirichlet(prior^temperature x s), s among 15 strengths log-spaced in
    # [min_strength, max_strength]. The reference script uses [0.1, 5], made for 512 runs; small strengths give
    # sparse mixtures (two thirds of 64 runs put > 80% on two of 10 domains). With the 24-64 runs a team
    # affords, [0.5, 20] puts more runs in the interior and gave the better mixture (bench mixing_e2e).
    temperature: float = 0.5
    min_strength: float = 0.5
    max_strength: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.min_strength <= self.max_strength:
            raise ValueError("need 0 < min_strength <= max_strength")
        if not 0 < self.temperature <= 1:
            raise ValueError("temperature must be in (0, 1]")


@dataclass(frozen=True)
class ProxiesConfig:
    enabled: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Fraction of each domain's documents (by document, seeded) held out for validation.
    validation_fraction: float = 0.1
    min_validation_docs: int = 1
    # Cap on train tokens kept per domain in the bins (None = all).
    max_train_tokens_per_domain: int | None = None
    targets: list[TargetSetConfig] = field(default_factory=list)
    sweeps: list[SweepConfig] = field(default_factory=lambda: [SweepConfig()])
    # The reference proxy (natural mixture) used for per-document difficulty scores (SeTa).
    reference_steps: int | None = None  # None = train.steps
    score_batch_tokens: int = 16_384
    # Tokens scored per document ("all" = every token; the cost then grows with the corpus's tokens) and where:
    # "prefix" = the first ones, "windows" = seeded excerpts along the text (proxies/scoring.py).
    # Chosen by bench/bench_scoring.py on ../shared/corpora: windows of 128 tokens, Spearman 0.917 with every-token
    # scores over the pool at 3.4% of the CPU cost per document (prefix 128: 0.886; the cheapest meeting both goals).
    score_tokens: int | Literal["all"] = 128
    score_mode: Literal["prefix", "windows"] = "windows"

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1)")
        if self.score_tokens != "all" and self.score_tokens < 1:
            raise ValueError("score_tokens must be 'all' or a positive number of tokens")
        names = [s.name for s in self.sweeps]
        if len(set(names)) != len(names):
            raise ValueError("sweep names must be unique")
