"""``curamix verify DIR``: check a training set against its manifest; exit 1 on any discrepancy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.emission.verify import verify

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
    if args.data_path and manifest.get("megatron_data_path"):
        base = folder.resolve()
        parts = manifest["megatron_data_path"].split()
        print(" ".join(w if i % 2 == 0 else str(base / w) for i, w in enumerate(parts)))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check a training set against its manifest.json")
    p.add_argument("dir", help="the training set folder (holding manifest.json)")
    p.add_argument("--no-hashes", action="store_true", help="skip sha256 (sizes and structure only)")
    p.add_argument("--data-path", action="store_true", help="also print Megatron's --data-path with absolute prefixes")
    p.set_defaults(func=cmd_verify)


__all__ = ["register"]
