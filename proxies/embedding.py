"""D4-style document embeddings: the mean of a small proxy LM's final hidden states over a document's tokens.

D4 (Tirumala et al. 2023) clustered documents by the last-layer hidden states of an OPT model averaged over
the tokens. Here the LM is curamix's own proxy (proxies/model.py), so no download is needed: either a trained
proxy is handed in (the benchmark uses its reference proxy), or ``fit`` trains one, with its byte-level BPE,
on the embedding stage's fit sample (deterministic for the seed). ``transform`` reads the first
``max_tokens`` tokens of each document, mean-pools the final normalized hidden states over them and
L2-normalizes; batched, on the GPU when present.
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer

from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig
from proxies.model import PopulationLM
from proxies.tokenizer import encode_batch, eot_id, train_tokenizer

# The proxy ``fit`` trains when none is given: RegMix-sized (2 layers), seq 128; a few hundred steps on
# the fit sample are enough for its hidden states to separate domains and topics.
FIT_MODEL = ModelConfig(n_layers=2, d_model=128, n_heads=4, d_ff=384, seq_len=128)
FIT_VOCAB = 4096


class ProxyEmbedder:
    def __init__(self, *, model: PopulationLM | None = None, tokenizer: Tokenizer | None = None,
                 max_tokens: int = 256, max_chars: int = 8000, batch_size: int = 64, fit_steps: int = 300,
                 seed: int = 0, device: str = "auto"):
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.max_chars, self.batch_size = max_tokens, max_chars, batch_size
        self.fit_steps, self.seed = fit_steps, seed
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if device == "auto" else device))
        self.dim = model.config.d_model if model is not None else FIT_MODEL.d_model
        if model is not None:
            self.model = model.to(self.device).eval()

    def fit(self, texts: list[str]) -> ProxyEmbedder:
        """Train the tokenizer and a proxy on ``texts`` unless both were given."""
        if self.model is not None and self.tokenizer is not None:
            return self
        from proxies.bins import Bins
        from proxies.population import train_population

        cut = [t[: self.max_chars] for t in texts]
        self.tokenizer = train_tokenizer(cut, vocab_size=FIT_VOCAB)
        eot = eot_id(self.tokenizer)
        train = np.concatenate([np.append(ids, eot) for ids in encode_batch(self.tokenizer, cut)] or
                               [np.zeros(0, np.int64)]).astype(np.uint16)
        bins = Bins(vocab_size=self.tokenizer.get_vocab_size(), eot=eot, domains=["pool"], train={"pool": train},
                    val={"pool": np.zeros(0, np.uint16)})
        config = ProxiesConfig(model=FIT_MODEL, train=TrainConfig(
            steps=self.fit_steps, batch_size=16, lr=2e-3, warmup_steps=max(1, self.fit_steps // 10),
            eval_tokens=0, compile=False, device=str(self.device)))
        kept = {}
        train_population(bins, np.ones((1, 1)), config, seed=self.seed,
                         keep=lambda i, model, j: kept.setdefault("model", PopulationLM.from_members(
                             model.config, model.vocab_size, [model.member_state(j)])))
        self.model = kept["model"].to(self.device).eval()
        self.dim = self.model.config.d_model
        return self

    @torch.inference_mode()
    def transform(self, texts: list[str]) -> np.ndarray:
        if self.model is None or self.tokenizer is None:
            raise RuntimeError("fit the proxy embedder first (or give it a trained proxy and its tokenizer)")
        bos = eot_id(self.tokenizer)
        seq = min(self.max_tokens, self.model.config.seq_len)
        docs = [ids[:seq] for ids in encode_batch(self.tokenizer, [t[: self.max_chars] for t in texts])]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(d) for d in docs], kind="stable")
        for s in range(0, len(order), self.batch_size):
            chunk = order[s : s + self.batch_size]
            width = max(1, max(len(docs[i]) for i in chunk))
            # The EOT token opens every document (as in scoring); padding after the end is masked out.
            ids = np.full((len(chunk), width), bos, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(docs[i])
                ids[row, :n] = docs[i]
                mask[row, : max(n, 1)] = 1.0
            tokens = torch.from_numpy(ids).to(self.device)[None]
            hidden = self.model.hidden(tokens)[0].float().view(len(chunk), width, -1)
            m = torch.from_numpy(mask).to(self.device)[..., None]
            pooled = (hidden * m).sum(1) / m.sum(1)
            out[chunk] = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
        return out
