"""Staging assets: `documents`, partitioned by domain, with its accounting check."""



import hashlib
import json

import dagster as dg

from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.ops_metadata import image_metadata
from pipeline import plots
from assets.resources import CuramixResource
from pipeline.staging import STAGE, stage_domain
from pipeline.store import DataRoot


def accounting_check(root: DataRoot, domain: str) -> dg.AssetCheckResult:
    """Re-count the written files and compare with what staging read, per source."""
    stats = root.read_stats(STAGE, domain)
    kept = root.scan(STAGE, [domain]).group_by("source").len().collect()
    rejected = root.scan_rejects(STAGE, [domain]).group_by("source").len().collect()
    kept_by = dict(zip(kept["source"].to_list(), kept["len"].to_list()))
    rejected_by = dict(zip(rejected["source"].to_list(), rejected["len"].to_list()))
    problems = []
    for name, s in stats["sources"].items():
        k, r = kept_by.get(name, 0), rejected_by.get(name, 0)
        if s["rows_read"] != k + r or s["rows_kept"] != k or s["rows_rejected"] != r:
            problems.append(f"{name}: read {s['rows_read']} != kept {k} + rejected {r}")
    return dg.AssetCheckResult(
        check_name="accounting",
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows_read": stats["rows_read"], "rows_kept": stats["rows_kept"],
                  "rows_rejected": stats["rows_rejected"], "problems": "\n".join(problems) or "none"},
    )


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name=STAGE,
        partitions_def=ctx.domain_partitions,
        group_name="staging",
        kinds={"parquet", "polars"},
        description="Raw sources staged into the canonical document table (one Parquet part per input "
        "file), partitioned by domain; every rejected row recorded with its reason.",
        check_specs=[dg.AssetCheckSpec("accounting", asset=STAGE, blocking=True,
                                       description="rows read = rows kept + rows rejected, per source")],
        code_version=ctx.code_version("staging-1", "sources", "staging"),
    )
    def documents(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        root = DataRoot(spec.data_root)
        domain = context.partition_key
        stats = stage_domain(spec, domain, root=root, progress=context.log.info)
        preview = (
            root.scan(STAGE, [domain]).select("doc_id", "source", "source_file", "source_row", "n_bytes", "text")
            .head(5).collect()
        )
        rejects = root.scan_rejects(STAGE, [domain]).select("source", "source_row", "reason", "detail").head(10).collect()
        yield dg.MaterializeResult(
            metadata={
                "rows_read": stats.rows_read,
                "rows_kept": stats.rows_kept,
                "rows_rejected": stats.rows_rejected,
                "bytes_kept": dg.MetadataValue.int(stats.bytes_kept),
                "per_source": per_source_table(root.read_stats(STAGE, domain)),
                "rejects_by_reason": dg.MetadataValue.json(stats.rejects_by_reason()),
                **({"drops_by_reason": image_metadata(
                    plots.drops_by_reason({s: c.rejects_by_reason for s, c in stats.sources.items() if c.rejects_by_reason},
                                          title=f"{domain}: rows rejected at staging, by reason and source"),
                    alt="rejects by reason")} if stats.rows_rejected else {}),
                "quarantined_files": dg.MetadataValue.json(
                    [q for s in stats.sources.values() for q in s.quarantined_files]
                ),
                "preview": preview_markdown(preview.to_dicts()),
                "rejects_preview": preview_markdown(rejects.to_dicts()),
                "path": dg.MetadataValue.path(str(root.domain_dir(STAGE, domain))),
            },
            data_version=dg.DataVersion(_content_version(stats.to_dict())),
        )
        yield accounting_check(root, domain)

    return StageDefinitions(assets=[documents])


def per_source_table(stats: dict) -> dg.MetadataValue:
    """stats.json's per-source accounting as the table a user looks for first."""
    rows = [{"source": name, "files": s.get("files", 0), "rows_read": s["rows_read"], "rows_kept": s["rows_kept"],
             "rows_rejected": s["rows_rejected"], "bytes_kept": s.get("bytes_kept", 0),
             "quarantined_files": len(s.get("quarantined_files", []))}
            for name, s in stats["sources"].items()]
    return preview_markdown(rows)


def _content_version(stats: dict) -> str:
    hashes = {name: s["file_sha256"] for name, s in stats["sources"].items()}
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


__all__ = ["build_stage", "accounting_check", "per_source_table"]
