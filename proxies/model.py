"""A tiny decoder-only LM, written once for a whole population of proxies.

Architecture follows RegMix's ~1M-non-embedding-parameter TinyLlama proxy: pre-norm blocks with RMSNorm,
rotary position embeddings (RoPE, rotate-half form as in Llama), SwiGLU feed-forward, no biases, untied
input/output embeddings by default. Differences from RegMix, chosen for a CPU: a narrower default width and a
short context (see ``ModelConfig``).

Every weight carries a leading *member* dimension ``N``: ``PopulationLM(config, n_members=N)`` is N independent
models evaluated together with batched matmuls (``x[N, tokens, d] @ W[N, d, k]``). Members never exchange
information: the loss is the sum of per-member mean losses, so each member's gradient depends only on its own
weights and data. A single proxy is simply ``n_members=1``; training it alone or inside a population runs the
same code, which is what makes the two comparable to float tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.proxies import ModelConfig


def rope_tables(seq_len: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (seq_len, head_dim) for the rotate-half formulation."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class StackedLinear(nn.Module):
    """N independent bias-free linear maps: (N, M, d_in) -> (N, M, d_out)."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight.to(x.dtype))


class StackedRMSNorm(nn.Module):
    def __init__(self, n: int, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight).to(x.dtype)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, n: int):
        super().__init__()
        d, f = config.d_model, config.d_ff
        self.n_heads = config.n_heads
        self.attn_norm = StackedRMSNorm(n, d)
        self.qkv = StackedLinear(n, d, 3 * d)
        self.proj = StackedLinear(n, d, d)
        self.mlp_norm = StackedRMSNorm(n, d)
        self.gate_up = StackedLinear(n, d, 2 * f)  # SwiGLU's gate and up projections, fused
        self.down = StackedLinear(n, f, d)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: int) -> torch.Tensor:
        n, m, d = x.shape  # m = batch * seq_len tokens per member
        t, h = m // batch, self.n_heads
        q, k, v = self.qkv(self.attn_norm(x)).view(n * batch, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(n, m, d))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class PopulationLM(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, n_members: int = 1):
        super().__init__()
        self.config, self.vocab_size, self.n_members = config, vocab_size, n_members
        d = config.d_model
        self.embed = nn.Parameter(torch.empty(n_members, vocab_size, d))
        self.blocks = nn.ModuleList(Block(config, n_members) for _ in range(config.n_layers))
        self.norm = StackedRMSNorm(n_members, d)
        self.head = None if config.tie_embeddings else StackedLinear(n_members, d, vocab_size)
        cos, sin = rope_tables(config.seq_len, d // config.n_heads, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    # -- initialisation: each member from its own seed, so a member is reproducible alone ---------------
    @torch.no_grad()
    def init_members(self, seeds: Sequence[int]) -> None:
        """Normal(0, init_std) weights (output projections scaled by 1/sqrt(2 n_layers), GPT-2 style)."""
        assert len(seeds) == self.n_members
        std = self.config.init_std
        for i, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(int(seed))
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p[i].fill_(1.0)
                    continue
                scale = std / math.sqrt(2 * self.config.n_layers) if name.endswith(("proj.weight", "down.weight")) else std
                p[i].copy_(torch.randn(p.shape[1:], generator=gen) * scale)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s weights as a one-member state dict (what a saved proxy holds)."""
        return {k: v[i : i + 1].detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_members(cls, config: ModelConfig, vocab_size: int, states: Sequence[dict[str, torch.Tensor]]) -> "PopulationLM":
        model = cls(config, vocab_size, n_members=len(states))
        model.load_state_dict({k: torch.cat([s[k] for s in states]) for k in states[0]})
        return model

    # -- forward ---------------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, B, T) -> logits (N, B*T, vocab)."""
        x = self.hidden(tokens)
        if self.head is None:
            return torch.bmm(x, self.embed.transpose(1, 2).to(x.dtype))
        return self.head(x)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, B, T) -> final (normalized) hidden states (N, B*T, d_model); D4-style embeddings pool these."""
        n, b, t = tokens.shape
        v = self.vocab_size
        offsets = (torch.arange(n, device=tokens.device) * v).view(n, 1, 1)
        # One flat table and F.embedding: its backward is a dense scatter-add, much cheaper than advanced indexing.
        x = F.embedding(tokens + offsets, self.embed.view(n * v, -1)).view(n, b * t, -1)
        cos, sin = self.rope_cos[:t].to(x.dtype), self.rope_sin[:t].to(x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin, b)
        return self.norm(x)

    def token_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy for every position: tokens (N, B, T+1) -> losses (N, B, T), float32."""
        n, b, t1 = tokens.shape
        logits = self(tokens[..., :-1])
        losses = F.cross_entropy(logits.float().view(-1, self.vocab_size), tokens[..., 1:].reshape(-1), reduction="none")
        return losses.view(n, b, t1 - 1)

    def member_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss per member: tokens (N, B, T+1) -> (N,)."""
        n, b, t1 = tokens.shape
        logits = self(tokens[..., :-1]).float()
        losses = F.cross_entropy(logits.view(-1, self.vocab_size), tokens[..., 1:].reshape(-1), reduction="none")
        return losses.view(n, -1).mean(1)


def non_embedding_params(config: ModelConfig) -> int:
    d, f = config.d_model, config.d_ff
    return config.n_layers * (4 * d * d + 3 * d * f + 2 * d) + d


def train_flops_per_token(config: ModelConfig, vocab_size: int) -> float:
    """Model FLOPs of one training token (forward + backward = 3x forward; causal attention counted as half).

    Matmuls: 2 FLOPs per weight in qkv/proj/SwiGLU/LM head; attention scores and values: 2 * 2 * T * d per
    layer for a full T x T map, halved because only the causal triangle is needed. Embedding lookups, norms
    and the softmax are not counted (the usual MFU convention).
    """
    d, f, t = config.d_model, config.d_ff, config.seq_len
    matmul_params = config.n_layers * (4 * d * d + 3 * d * f) + d * vocab_size
    attention = config.n_layers * 2 * t * d
    return 3 * (2 * matmul_params + attention)


__all__ = ["PopulationLM", "non_embedding_params", "train_flops_per_token", "rope_tables", "apply_rope"]
