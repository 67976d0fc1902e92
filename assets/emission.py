"""Output assets: `training_set`, the sharded training set with its manifest, and its checks."""

import json
from pathlib import Path

import dagster as dg
import polars as pl

from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.resources import CuramixResource
from pipeline.emission.verify import verify
from pipeline.emission.writer import emit

ASSET = "training_set"
SAMPLE_ROWS = 5


# Below this many documents a domain is a rounding error of the set: too few to split off validation documents
# (Megatron splits by document count) or to say anything about the domain.
MIN_USEFUL_DOCUMENTS = 20


def small_domains(manifest: dict, *, minimum: int = MIN_USEFUL_DOCUMENTS) -> list[str]:
    """One line per domain of the set that holds fewer than ``minimum`` documents."""
    return [f"{d}: {v['documents']} documents, {v['tokens']} tokens ({v['achieved_proportion']:.4f} of the set) "
            f"- below a useful size ({minimum} documents); give it more data or a larger share, or drop it"
            for d, v in manifest["domains"].items() if v["documents"] < minimum]


def spec_hash_of(manifest: dict) -> str:
    return manifest.get("spec_hash") or (manifest.get("provenance") or {}).get("spec_hash") or ""


def output_sample(out_dir: Path, manifest: dict) -> dg.MetadataValue:
    """The first documents of the pre-mixed set, in training order (from its first Parquet text shard)."""
    mixed = (manifest["sets"].get("mixed") or {}).get("shards") or []
    if not mixed or not (out_dir / "mixed" / f"{mixed[0]['name']}.parquet").exists():
        return dg.MetadataValue.md("_(no Parquet text shard in the pre-mixed set: `output.formats` has no parquet)_")
    table = pl.read_parquet(out_dir / "mixed" / f"{mixed[0]['name']}.parquet", n_rows=SAMPLE_ROWS)
    rows = table.select([c for c in ("domain", "doc_id", "n_tokens", "text") if c in table.columns]).to_dicts()
    return preview_markdown(rows, text_chars=160)


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name=ASSET,
        group_name="output",
        deps=["pruned_documents", "tokenizer", "mixture"],
        kinds={"parquet", "numpy"},
        description="Sharded training set: per-domain token quotas from the mixture (exact), Megatron "
        ".bin/.idx and Parquet text shards, one set per domain and one pre-mixed set, and manifest.json.",
        check_specs=[
            dg.AssetCheckSpec("manifest_verifies", asset=ASSET, blocking=True,
                              description="every shard matches the manifest: sizes, sha256, counts, index structure, proportions"),
            dg.AssetCheckSpec("no_empty_shard", asset=ASSET, blocking=True,
                              description="every shard holds at least one document"),
        ],
        code_version=ctx.code_version("emission-1", "output"),
    )
    def training_set(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        out_dir, manifest = emit(spec, progress=context.log.info)
        rows = [
            {"domain": d, "target": round(v["target_proportion"], 4), "achieved": round(v["achieved_proportion"], 4),
             "tokens": v["tokens"], "documents": v["documents"], "epochs": round(v["epochs"], 3), "capped": v["capped"]}
            for d, v in manifest["domains"].items()
        ]
        shards = [s for st in manifest["sets"].values() for s in st["shards"]]
        small = small_domains(manifest)
        for line in small:
            context.log.warning(line)
        yield dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out_dir)),
                "total_tokens": manifest["total_tokens"],
                "dtype": manifest["dtype"],
                "shards": len(shards),
                "renormalized": manifest["quotas"]["renormalized"],
                "mixer": manifest["mixer"]["method"] or "unknown",
                "domains": preview_markdown(rows),
                "megatron_data_path": dg.MetadataValue.text(manifest.get("megatron_data_path") or ""),
                # What a training run pins (docs/operations.md): the spec and the exact build.
                "spec_hash": dg.MetadataValue.text(spec_hash_of(manifest)),
                "build_key": dg.MetadataValue.text(manifest["build_key"]),
                "sample": output_sample(out_dir, manifest),
                "small_domains": dg.MetadataValue.md("\n".join(f"- **{line}**" for line in small) or "none"),
            },
            data_version=dg.DataVersion(manifest["build_key"][:16]),
        )
        problems = verify(out_dir)
        yield dg.AssetCheckResult(
            check_name="manifest_verifies", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"discrepancies": len(problems), "first": "\n".join(problems[:20]) or "none"},
        )
        empty = [f"{name}/{s['name']}" for name, st in manifest["sets"].items() for s in st["shards"]
                 if s["documents"] == 0 or s["tokens"] == 0]
        yield dg.AssetCheckResult(
            check_name="no_empty_shard", passed=not empty and bool(shards), severity=dg.AssetCheckSeverity.ERROR,
            metadata={"empty": json.dumps(empty), "shards": len(shards)},
        )

    return StageDefinitions(assets=[training_set])


__all__ = ["build_stage"]
