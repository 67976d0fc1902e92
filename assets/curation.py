"""Curation asset: `curated_documents` (exact dedup, quality filters, MinHash-LSH near-dedup).

The stage is global (duplicates are found across all domains), so the asset is not partitioned: one
materialization reads every partition of `documents` and writes every domain's `curated` output, with
per-domain metadata and a blocking per-domain accounting check. Launchpad config overrides the spec's
`curation` section for one run.
"""

import json
from typing import Optional

import dagster as dg
import yaml

from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.resources import CuramixResource
from pipeline.config.curation import CurationConfig, check_domains
from pipeline.config.typed import ConfigError, build, to_plain
from pipeline.content_version import stage_content_version
from pipeline.curation.run import STAGE, check_accounting, curate
from pipeline.store import DataRoot

ASSET = "curated_documents"


class CurationRunConfig(dg.Config):
    """Launchpad overrides of the spec's `curation` section (unset fields keep the spec's value)."""

    enabled: Optional[bool] = None
    exact_dedup: Optional[bool] = None
    near_dedup: Optional[bool] = None
    filters: Optional[bool] = None
    threshold: Optional[float] = None
    ngram: Optional[int] = None
    shingle: Optional[str] = None
    num_perm: Optional[int] = None
    bands: Optional[int] = None
    rows: Optional[int] = None
    # Any part of the section as YAML/JSON, merged over the spec's, e.g.
    # "domains: {web: {gopher_quality: {min_doc_words: 20}}}".
    overrides: Optional[str] = None

    def apply(self, base: CurationConfig) -> CurationConfig:
        plain = to_plain(base)
        if self.overrides:
            extra = yaml.safe_load(self.overrides) or {}
            if not isinstance(extra, dict):
                raise dg.Failure("curation overrides must be a YAML/JSON mapping")
            plain = _merge(plain, extra)
        simple = {"enabled": self.enabled, "filters_enabled": self.filters}
        plain.update({k: v for k, v in simple.items() if v is not None})
        if self.exact_dedup is not None:
            plain["exact_dedup"]["enabled"] = self.exact_dedup
        near = {"enabled": self.near_dedup, "threshold": self.threshold, "ngram": self.ngram,
                "shingle": self.shingle, "num_perm": self.num_perm, "bands": self.bands, "rows": self.rows}
        plain["near_dedup"].update({k: v for k, v in near.items() if v is not None})
        try:
            return build(CurationConfig, plain, "curation")
        except ConfigError as exc:
            raise dg.Failure(f"invalid curation override: {exc}") from None


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def accounting_check(root: DataRoot, domains: list[str]) -> dg.AssetCheckResult:
    counts = check_accounting(root, domains)
    problems = [f"{d}: staged {c['rows_in']} != kept {c['kept']} + dropped {c['dropped']} (or stats.json disagrees)"
                for d, c in counts.items() if not c["ok"]]
    return dg.AssetCheckResult(
        check_name="accounting",
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"per_domain": dg.MetadataValue.json(counts), "problems": "\n".join(problems) or "none"},
    )


def guard_check(reports, *, blocking: bool) -> dg.AssetCheckResult:
    """Fails when the stage dropped more of a domain than ``curation.guard`` allows."""
    over = {d: r.guard for d, r in reports.items() if r.guard}
    return dg.AssetCheckResult(
        check_name="drop_guard", passed=not over,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={"over_limit": "\n".join(g["message"] for g in over.values()) or "none",
                  "top_reasons": dg.MetadataValue.json({d: g["top_reasons"] for d, g in over.items()})},
    )


def _guard_checks(ctx: BuildContext) -> list[dg.AssetCheckSpec]:
    mode = ctx.spec.curation.guard.check
    if mode == "off":
        return []
    return [dg.AssetCheckSpec("drop_guard", asset=ASSET, blocking=mode == "block",
                              description="no domain loses more than curation.guard.max_drop_fraction")]


def _drops_table(reports) -> dg.MetadataValue:
    reasons = sorted({r for rep in reports.values() for r in rep.drops})
    rows = [{"domain": d, "profile": rep.profile, "in": rep.rows_in, "kept": rep.rows_kept,
             **{r: rep.drops.get(r, 0) for r in reasons}} for d, rep in reports.items()]
    return preview_markdown(rows)


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name=ASSET,
        group_name="curation",
        deps=["documents"],
        kinds={"parquet", "duckdb", "polars"},
        description="Staged documents after exact dedup (normalized-text hash, all domains), per-domain "
        "Gopher/C4 quality filters and MinHash-LSH near-dedup; every drop in rejects.parquet.",
        check_specs=[dg.AssetCheckSpec("accounting", asset=ASSET, blocking=True,
                                       description="per domain: staged rows = kept + dropped"), *_guard_checks(ctx)],
        code_version=ctx.code_version("curation-2", "curation"),
    )
    def curated_documents(context: dg.AssetExecutionContext, config: CurationRunConfig, curamix: CuramixResource):
        spec = curamix.load_spec()
        settings = config.apply(spec.curation)
        try:
            check_domains(settings, spec.domains)
        except ConfigError as exc:
            raise dg.Failure(f"invalid curation override: {exc}") from None
        root = DataRoot(spec.data_root)
        reports = curate(spec, config=settings, root=root, progress=context.log.info)
        warnings = [r.guard["message"] for r in reports.values() if r.guard]
        for message in warnings:
            context.log.warning(message)
        rejects = (
            root.scan_rejects(STAGE).select("domain", "source", "source_row", "reason", "detail", "duplicate_of")
            .head(10).collect()
        )
        yield dg.MaterializeResult(
            metadata={
                "rows_in": sum(r.rows_in for r in reports.values()),
                "rows_kept": sum(r.rows_kept for r in reports.values()),
                "rows_dropped": sum(r.rows_dropped for r in reports.values()),
                "bytes_kept": sum(r.bytes_kept for r in reports.values()),
                "drops_by_domain": dg.MetadataValue.json({d: r.drops for d, r in reports.items()}),
                "drops_table": _drops_table(reports),
                "drop_guard": dg.MetadataValue.md("\n".join(f"- **WARNING** {m}" for m in warnings) or "no domain over "
                                                  f"the guard's limit ({settings.guard.max_drop_fraction})"),
                "profiles": dg.MetadataValue.json({d: dict(zip(("profile", "why"), settings.profile_choice(d)))
                                                   for d in spec.domains}),
                "rejects_preview": preview_markdown(rejects.to_dicts()),
                "config": dg.MetadataValue.json(json.loads(json.dumps(to_plain(settings), default=str))),
                "path": dg.MetadataValue.path(str(root.stage_dir(STAGE))),
            },
            # What it wrote, not what it read: unchanged output leaves everything below fresh.
            data_version=dg.DataVersion(stage_content_version(root, STAGE, spec.domains)),
        )
        yield accounting_check(root, spec.domains)
        if spec.curation.guard.check != "off":  # the check the definitions declared (from the spec)
            yield guard_check(reports, blocking=spec.curation.guard.check == "block")

    return StageDefinitions(assets=[curated_documents])


__all__ = ["build_stage", "CurationRunConfig", "accounting_check", "guard_check"]
