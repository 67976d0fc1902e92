"""The `tokenizer` stage: train byte-level BPE on the curated pool (or copy the user's tokenizer.json), write the
loader files a training framework reads, and check that curated documents decode back to themselves.

Output (``Layout.tokenizer_dir``, written as a whole to a temporary folder, then renamed): ``tokenizer.json``,
``meta.json`` (sha256, vocab size, EOT id, where it came from) and the transformers/Megatron loader files.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.emission.writer import find_eos
from pipeline.engine.outcome import CheckOutcome, StageOutcome
from pipeline.layout import Layout
from pipeline.store import DataRoot, atomic_dir, file_sha256, write_json
from proxies.tokenizer import (eot_id, load_tokenizer, sample_training_texts, save_tokenizer, train_tokenizer,
                               write_loader_files)


def roundtrip_check(root: DataRoot, stage: str, domains: list[str], tokenizer_path: Path) -> CheckOutcome:
    """The first 20 documents of each domain encode and decode back to themselves exactly."""
    tok = load_tokenizer(tokenizer_path)
    texts = [t for d in domains for t in root.scan(stage, [d]).select("text").head(20).collect()["text"].to_list()]
    bad = [t[:60] for t in texts if tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False) != t]
    return CheckOutcome(name="roundtrip", passed=not bad,
                        metadata={"documents_checked": len(texts), "mismatches": len(bad),
                                  "first_mismatch": bad[0] if bad else "none"})


def build_tokenizer(spec, *, progress: Callable[[str], None] | None = None) -> StageOutcome:
    root, cfg = DataRoot(spec.data_root), spec.tokenizer
    layout: Layout = root.layout
    final = layout.tokenizer_json.name
    started = time.perf_counter()
    with atomic_dir(layout.tokenizer_dir) as tmp:
        if cfg.path:
            user = Path(cfg.path) if Path(cfg.path).is_absolute() else spec.path.parent / cfg.path
            shutil.copyfile(user, tmp / final)
            origin = {"source": "user", "path": str(user)}
        else:
            texts = sample_training_texts(root, "curated", spec.domains, max_bytes=cfg.max_training_bytes,
                                          seed=spec.seed_for("tokenizer"))
            save_tokenizer(train_tokenizer(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency), tmp / final)
            origin = {"source": "trained", "stage": "curated", "max_training_bytes": cfg.max_training_bytes}
        tok = load_tokenizer(tmp / final)
        sha = file_sha256(tmp / final)
        meta = {"sha256": sha, "vocab_size": tok.get_vocab_size(), "eot_id": eot_id(tok), **origin}
        # The same end-of-document token emission ends documents with (output.eos_token or the first known).
        write_loader_files(tmp, eos_token=find_eos(tok, spec.output.eos_token)[0],
                           model_max_length=spec.output.sequence_length)
        write_json(tmp / layout.tokenizer_meta.name, meta)
    if progress:
        progress(f"tokenizer {sha[:12]} ({meta['vocab_size']} tokens) in {time.perf_counter() - started:.1f}s")
    return StageOutcome(metadata={**meta, "path": layout.tokenizer_dir}, data_version=sha[:16],
                        checks=[roundtrip_check(root, "curated", spec.domains, layout.tokenizer_json)])


__all__ = ["build_tokenizer", "roundtrip_check"]
