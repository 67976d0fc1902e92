"""``curamix verify DIR``: check a training set against its manifest; exit 1 on any discrepancy.

``--data-path`` also prints Megatron's ``--data-path`` blend: absolute prefixes, or with ``--relative-to ROOT``
prefixes relative to ``ROOT`` (for nodes that mount the data elsewhere: run the job from ``ROOT``'s copy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def data_path_blend(folder: Path, blend: str, *, relative_to: Path | None = None) -> str:
    """The manifest's blend (prefixes relative to the set) with absolute prefixes, or relative to ``relative_to``."""
    base = Path(folder).resolve()
    parts = blend.split()
    prefixes = [base / p for p in parts[1::2]]
    if relative_to is not None:
        prefixes = [Path(os.path.relpath(p, Path(relative_to).resolve())) for p in prefixes]
    return " ".join(f"{w} {p.as_posix()}" for w, p in zip(parts[::2], prefixes))


def cache_note(folder: Path, caches: list[str]) -> str:
    """One line for Megatron index caches found inside the set (each under a ``<shard prefix>/`` folder that
    only Megatron creates: curamix's shards are files)."""
    dirs = sorted({c.split("/cache/")[0] for c in caches})
    return (f"note: {len(caches)} files under {dirs[0]}/cache/"
            + (f" and {len(dirs) - 1} more shards" if len(dirs) > 1 else "")
            + " are Megatron's index caches, written into the set because the job ran without --data-cache-path; "
            f"they are not part of the set (give Megatron --data-cache-path outside {folder}; remove them with: "
            f"find {folder} -mindepth 2 -type d -name 'shard-*' -prune -exec rm -r {{}} +)")


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.emission.verify import megatron_cache_files, verify

    folder = Path(args.dir)
    problems = verify(folder, hashes=not args.no_hashes)
    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"{folder}: {len(problems)} discrepancies", file=sys.stderr)
        return 1
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = sum(len(s["shards"]) for s in manifest["sets"].values())
    print(f"{folder}: ok — {manifest['total_tokens']} tokens, {len(manifest['domains'])} domains, "
          f"{shards} shards, dtype {manifest['dtype']}")
    caches = megatron_cache_files(folder)
    if caches:
        print(cache_note(folder, caches), file=sys.stderr)
    if (args.data_path or args.relative_to) and manifest.get("megatron_data_path"):
        relative_to = Path(args.relative_to) if args.relative_to else None
        print(data_path_blend(folder, manifest["megatron_data_path"], relative_to=relative_to))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check a training set against its manifest.json")
    p.add_argument("dir", help="the training set folder (holding manifest.json)")
    p.add_argument("--no-hashes", action="store_true", help="skip sha256 (sizes and structure only)")
    p.add_argument("--data-path", action="store_true", help="also print Megatron's --data-path with absolute prefixes")
    p.add_argument("--relative-to", metavar="ROOT",
                   help="print --data-path with prefixes relative to ROOT (run the job from ROOT, wherever "
                        "a node mounts it)")
    p.set_defaults(func=cmd_verify)


__all__ = ["cache_note", "data_path_blend", "register"]
