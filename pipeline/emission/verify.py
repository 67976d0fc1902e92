"""``verify(dir)``: check a training set against its manifest and list every discrepancy.

Checked: every file the manifest names exists with the recorded size and sha256; no unlisted file
sits in a set's folder; each ``.idx`` parses (magic, version, dtype code, counts, sizes) and agrees
with its ``.bin`` (pointers are the running byte offsets, the ``.bin`` size is the tokens' bytes,
document indices are ``0..N``, every document ends with EOS); Parquet text shards have the recorded
rows and per-domain tokens and agree with the ``.idx`` lengths; per-set and per-domain token counts
add up to the manifest's; achieved proportions are tokens / total; uncapped quotas are within one
token of ``target * total`` (exact apportionment) and capped ones within the epoch cap.

Megatron's own index caches (written into ``<shard>/cache/`` when a job runs without
``--data-cache-path``) are not the set's files and not discrepancies: ``megatron_cache_files`` lists them so
that the command line can say so in one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.store import file_sha256 as _sha256
from pipeline.emission.megatron import DTYPE_CODES, IndexFormatError, open_tokens, read_index


def verify(folder: str | Path, *, hashes: bool = True) -> list[str]:
    """Every discrepancy between ``folder`` and its ``manifest.json`` (empty list: the set is sound)."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        return [f"{path}: no manifest (the set is missing or was never completed)"]
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        return [f"{path}: not valid JSON: {exc}"]
    problems: list[str] = []
    try:
        _verify(folder, manifest, problems, hashes=hashes)
    except (KeyError, TypeError) as exc:
        problems.append(f"manifest.json: missing or malformed field {exc}")
    return problems


def _verify(folder: Path, manifest: dict, problems: list[str], *, hashes: bool) -> None:
    dtype = np.dtype(manifest["dtype"])
    eos_id = manifest["tokenizer"]["eos_id"]
    total = manifest["total_tokens"]
    domains = manifest["domains"]
    if sum(v["tokens"] for v in domains.values()) != total:
        problems.append(f"manifest: per-domain tokens add up to {sum(v['tokens'] for v in domains.values())}, "
                        f"not total_tokens {total}")
    listed: set[str] = set()
    for set_name, s in manifest["sets"].items():
        per_domain = {}
        for shard in s["shards"]:
            where = f"{set_name}/{shard['name']}"
            ok = True
            for kind, f in shard["files"].items():
                listed.add(f["path"])
                p = folder / f["path"]
                if not p.exists():
                    problems.append(f"{f['path']}: missing")
                    ok = False
                    continue
                size = p.stat().st_size
                if size != f["bytes"]:
                    problems.append(f"{f['path']}: {size} bytes, manifest says {f['bytes']}")
                    ok = False
                elif hashes and _sha256(p) != f["sha256"]:
                    problems.append(f"{f['path']}: sha256 differs from the manifest")
            lengths = None
            if "idx" in shard["files"] and "bin" in shard["files"] and ok:
                lengths = _check_megatron(folder, shard, where, dtype, eos_id, manifest, problems)
            if "parquet" in shard["files"] and ok:
                _check_parquet(folder, shard, where, lengths, problems)
            if sum(shard["domain_tokens"].values()) != shard["tokens"]:
                problems.append(f"{where}: per-domain tokens add up to {sum(shard['domain_tokens'].values())}, not {shard['tokens']}")
            if shard["documents"] == 0 or shard["tokens"] == 0:
                problems.append(f"{where}: empty shard")
            for d, n in shard["domain_tokens"].items():
                per_domain[d] = per_domain.get(d, 0) + n
        expected = {d: v["tokens"] for d, v in domains.items() if v["tokens"]}
        if set_name.startswith("domains/"):
            d = set_name.split("/", 1)[1]
            expected = {d: domains[d]["tokens"]} if d in domains else {}
        if per_domain != expected:
            problems.append(f"{set_name}: per-domain tokens {per_domain} differ from the manifest's {expected}")
    _check_unlisted(folder, manifest, listed, problems)
    _check_domains(manifest, problems)
    _check_data_path(manifest, listed, problems)


def _check_megatron(folder, shard, where, dtype, eos_id, manifest, problems) -> np.ndarray | None:
    idx_path = folder / shard["files"]["idx"]["path"]
    bin_path = folder / shard["files"]["bin"]["path"]
    try:
        index = read_index(idx_path)
    except IndexFormatError as exc:
        problems.append(f"{where}.idx: {exc}")
        return None
    if index.dtype != dtype or DTYPE_CODES[index.dtype.name] != manifest["megatron"]["dtype_code"]:
        problems.append(f"{where}.idx: dtype {index.dtype}, manifest says {dtype}")
        return None
    n = len(index.lengths)
    if n != shard["documents"] or index.documents != shard["documents"]:
        problems.append(f"{where}.idx: {n} sequences / {index.documents} documents, manifest says {shard['documents']}")
    if not np.array_equal(index.document_indices, np.arange(n + 1)):
        problems.append(f"{where}.idx: document indices are not 0..{n} (one sequence per document)")
    lengths = index.lengths.astype(np.int64)
    if n and lengths.min() <= 0:
        problems.append(f"{where}.idx: a sequence has no tokens")
    expected_ptr = np.concatenate([[0], np.cumsum(lengths[:-1] * dtype.itemsize)]) if n else np.zeros(0, np.int64)
    if not np.array_equal(index.pointers, expected_ptr):
        problems.append(f"{where}.idx: pointers are not the running byte offsets of the sequences")
    tokens = int(lengths.sum())
    if tokens != shard["tokens"]:
        problems.append(f"{where}.idx: {tokens} tokens, manifest says {shard['tokens']}")
    if bin_path.stat().st_size != tokens * dtype.itemsize:
        problems.append(f"{where}.bin: {bin_path.stat().st_size} bytes, the index needs {tokens * dtype.itemsize}")
        return lengths
    data = open_tokens(bin_path, dtype)
    if n:
        last = data[np.cumsum(lengths) - 1]
        bad = int((last != eos_id).sum())
        if bad:
            problems.append(f"{where}.bin: {bad} documents do not end with EOS ({eos_id})")
    return lengths


def _check_parquet(folder, shard, where, lengths, problems) -> None:
    path = folder / shard["files"]["parquet"]["path"]
    try:
        table = pq.read_table(path, columns=["domain", "n_tokens"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a discrepancy to report
        problems.append(f"{where}.parquet: unreadable: {exc}")
        return
    if table.num_rows != shard["documents"]:
        problems.append(f"{where}.parquet: {table.num_rows} rows, manifest says {shard['documents']}")
    n_tokens = table.column("n_tokens").to_numpy()
    if lengths is not None and (len(lengths) != len(n_tokens) or not np.array_equal(lengths, n_tokens)):
        problems.append(f"{where}.parquet: n_tokens disagree with the .idx lengths")
    per = {}
    for d, n in zip(table.column("domain").to_pylist(), n_tokens.tolist()):
        per[d] = per.get(d, 0) + n
    if per != shard["domain_tokens"]:
        problems.append(f"{where}.parquet: per-domain tokens {per} differ from the manifest's {shard['domain_tokens']}")


def _unlisted(folder: Path, listed: set[str]) -> list[str]:
    """Files in the sets' folders that the manifest does not name (paths relative to ``folder``)."""
    found = []
    for top in sorted({p.split("/")[0] for p in listed} | {"mixed", "domains"}):
        base = folder / top
        if base.exists():
            found += sorted(p.relative_to(folder).as_posix() for p in base.rglob("*") if p.is_file())
    return [p for p in found if p not in listed]


def _is_megatron_cache(path: str, listed: set[str]) -> bool:
    """Megatron-Core's GPTDataset, run without ``--data-cache-path``, writes its index caches to
    ``<shard prefix>/cache/GPTDataset_indices/`` next to the ``.bin``/``.idx`` of that prefix."""
    prefix, sep, _ = path.partition("/cache/")
    return bool(sep) and f"{prefix}.bin" in listed and f"{prefix}.idx" in listed


def megatron_cache_files(folder: str | Path) -> list[str]:
    """Megatron's index-cache files inside the set (not part of it; ``verify`` does not count them)."""
    folder = Path(folder)
    listed = listed_files(read_manifest_file(folder))
    return [p for p in _unlisted(folder, listed) if _is_megatron_cache(p, listed)]


def listed_files(manifest: dict) -> set[str]:
    return {f["path"] for s in manifest["sets"].values() for shard in s["shards"] for f in shard["files"].values()}


def read_manifest_file(folder: Path) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


def _check_unlisted(folder: Path, manifest: dict, listed: set[str], problems: list[str]) -> None:
    for path in _unlisted(folder, listed):
        if not _is_megatron_cache(path, listed):
            problems.append(f"{path}: not in the manifest")


def _check_domains(manifest: dict, problems: list[str]) -> None:
    total = manifest["total_tokens"]
    domains = manifest["domains"]
    s = sum(v["tokens"] for v in domains.values())
    if s != total:
        problems.append(f"domains: tokens add up to {s}, total_tokens is {total}")
    max_epochs = manifest["quotas"]["max_epochs"]
    renormalized = manifest["quotas"]["renormalized"]
    for d, v in domains.items():
        if v["tokens"] != v["quota"]:
            problems.append(f"domain {d}: {v['tokens']} tokens, quota {v['quota']}")
        if not math.isclose(v["achieved_proportion"], v["tokens"] / total, rel_tol=0, abs_tol=1e-12):
            problems.append(f"domain {d}: achieved proportion {v['achieved_proportion']} != tokens / total")
        if v["available_tokens"] and v["tokens"] > max_epochs * v["available_tokens"] + 1e-9:
            problems.append(f"domain {d}: {v['tokens'] / v['available_tokens']:.3f} epochs exceed the cap {max_epochs}")
        if not renormalized and abs(v["tokens"] - v["target_proportion"] * total) > 1 + 1e-9 * total:
            problems.append(f"domain {d}: {v['tokens']} tokens, target {v['target_proportion'] * total:.1f}")


def _check_data_path(manifest: dict, listed: set[str], problems: list[str]) -> None:
    """The Megatron blend names only listed shards, with weights that are their shares of all tokens."""
    blend = manifest.get("megatron_data_path")
    if not blend:
        return
    parts = blend.split()
    if len(parts) % 2:
        problems.append("megatron_data_path: not 'weight prefix' pairs")
        return
    total = 0.0
    for w, prefix in zip(parts[::2], parts[1::2]):
        if f"{prefix}.bin" not in listed or f"{prefix}.idx" not in listed:
            problems.append(f"megatron_data_path: {prefix} is not a listed shard")
        total += float(w)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        problems.append(f"megatron_data_path: weights add up to {total}, not 1")


__all__ = ["megatron_cache_files", "verify"]
