"""Staging assets: `documents`, partitioned by domain, with its accounting check."""

import dagster as dg

from assets.adapter import check_result, materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from pipeline.staging import STAGE, check_accounting, stage_domain, staging_outcome
from pipeline.store import DataRoot


def accounting_check(root: DataRoot, domain: str) -> dg.AssetCheckResult:
    """Re-count the written files and compare with what staging read, per source."""
    return check_result(check_accounting(root, domain))


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
        stats = stage_domain(spec, context.partition_key, root=root, progress=context.log.info)
        yield from materialize(staging_outcome(root, context.partition_key, stats))

    return StageDefinitions(assets=[documents])


__all__ = ["build_stage", "accounting_check"]
