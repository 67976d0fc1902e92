"""Output assets: `training_set`, the sharded training set with its manifest, and its checks."""

import dagster as dg

from assets.adapter import materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from pipeline.emission.outcome import training_set_outcome
from pipeline.emission.writer import emit

ASSET = "training_set"


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
        yield from materialize(training_set_outcome(out_dir, manifest), log=context.log)

    return StageDefinitions(assets=[training_set])


__all__ = ["build_stage"]
