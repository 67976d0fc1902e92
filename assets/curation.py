"""Curation asset: `curated_documents` (exact dedup, quality filters, MinHash-LSH near-dedup).

The stage is global (duplicates are found across all domains), so the asset is not partitioned: one
materialization reads every partition of `documents` and writes every domain's `curated` output, with
per-domain metadata and a blocking per-domain accounting check. Launchpad config overrides the spec's
`curation` section for one run.
"""

from typing import Optional

import dagster as dg
import yaml

from assets.adapter import check_result, materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from pipeline.config.curation import CurationConfig, check_domains
from pipeline.config.typed import ConfigError, build, to_plain
from pipeline.curation.outcome import accounting_outcome, curation_outcome, guard_outcome
from pipeline.curation.run import curate
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
    return check_result(accounting_outcome(root, domains))


def guard_check(reports, *, blocking: bool) -> dg.AssetCheckResult:
    """Fails when the stage dropped more of a domain than ``curation.guard`` allows."""
    return check_result(guard_outcome(reports, blocking=blocking))


def _guard_checks(ctx: BuildContext) -> list[dg.AssetCheckSpec]:
    mode = ctx.spec.curation.guard.check
    if mode == "off":
        return []
    return [dg.AssetCheckSpec("drop_guard", asset=ASSET, blocking=mode == "block",
                              description="no domain loses more than curation.guard.max_drop_fraction")]


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
        code_version=ctx.code_version("curation-3", "curation"),
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
        yield from materialize(curation_outcome(root, spec.domains, settings, reports,
                                                guard_check=spec.curation.guard.check))

    return StageDefinitions(assets=[curated_documents])


__all__ = ["build_stage", "CurationRunConfig", "accounting_check", "guard_check"]
