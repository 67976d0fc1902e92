"""Shared by the end-to-end tests: a small, fast copy of the embedded example spec.

Three domains cut from ``examples/default`` (math, code, techdocs) and settings that make every stage
quick on a 2-core CPU. Other stages' settings are in flux, so each override is applied only where the
spec's dataclasses still have that key (an override that no longer exists is skipped, not an error),
and the spec is validated by ``load_spec`` like a user's.
"""

import dataclasses
import gzip
import shutil
import typing
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pipeline.spec import SpecBody, load_spec

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "default"

# Only the keys that make the run small; everything else keeps the stage owner's default.
FAST = {
    "tokenizer": {"vocab_size": 512, "max_training_bytes": 400_000},
    "curation": {},
    "pruning": {"method": "dbp", "target_fraction": 0.7, "clusters": {"k": 6, "max_iter": 10}, "embedding": {"dim": 16, "fit_sample": 500}},
    "proxies": {
        "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64, "seq_len": 64},
        "train": {"steps": 12, "batch_size": 4, "warmup_steps": 2, "eval_tokens": 1024, "compile": False, "device": "cpu"},
        "sweeps": [{"name": "sweep0", "n_mixtures": 6, "seeds": [0]}],
        "reference_steps": 12,
        "max_train_tokens_per_domain": 40_000,
        "score_batch_tokens": 4096,
    },
    "mixing": {
        "regmix": {"regressor": "ridge", "num_samples": 2000, "top_k": 10, "num_boost_round": 20},
        "aioli": {"update_steps": 4, "lp_rounds": 1, "lp_steps": 1},
        "validation": {"enabled": False},
    },
    "output": {"total_tokens": 30_000, "shard_tokens": 20_000, "sequence_length": 64},
}


def _known(cls, overrides: dict) -> dict:
    """``overrides`` restricted to the fields ``cls`` (a config dataclass) has today."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {}
    for key, value in overrides.items():
        if key not in names:
            continue
        field_type = hints[key]
        if isinstance(value, dict) and dataclasses.is_dataclass(field_type):
            kept[key] = _known(field_type, value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            (item_type,) = typing.get_args(field_type) or (None,)
            kept[key] = [_known(item_type, v) for v in value] if dataclasses.is_dataclass(item_type) else value
        else:
            kept[key] = value
    return kept


def _head_jsonl(src: Path, dst: Path, lines: int) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for i, line in enumerate(fin):
            if i >= lines:
                break
            fout.write(line)


def small_spec(folder: Path, *, math_rows: int = 300, techdocs_files: int = 20, code_rows: int = 120) -> Path:
    """Write raw files and ``spec.yaml`` under ``folder``; returns the spec path."""
    raw = folder / "raw"
    (raw / "techdocs").mkdir(parents=True, exist_ok=True)
    _head_jsonl(EXAMPLE / "raw" / "math_gsm8k_train.jsonl", raw / "math_gsm8k.jsonl", math_rows)
    table = pq.read_table(EXAMPLE / "raw" / "code_go_stdlib.parquet")
    pq.write_table(table.slice(0, code_rows), raw / "code_go.parquet")
    for path in sorted((EXAMPLE / "raw" / "techdocs_python311_rst").glob("*.txt"))[:techdocs_files]:
        shutil.copy(path, raw / "techdocs" / path.name)
    example = yaml.safe_load((EXAMPLE / "spec.yaml").read_text())
    by_name = {s["name"]: s for s in example["sources"]}
    sources = [
        {**by_name["gsm8k"], "path": "raw/math_gsm8k.jsonl"},
        {**by_name["go_stdlib"], "path": "raw/code_go.parquet"},
        {**by_name["python_docs"], "path": "raw/techdocs/*.txt"},
    ]
    hints = typing.get_type_hints(SpecBody)
    spec = {
        "name": "e2e-small",
        "seed": example.get("seed", 0),
        "data_root": "data",
        "sources": sources,
        "staging": example.get("staging", {}),
        **{section: _known(hints[section], values) for section, values in FAST.items() if section in hints},
        "operations": {"sensor": {"interval_seconds": 5}},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    load_spec(path)  # fail here, with the key path, if the overrides no longer validate
    return path


__all__ = ["REPO", "small_spec"]
