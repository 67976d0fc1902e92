"""The proxies' tokenizer: a byte-level BPE trained offline with HF ``tokenizers``, or a user's tokenizer.json.

Byte-level (GPT-2 style) so that every string, whatever its script or bytes, encodes and decodes back exactly:
no normalizer, no prefix space, ByteLevel pre-tokenizer and decoder. One special token, ``<|endoftext|>``
(id 0), separates documents in the token bins. The saved file is identified by its sha256.

Next to ``tokenizer.json`` the folder holds what other loaders need to know which token ends a document
(``write_loader_files``): ``tokenizer_config.json`` and ``special_tokens_map.json`` for
``transformers.AutoTokenizer`` (and so Megatron-LM's ``HuggingFaceTokenizer``), ``tokenizer_metadata.json`` for
Megatron-Core's ``MegatronTokenizer.from_pretrained``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.store import DataRoot, atomic_file, file_sha256

EOT = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE on ``texts`` (deterministic for the same texts in the same order)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> str:
    """Write tokenizer.json atomically; return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tokenizer.save(str(tmp))
    return file_sha256(path)


LOADER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer_metadata.json")


def write_loader_files(folder: str | os.PathLike, *, eos_token: str, model_max_length: int) -> list[Path]:
    """Write the files that tell ``transformers`` and Megatron-Core which token ends a document.

    GPT-2's convention: the end-of-document token also serves as BOS and PAD (a byte-level BPE has no
    unknown token). Nothing is added when encoding: the training set already ends every document with it.
    """
    folder = Path(folder)
    special = {"bos_token": eos_token, "eos_token": eos_token, "pad_token": eos_token}
    files = {
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast", **special, "unk_token": None,
            "model_max_length": model_max_length, "add_bos_token": False, "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        },
        "special_tokens_map.json": special,
        # Megatron-Core's own tokenizer library: a HuggingFace tokenizer used by a GPT model.
        "tokenizer_metadata.json": {"library": "huggingface", "class_name": None, "class_path": None,
                                    "model_type": "gpt", "chat_template": None},
    }
    written = []
    for name, body in files.items():
        path = folder / name
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def eot_id(tokenizer: Tokenizer) -> int:
    token_id = tokenizer.token_to_id(EOT)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {EOT!r} token; add it as a special token to use it for proxies")
    return token_id


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids per text, as int64 arrays (no special tokens added).

    ``encode_batch_fast``: the same ids without character offsets, which nothing here reads (a full encoding
    holds ~180 bytes per token, a fast one ~150); callers bound memory by the text they pass per call."""
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def sample_training_texts(root: DataRoot, stage: str, domains: list[str], *, max_bytes: int, seed: int) -> Iterator[str]:
    """Texts for BPE training: an equal byte budget per domain, documents in a seeded random order.

    A domain smaller than its share gives all of its text; documents longer than the share are cut, so one huge
    document cannot fill a domain's budget alone.
    """
    share = max(1, max_bytes // max(1, len(domains)))
    for index, domain in enumerate(domains):
        ids = root.scan(stage, [domain]).select("doc_id", "n_bytes").collect()
        if ids.height == 0:
            continue
        order = np.random.default_rng([seed, index]).permutation(ids.height)
        picked = ids[order]
        keep = picked.filter(pl.col("n_bytes").cum_sum().shift(1, fill_value=0) < share)["doc_id"]
        texts = root.scan(stage, [domain]).filter(pl.col("doc_id").is_in(keep.implode())).select("doc_id", "text")
        frame = texts.collect()
        by_id = dict(zip(frame["doc_id"].to_list(), frame["text"].to_list()))
        used = 0
        for doc_id in keep.to_list():
            text = by_id[doc_id][: max(1, share - used)]
            used += len(text.encode("utf-8", errors="ignore"))
            yield text


__all__ = ["EOT", "LOADER_FILES", "train_tokenizer", "save_tokenizer", "write_loader_files", "load_tokenizer", "file_sha256", "eot_id", "encode_batch",
           "token_dtype", "sample_training_texts"]
