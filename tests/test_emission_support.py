"""Helpers shared by the emission tests (no tests here): a small corpus, a BPE tokenizer, a mixture."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.schema import DOCUMENT_SCHEMA, doc_id_for

WORDS = {
    "code": "def return import class self lambda yield for while if else None True False print len".split(),
    "law": "court shall section act pursuant thereof whereas party agreement license granted hereby".split(),
    "math": "theorem proof lemma integral sum prime number equation solve therefore hence let".split(),
    "web": "great movie film plot actor scene love boring watch review story character".split(),
    "intl": "naïve café über straße déjà vu 東京 数学 ∑ ∫ λ → ✓".split(),
}


def make_texts(domain: str, n: int, seed: int, *, max_words: int = 120) -> list[str]:
    rng = random.Random(f"{seed}:{domain}")
    words = WORDS.get(domain) or WORDS["web"]
    texts = []
    for i in range(n):
        k = rng.randint(3, max_words)
        texts.append(f"{domain} {i}: " + " ".join(rng.choice(words) for _ in range(k)))
    return texts


def write_domain_parquet(folder: Path, domain: str, texts: list[str], *, parts: int = 2) -> list[Path]:
    """Canonical-schema Parquet files for one domain, split into ``parts`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    step = max(1, -(-len(texts) // parts))
    for p, a in enumerate(range(0, len(texts), step)):
        chunk = texts[a: a + step]
        table = pa.Table.from_pylist(
            [{"doc_id": doc_id_for(t), "domain": domain, "source": domain, "source_file": "synthetic",
              "source_row": a + i, "text": t, "n_bytes": len(t.encode()), "n_chars": len(t)} for i, t in enumerate(chunk)],
            schema=DOCUMENT_SCHEMA,
        )
        path = folder / f"part-{p:05d}.parquet"
        pq.write_table(table, path, row_group_size=64)
        files.append(path)
    return files


def train_tokenizer(texts: list[str], path: Path, *, vocab_size: int = 400) -> Path:
    """A small byte-level BPE with an <|endoftext|> special token, trained in the test (offline)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_mixture(path: Path, proportions: dict[str, float], method: str = "test") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"proportions": proportions, "method": method, "note": "written by a test"}))
    return path


def small_inputs(tmp: Path, *, docs: dict[str, int] | None = None, seed: int = 0):
    """(domain_files, tokenizer_path, all texts) for a few synthetic domains."""
    docs = docs or {"code": 60, "law": 40, "math": 50, "intl": 30}
    domain_files, all_texts = {}, []
    for d, n in docs.items():
        texts = make_texts(d, n, seed)
        all_texts += texts
        domain_files[d] = write_domain_parquet(tmp / "docs" / d, d, texts)
    tok = train_tokenizer(all_texts, tmp / "tokenizer" / "tokenizer.json")
    return domain_files, tok, all_texts
