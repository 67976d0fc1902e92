"""Per-document loss with a trained proxy: the mean next-token loss over each document's tokens (for SeTa).

Each document is scored on its own, prefixed with the EOT token as beginning-of-sequence so that its first token
is predicted too; a document longer than the context is cut into consecutive windows (every token predicted
exactly once, each window starting with fresh context, as in the proxies' validation). Windows of many documents
are batched together; padding is masked out. SeTa (Zhou et al., 2025) uses the last observed training loss per
sample; a static curation pass has no training loop, so the score here is the loss of a proxy trained on the
natural mixture, taken once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import torch
from tokenizers import Tokenizer

from pipeline.store import DataRoot
from proxies.model import PopulationLM
from proxies.population import autocast_for
from proxies.tokenizer import encode_batch


def document_windows(docs: Sequence[np.ndarray], *, bos: int, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (S, seq_len + 1), mask (S, seq_len), doc index per window) for a list of token arrays."""
    windows, masks, owners = [], [], []
    for index, doc in enumerate(docs):
        seq = np.concatenate([[bos], np.asarray(doc, dtype=np.int64)])
        for start in range(0, len(seq) - 1, seq_len):
            piece = seq[start : start + seq_len + 1]
            w = np.full(seq_len + 1, bos, dtype=np.int64)
            w[: len(piece)] = piece
            m = np.zeros(seq_len, dtype=bool)
            m[: len(piece) - 1] = True
            windows.append(w), masks.append(m), owners.append(index)
    if not windows:
        return np.zeros((0, seq_len + 1), np.int64), np.zeros((0, seq_len), bool), np.zeros(0, np.int64)
    return np.stack(windows), np.stack(masks), np.asarray(owners, dtype=np.int64)


@torch.no_grad()
def score_documents(model: PopulationLM, docs: Sequence[np.ndarray], *, bos: int, batch_tokens: int = 16_384,
                    member: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean token loss (float64, NaN for an empty document) and token count per document, with one member."""
    seq_len = model.config.seq_len
    device = next(model.parameters()).device
    windows, mask, owners = document_windows(docs, bos=bos, seq_len=seq_len)
    sums = np.zeros(len(docs), dtype=np.float64)
    batch = max(1, batch_tokens // seq_len)
    model.eval()
    for s in range(0, len(windows), batch):
        w = torch.from_numpy(windows[s : s + batch]).to(device)
        with autocast_for(device):
            losses = model.token_losses(w.unsqueeze(0).expand(model.n_members, -1, -1))[member]
        per_window = (losses * torch.from_numpy(mask[s : s + batch]).to(device)).sum(1).double().cpu().numpy()
        np.add.at(sums, owners[s : s + batch], per_window)
    n_tokens = np.array([len(d) for d in docs], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_tokens > 0, sums / np.maximum(n_tokens, 1), np.nan), n_tokens


PROGRESS_SECONDS = 10.0


def score_stage(root: DataRoot, stage: str, domains: list[str], *, model: PopulationLM, tokenizer: Tokenizer, bos: int,
                batch_docs: int = 512, batch_tokens: int = 16_384,
                progress: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Score every document of a stage: doc_id, domain, loss, n_tokens (in the stage's order per domain)."""
    parts = []
    started = last = time.perf_counter()
    for domain in domains:
        frame = root.scan(stage, [domain]).select("doc_id", "text").collect()
        losses, counts = [], []
        for s in range(0, frame.height, batch_docs):
            docs = encode_batch(tokenizer, frame["text"][s : s + batch_docs].to_list())
            loss, n = score_documents(model, docs, bos=bos, batch_tokens=batch_tokens)
            losses.append(loss), counts.append(n)
            if progress and time.perf_counter() - last > PROGRESS_SECONDS and s + batch_docs < frame.height:
                last = time.perf_counter()  # a long domain reports as it goes, not only when done
                progress(f"difficulty scores: {domain}: {s + batch_docs}/{frame.height} documents scored "
                         f"({last - started:.0f}s)")
        parts.append(pl.DataFrame({
            "doc_id": frame["doc_id"], "domain": [domain] * frame.height,
            "loss": np.concatenate(losses) if losses else np.zeros(0),
            "n_tokens": np.concatenate(counts) if counts else np.zeros(0, np.int64),
        }, schema={"doc_id": pl.String, "domain": pl.String, "loss": pl.Float64, "n_tokens": pl.Int64}))
        if progress:
            progress(f"difficulty scores: {domain}: {frame.height} documents")
    if not parts:
        return pl.DataFrame(schema={"doc_id": pl.String, "domain": pl.String, "loss": pl.Float64, "n_tokens": pl.Int64})
    return pl.concat(parts)


__all__ = ["document_windows", "score_documents", "score_stage"]
