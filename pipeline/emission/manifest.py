"""``manifest.json``: what a training set holds and where every number came from.

Recorded: format and dtype; tokenizer identity and sha256; per shard its files (path, bytes,
sha256), documents, tokens and domain (per-domain tokens for mixed shards); per domain the target
and achieved proportion, tokens, documents and epochs; the mixer and its inputs; seeds; source file
hashes and row counts (from staging's ``stats.json``); per-stage removal counts (from each stage's
rejects); the spec's hash; and the Megatron ``--data-path`` blend for the per-domain set. No
timestamps, so the same spec and inputs give a byte-identical manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline.config.typed import to_plain
from pipeline.emission.megatron import DTYPE_CODES
from pipeline.emission.shuffle import FEISTEL_ROUNDS
from pipeline.store import DataRoot, file_sha256 as _sha256, write_json

MANIFEST_VERSION = 2
# How a seed becomes an order (pipeline/emission/shuffle.py); version 1 sorted by a keyed hash.
SHUFFLE = f"feistel-splitmix64-{FEISTEL_ROUNDS}-rounds, cycle-walking"
EXACTNESS = (
    "per-domain tokens (EOS included) equal the quotas exactly; quotas are the largest-remainder "
    "apportionment of total_tokens; documents are whole except at most one per domain, cut to a prefix "
    "of its tokens that still ends with EOS"
)
DOCUMENT_STAGES = ("documents", "curated", "pruned")


def _relative(path, out_dir) -> str | None:
    """A path as seen from the training set's folder: the manifest then reads the same wherever the data
    root lives (the sha256 next to it says which file it was)."""
    if path is None:
        return None
    return Path(os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())).as_posix()


def build_manifest(*, inputs, config, plan, schedules, caches, sets, tokenizer, tokenizer_sha256, eos, dtype,
                   fingerprints, build_key, out_dir) -> dict:
    total = plan.total_tokens
    domains = {}
    for d, q in plan.domains.items():
        s = schedules[d]
        cut = None
        if len(s):
            last_doc, last_take = s.last()
            full = int(caches[d].lengths[last_doc])
            if last_take < full:
                cut = {"doc_id": caches[d].doc_id(last_doc), "kept_tokens": last_take, "tokens": full}
        domains[d] = {
            "target_proportion": q.target_proportion,
            "achieved_proportion": s.tokens / total,
            "quota": q.quota,
            "tokens": s.tokens,
            "documents": len(s),
            "unique_documents": s.unique_documents,
            "available_documents": caches[d].documents,
            "available_tokens": q.available,
            "epochs": q.epochs,
            "full_epochs_started": s.epochs_started,
            "capped": q.capped,
            "cut_document": cut,
            "input_fingerprint": fingerprints[d],
        }
    mixture = dict(inputs.mixture)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "build_key": build_key,
        "formats": list(config.formats),
        "dtype": np.dtype(dtype).name,
        "megatron": {"layout": "MMIDIDX", "index_version": 1, "dtype_code": DTYPE_CODES[np.dtype(dtype).name],
                     "one_sequence_per_document": True, "documents_end_with_eos": True},
        "tokenizer": {
            "path": _relative(inputs.tokenizer_path, out_dir),
            "sha256": tokenizer_sha256,
            "model": type(tokenizer.model).__name__,
            "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
            "eos_token": eos[0],
            "eos_id": eos[1],
        },
        "total_tokens": total,
        "sequence_length": config.sequence_length,
        "sequences": total // config.sequence_length,
        "quotas": {"max_epochs": plan.max_epochs, "over_cap": plan.over_cap, "renormalized": plan.renormalized,
                   "exactness": EXACTNESS},
        "domains": domains,
        "sets": sets,
        "megatron_data_path": blend_string(sets, total) if "megatron" in config.formats else None,
        "mixer": {
            "method": mixture.get("method"),
            "proportions": mixture.get("proportions"),
            # The mixer's own record of its inputs (proxy runs, regressor, budget, caps, seeds) when it
            # writes one; otherwise whatever else mixture.json holds.
            "inputs": mixture["inputs"] if isinstance(mixture.get("inputs"), dict)
            else {k: v for k, v in mixture.items() if k not in ("proportions", "method")},
            "predicted": mixture.get("predicted"),
            "path": _relative(inputs.mixture_path, out_dir),
            "sha256": _sha256(inputs.mixture_path) if inputs.mixture_path and Path(inputs.mixture_path).exists() else None,
        },
        "seeds": {"emission": inputs.seed, "domain_epoch_order": "sub_seed(emission, 'domain', d, 'epoch', e)",
                  "global_shuffle": "sub_seed(emission, 'global')", "permutation": SHUFFLE},
        "output_config": to_plain(config),
        **inputs.provenance,
    }
    return manifest


def blend_string(sets: dict, total: int) -> str:
    """Megatron ``--data-path``: ``weight prefix`` pairs over the per-domain shards.

    A shard's weight is its share of all tokens, so the blend reproduces the achieved proportions;
    prefixes are relative to the manifest's folder (Megatron appends ``.bin`` / ``.idx``).
    """
    parts = []
    for name, s in sets.items():
        if not name.startswith("domains/"):
            continue
        for shard in s["shards"]:
            parts.append(f"{shard['tokens'] / total:.12g} {name}/{shard['name']}")
    return " ".join(parts)


def provenance(root: DataRoot, *, spec_hash: str | None = None, spec_seed: int | None = None,
               domains: list[str] | None = None) -> dict:
    """Source hashes and row counts (staging's stats.json) and per-stage removal counts (rejects)."""
    sources: dict[str, dict] = {}
    for d in domains or root.domains("documents"):
        path = root.layout.domain_stats("documents", d)
        if not path.exists():
            continue
        stats = json.loads(path.read_text())
        sources[d] = {
            name: {"file_sha256": s.get("file_sha256", {}), "files": s.get("files"), "rows_read": s.get("rows_read"),
                   "rows_kept": s.get("rows_kept"), "rows_rejected": s.get("rows_rejected")}
            for name, s in stats.get("sources", {}).items()
        }
    removals: dict[str, dict] = {}
    for stage in DOCUMENT_STAGES:
        present = root.domains(stage)
        if not present:
            continue
        counts = root.scan_rejects(stage, present).group_by("domain", "reason").len().sort("domain", "reason").collect()
        by_domain: dict[str, dict] = {d: {} for d in present}
        for row in counts.iter_rows(named=True):
            by_domain.setdefault(row["domain"], {})[row["reason"]] = row["len"]
        kept = root.scan(stage, present).group_by("domain").len().collect()
        removals[stage] = {
            "removed": by_domain,
            "kept": {r["domain"]: r["len"] for r in kept.iter_rows(named=True)},
        }
    out = {"sources": sources, "removals": removals}
    if spec_hash is not None:
        from pipeline.spec import SPEC_HASH_EXCLUDES

        out["spec_hash"] = spec_hash
        out["spec_hash_covers"] = ("the validated spec, less where data is written, when curamix runs and on which engine ("
                                   + ", ".join(SPEC_HASH_EXCLUDES) + "): the same spec gives the same hash "
                                   "under any data root")
    if spec_seed is not None:
        out["spec_seed"] = spec_seed
    return out


def write_manifest(path: Path, manifest: dict) -> None:
    write_json(path, manifest)


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


__all__ = ["EXACTNESS", "MANIFEST_VERSION", "blend_string", "build_manifest", "provenance", "read_manifest",
           "write_manifest"]
