"""Spec section `mixing` (owned by mixers/): how the domain proportions are chosen and validated.

Every domain's share is capped by an epoch limit: at most ``max_epochs`` passes over the domain's available
tokens for a training set of ``budget_tokens`` (both default to the `output` section's values, so the cap the
mixer respects is the one the training set will be written under).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config.proxies import ModelConfig

MixingMethod = Literal["regmix", "aioli", "uniform", "natural", "temperature"]


@dataclass(frozen=True)
class RegMixSettings:
    # "auto" (default): per target, whichever of the others ranks held-out proxy runs best in 5-fold
    # cross-validation (bench/bench_regmix_fewrun.py: the best single choice changes with the number of runs).
    # "lightgbm" (the paper's: gbdt, 1000 rounds, lr 0.01, seed 42), "ridge" (linear), "ridge_log" (ridge on the
    # weights and their logs), "mixing_law" (Ye et al. 2024: c + k exp(t . r)), "law_lightgbm" (the law plus
    # LightGBM on its residuals).
    regressor: Literal["auto", "lightgbm", "ridge", "ridge_log", "mixing_law", "law_lightgbm"] = "auto"
    # One regressor per target, their weighted predictions summed (the paper), or one on the weighted sum
    # itself (k times cheaper to search with; see mixers/regmix/fit.py).
    fit: Literal["per_target", "combined"] = "per_target"
    # Simulated mixtures predicted in the search (the paper: 1,000,000) and how many of the best are averaged.
    num_samples: int = 1_000_000
    top_k: int = 100
    # Dirichlet(prior x strength) for the simulated mixtures (the notebook: 1.0, no temperature).
    search_strength: float = 1.0
    # Models with trees: screen all simulated mixtures with a small forest distilled from the model and predict
    # only this many best (plus the 10,000-mixture sample it was distilled on) with the full model; 0: predict
    # every candidate with the full model (bench/bench_regmix_search.py compares the two).
    search_rescore: int = 10_000
    # Share of proxy runs held out to report fit quality (Spearman, MSE); the final fit uses all runs.
    holdout: float = 0.2
    ridge_alpha: float = 0.01
    num_boost_round: int = 1000
    learning_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.num_samples < 1 or not 1 <= self.top_k <= self.num_samples:
            raise ValueError("need num_samples >= 1 and 1 <= top_k <= num_samples")
        if not 0 <= self.holdout < 1:
            raise ValueError("holdout must be in [0, 1)")
        if self.search_rescore < 0:
            raise ValueError("search_rescore must be >= 0")


@dataclass(frozen=True)
class AioliSettings:
    # Training steps of the online run, probes included (None: the proxies section's steps).
    total_steps: int | None = None
    # Steps per round (T = total_steps / update_steps rounds); LearnParams probes come out of each round.
    update_steps: int = 250
    lp_rounds: int = 4
    lp_steps: int = 4
    one_hot_factor: float = 0.625
    eta: float = 0.2
    # EMA of the normalized A (all released scripts use one); null: the cumulative update without EMA.
    ema: float | None = 0.1
    # Restricted setting: first train `prior_steps` on this baseline, then run the loop.
    prior: Literal["none", "uniform", "natural", "temperature"] = "none"
    prior_steps: int = 0
    init: Literal["uniform", "prior"] = "uniform"
    # The mixture handed on: p at the end of the run, or the step-weighted average of the trained segments.
    output: Literal["final", "average"] = "final"
    # Validation tokens per domain read at each LearnParams evaluation (None: proxies.train.eval_tokens).
    # There are lp_rounds x k + 1 evaluations per round: on a CPU they can cost more than the training steps.
    eval_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.prior_steps and self.prior == "none":
            raise ValueError("prior_steps > 0 needs a prior (the restricted setting)")
        if self.ema is not None and not 0 <= self.ema < 1:
            raise ValueError("ema must be in [0, 1)")


@dataclass(frozen=True)
class ValidationSettings:
    # Train a proxy on the chosen mixture and on each baseline with the same token budget; compare held-out loss.
    enabled: bool = True
    baselines: list[Literal["uniform", "natural", "temperature"]] = field(
        default_factory=lambda: ["uniform", "natural"])
    seeds: int = 1
    # Training steps of each validation proxy (None: the proxies section's steps).
    steps: int | None = None
    # A check at a larger scale (RegMix's rank invariance): also train the chosen mixture and the baselines with
    # this model (a full model section; RegMix checks at >= 8x the proxies' non-embedding parameters, and the
    # report says the ratio) on `tokens` training tokens each (None: the validation runs' steps). Off when null.
    model: ModelConfig | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens <= 0:
            raise ValueError("validation.tokens must be positive")


@dataclass(frozen=True)
class MixingConfig:
    method: MixingMethod = "regmix"
    # Target = sum of weight x validation loss over these names: per-domain losses use the domain name,
    # target sets (e.g. eval texts) their name in the proxy results. Empty: the mean per-domain loss.
    target_weights: dict[str, float] = field(default_factory=dict)
    # Epoch cap (None: output.max_epochs) for a training set of budget_tokens (None: output.total_tokens).
    max_epochs: float | None = None
    budget_tokens: int | None = None
    # The temperature baseline: p ~ tokens^(1/T).
    temperature: float = 2.0
    regmix: RegMixSettings = field(default_factory=RegMixSettings)
    aioli: AioliSettings = field(default_factory=AioliSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.target_weights.values()):
            raise ValueError("target_weights must be non-negative")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
