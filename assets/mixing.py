"""Mixing asset: `mixture`, the domain proportions (RegMix, Aioli or a baseline) with its report and check."""

import dagster as dg

from assets.adapter import materialize
from assets.context import BuildContext, StageDefinitions
from assets.resources import CuramixResource
from mixers.outcome import mixture_outcome
from mixers.stage import run_mixing

ASSET = "mixture"


def build_stage(ctx: BuildContext) -> StageDefinitions:
    @dg.asset(
        name=ASSET,
        group_name="mixing",
        deps=["proxy_runs", "token_bins"],
        kinds={"json", "lightgbm"},
        description="Domain proportions for the training set, chosen by RegMix (regression on the proxy runs + "
        "search over 1M simulated mixtures), Aioli (online, inside a proxy run) or a baseline, under the epoch "
        "cap; with a report (proportions vs natural, predicted vs actual on held-out runs, validation runs).",
        check_specs=[dg.AssetCheckSpec("on_simplex_within_caps", asset=ASSET, blocking=True,
                                       description="proportions are >= 0, sum to 1 and respect every epoch cap")],
        code_version=ctx.code_version("mixing-1", "mixing", "output"),
    )
    def mixture(context: dg.AssetExecutionContext, curamix: CuramixResource):
        spec = curamix.load_spec()
        payload = run_mixing(spec, progress=context.log.info)
        yield from materialize(mixture_outcome(spec.data_root, payload), log=context.log)

    return StageDefinitions(assets=[mixture])


__all__ = ["build_stage"]
