"""Spec sections `tokenizer` and `proxies` (owned by proxies/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 4096
    # A user-supplied tokenizer.json; when set, no tokenizer is trained.
    path: str | None = None


@dataclass(frozen=True)
class ProxiesConfig:
    enabled: bool = True
