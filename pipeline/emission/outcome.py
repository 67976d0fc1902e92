"""What the `training_set` asset shows and checks, built from the written set and its manifest.

Dagster-free: ``assets/adapter.py`` turns the ``StageOutcome`` into the asset's events.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pipeline.emission.verify import verify
from pipeline.emission.writer import below_minimum
from pipeline.engine.outcome import CheckOutcome, Markdown, StageOutcome, Table

SAMPLE_ROWS = 5


def fewest_shard_documents(manifest: dict) -> dict[str, int]:
    """Each domain's fewest documents in one of its per-domain Megatron shards (none without them: the rule is
    about Megatron's per-shard split)."""
    if "megatron" not in manifest.get("formats", ["megatron"]):
        return {}
    return {name.split("/", 1)[1]: min(s["documents"] for s in st["shards"])
            for name, st in manifest["sets"].items() if name.startswith("domains/") and st["shards"]}


def small_domains(manifest: dict, *, minimum: int | None = None) -> list[str]:
    """One line per domain below emission's small-domain rule: fewer than ``output.min_documents_per_domain``
    documents (the value the set was built with, unless ``minimum`` is given) in one of its shards."""
    if minimum is None:
        minimum = (manifest.get("output_config") or {}).get("min_documents_per_domain", 0)
    small = below_minimum(fewest_shard_documents(manifest), minimum)
    return [f"{d}: {n} documents in its smallest shard ({manifest['domains'][d]['achieved_proportion']:.4f} of the "
            f"set) - below a useful size (output.min_documents_per_domain={minimum}); give it more data or a "
            "larger share, or drop it" for d, n in sorted(small.items())]


def spec_hash_of(manifest: dict) -> str:
    return manifest.get("spec_hash") or (manifest.get("provenance") or {}).get("spec_hash") or ""


def output_sample(out_dir: Path, manifest: dict) -> Table | Markdown:
    """The first documents of the pre-mixed set, in training order (from its first Parquet text shard)."""
    mixed = (manifest["sets"].get("mixed") or {}).get("shards") or []
    first = out_dir / "mixed" / f"{mixed[0]['name']}.parquet" if mixed else None
    if first is None or not first.exists():
        return Markdown("_(no Parquet text shard in the pre-mixed set: `output.formats` has no parquet)_")
    table = pl.read_parquet(first, n_rows=SAMPLE_ROWS)
    rows = table.select([c for c in ("domain", "doc_id", "n_tokens", "text") if c in table.columns]).to_dicts()
    return Table(rows, text_chars=160)


def domain_rows(manifest: dict) -> list[dict]:
    return [{"domain": d, "target": round(v["target_proportion"], 4), "achieved": round(v["achieved_proportion"], 4),
             "tokens": v["tokens"], "documents": v["documents"], "epochs": round(v["epochs"], 3), "capped": v["capped"]}
            for d, v in manifest["domains"].items()]


def bullet_list(lines: list[str]) -> Markdown | str:
    return Markdown("\n".join(f"- **{line}**" for line in lines)) if lines else "none"


def check_manifest_verifies(out_dir: Path) -> CheckOutcome:
    problems = verify(out_dir)
    return CheckOutcome("manifest_verifies", passed=not problems,
                        metadata={"discrepancies": len(problems), "first": "\n".join(problems[:20]) or "none"})


def check_no_empty_shard(manifest: dict) -> CheckOutcome:
    shards = [s for st in manifest["sets"].values() for s in st["shards"]]
    empty = [f"{name}/{s['name']}" for name, st in manifest["sets"].items() for s in st["shards"]
             if s["documents"] == 0 or s["tokens"] == 0]
    return CheckOutcome("no_empty_shard", passed=not empty and bool(shards),
                        metadata={"empty": json.dumps(empty), "shards": len(shards)})


def training_set_outcome(out_dir: Path, manifest: dict) -> StageOutcome:
    """The page of a written training set: totals, per-domain table, what a run pins, a sample, the small
    domains and the manifest's warnings; its two blocking checks."""
    small = small_domains(manifest)
    warnings = list(manifest.get("warnings") or [])
    metadata = {
        "path": Path(out_dir),
        "total_tokens": manifest["total_tokens"],
        "dtype": manifest["dtype"],
        "shards": sum(len(st["shards"]) for st in manifest["sets"].values()),
        "renormalized": manifest["quotas"]["renormalized"],
        "mixer": manifest["mixer"]["method"] or "unknown",
        "domains": Table(domain_rows(manifest)),
        "megatron_data_path": manifest.get("megatron_data_path") or "",
        # What a training run pins (docs/operations.md): the spec and the exact build.
        "spec_hash": spec_hash_of(manifest),
        "build_key": manifest["build_key"],
        "sample": output_sample(Path(out_dir), manifest),
        "small_domains": bullet_list(small),
        "warnings": bullet_list(warnings),
    }
    return StageOutcome(metadata=metadata, data_version=manifest["build_key"][:16],
                        checks=[check_manifest_verifies(Path(out_dir)), check_no_empty_shard(manifest)],
                        warnings=[*warnings, *small])


__all__ = ["fewest_shard_documents", "output_sample", "small_domains", "spec_hash_of", "training_set_outcome"]
