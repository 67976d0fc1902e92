"""Materialize a spec's asset graph through Dagster one asset (and partition) at a time, timed, and hash what
it wrote: shared by the Ray benchmark (`bench/bench_ray.py`) and the engine-equality test
(`tests/test_ray_engine.py`), which both compare a graph's outputs under two engines."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

# Asset key -> its folder under the data root, where the two differ (the per-domain document stages).
DOCUMENT_FOLDERS = {"documents": "documents", "curated_documents": "curated", "pruned_documents": "pruned"}


def key_folder(key: str) -> str:
    return DOCUMENT_FOLDERS.get(key, key)


def graph_keys(spec_path: str | Path, data_root: str | Path | None = None) -> list[str]:
    """Every asset of the spec's graph, upstream first."""
    from assets.definitions import build_definitions

    graph = build_definitions(spec_path, str(data_root) if data_root else None).resolve_asset_graph()
    return [k.to_user_string() for k in graph.toposorted_asset_keys]


def materialize_each(spec_path: str | Path, data_root: str | Path, keys: list[str], instance) -> list[tuple]:
    """Materialize exactly ``keys`` (every partition of a partitioned one) through Dagster, in order, as
    `curamix run` does, without re-running what they depend on. Returns ``(key, partition, result, wall
    seconds)`` per run; a failed step is in its result (not raised)."""
    import dagster as dg

    from assets.definitions import build_definitions

    defs = build_definitions(spec_path, str(data_root))
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    out = []
    for key in keys:
        partitions = graph.get(dg.AssetKey(key)).partitions_def
        for pk in partitions.get_partition_keys() if partitions else [None]:
            started = time.perf_counter()
            result = job.execute_in_process(asset_selection=[dg.AssetKey(key)], partition_key=pk, instance=instance,
                                            raise_on_error=False)
            out.append((key, pk, result, time.perf_counter() - started))
    return out


# Wall-clock figures that stages record beside their outputs (``"seconds"``, ``"train_seconds"``,
# ``"docs_per_s"``): they differ between any two runs, so the comparison leaves them out of JSON files.
WALL_CLOCK_KEY = re.compile(r"(^|_)(seconds|per_s|wall_s)$")


def _comparable(value, root: str):
    """A JSON value without wall-clock fields, with the data root's own path written as ``<root>``."""
    if isinstance(value, dict):
        return {k: _comparable(v, root) for k, v in value.items() if not WALL_CLOCK_KEY.search(str(k))}
    if isinstance(value, list):
        return [_comparable(v, root) for v in value]
    if isinstance(value, str) and value.startswith(root):
        return "<root>" + value[len(root):]
    return value


def file_hash(path: Path, root: Path) -> str:
    """sha256 of a file's bytes; of a JSON file, of its content without wall-clock fields and with paths
    relative to the data root (two roots that hold the same outputs then hash the same)."""
    data = path.read_bytes()
    if path.suffix == ".json":
        text = json.dumps(_comparable(json.loads(data), str(root)), sort_keys=True)
        data = text.encode()
    return hashlib.sha256(data).hexdigest()


def output_files(root: str | Path) -> dict[str, str]:
    """``file_hash`` of every file under ``root``, by its path relative to it."""
    root = Path(root).resolve()
    return {p.relative_to(root).as_posix(): file_hash(p, root) for p in sorted(root.rglob("*")) if p.is_file()}


def tree_hash(folder: str | Path) -> str:
    """One hash over the paths and bytes of every file under ``folder``."""
    digest = hashlib.sha256()
    for path, sha in output_files(folder).items():
        digest.update(path.encode())
        digest.update(bytes.fromhex(sha))
    return digest.hexdigest()


__all__ = ["graph_keys", "key_folder", "materialize_each", "output_files", "tree_hash"]
