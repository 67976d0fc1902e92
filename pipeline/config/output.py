"""Spec section `output` (owned by emission): the training set curamix writes.

The token budget is split over domains by the chosen mixture (largest-remainder apportionment, so
the quotas sum to ``total_tokens`` exactly). A domain smaller than its quota is repeated, whole
documents in a fresh order per epoch, up to ``max_epochs``; past that, ``over_cap`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

OutputFormat = Literal["megatron", "parquet"]


@dataclass(frozen=True)
class OutputConfig:
    # Tokens in the training set (EOS tokens included), split over domains by the mixture.
    total_tokens: int = 1_000_000
    # How many passes over a domain's documents are allowed to fill its quota (fractional allowed).
    # 4 follows Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"): up to about
    # four epochs of repeated data are nearly as useful as fresh data.
    max_epochs: float = 4.0
    # Past the cap: "fail" stops with an error naming the domain; "renormalize" caps the domain at
    # max_epochs and gives the remaining budget to the other domains in proportion to their weights.
    over_cap: Literal["fail", "renormalize"] = "renormalize"
    # Most tokens in one shard; documents are never split across shards.
    shard_tokens: int = 100_000_000
    formats: list[OutputFormat] = field(default_factory=lambda: ["megatron", "parquet"])
    # One set of shards per domain (for Megatron's --data-path blending) and one pre-mixed set.
    per_domain: bool = True
    mixed: bool = True
    # Length of the fixed-length training sequences the reader yields (recorded in the manifest).
    sequence_length: int = 2048
    # The end-of-document token; None picks the first of <|endoftext|>, </s>, <eos>, [EOS], <|eos|>
    # that the tokenizer knows.
    eos_token: str | None = None
    # Text per encode_batch call (UTF-8 bytes): bounds memory while keeping the tokenizer's
    # threads busy. Encodings cost ~150 bytes per token (~60x the text) and two batches are in
    # flight, so the default holds ~130 MB; larger batches do not tokenize faster.
    encode_batch_bytes: int = 1_000_000
    # Where the set goes; default <data_root>/training_set.
    path: str | None = None
    # Keep the per-domain token cache next to the output so a new mixture or budget re-emits
    # without tokenizing again.
    keep_token_cache: bool = True
    # Megatron splits every --data-path entry (one shard of a domain's set) by its own document count: with
    # --split A,B,C a part of fraction f needs about 1/f documents per shard, or it is empty and Megatron's
    # GPTDataset loops forever (--split 969,30,1 needs 501, 99,1,0 needs 51; docs/operations.md). A domain
    # whose fewest-document shard holds fewer than this is reported; on_small_domain says how.
    min_documents_per_domain: int = 100
    # "warn": say so in the log and the manifest's "warnings"; "error": stop before writing, naming the domain.
    on_small_domain: Literal["warn", "error"] = "warn"

    def __post_init__(self) -> None:
        if self.total_tokens <= 0:
            raise ValueError("total_tokens must be positive")
        if self.max_epochs <= 0:
            raise ValueError("max_epochs must be positive")
        if self.shard_tokens <= 0 or self.sequence_length <= 0 or self.encode_batch_bytes <= 0:
            raise ValueError("shard_tokens, sequence_length and encode_batch_bytes must be positive")
        if not self.formats:
            raise ValueError("formats must name at least one of 'megatron', 'parquet'")
        if self.min_documents_per_domain < 0:
            raise ValueError("min_documents_per_domain must be 0 or more")
        if not (self.per_domain or self.mixed):
            raise ValueError("at least one of per_domain, mixed must be true")
