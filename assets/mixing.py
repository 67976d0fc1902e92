"""Mixing asset: `mixture`, the domain proportions (RegMix, Aioli or a baseline) with its report and check."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.context import BuildContext, StageDefinitions, preview_markdown
from assets.ops_metadata import image_metadata, markdown_with_inline_images
from assets.resources import CuramixResource
from mixers.choose import ASSET_DIR, check_mixture
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
        out = Path(spec.data_root) / ASSET_DIR
        props = payload["proportions"]
        rows = [{"domain": d, payload["method"]: round(p, 4),
                 **{b: round(m[d], 4) for b, m in payload["baselines"].items()},
                 "cap": round(payload["inputs"]["caps"][d], 4), "epochs": round(payload["epochs"][d], 3)}
                for d, p in props.items()]
        metadata = {
            "path": dg.MetadataValue.path(str(out / "mixture.json")),
            "method": payload["method"],
            "proportions": preview_markdown(rows),
            "report": markdown_with_inline_images((out / "report.md").read_text(), out),
            "predicted": dg.MetadataValue.json(payload["predicted"]),
        }
        for name, file in payload["plots"].items():
            # The picture inline (the UI's "Show Markdown"), its file path under it.
            metadata[f"plot_{name}"] = image_metadata(out / file, alt=name, caption=str(out / file))
        if payload["inputs"].get("regressor_hash"):
            metadata["regressor_hash"] = payload["inputs"]["regressor_hash"]
            metadata["proxy_runs"] = len(payload["inputs"]["proxy_run_ids"])
        combined = (payload.get("fit_quality") or {}).get("combined")
        if combined:
            metadata["heldout_spearman"] = dg.MetadataValue.float(combined["spearman"] or float("nan"))
            metadata["heldout_mse"] = dg.MetadataValue.float(combined["mse"])
        if payload.get("validation"):
            metadata["validation_average_loss"] = dg.MetadataValue.json(
                {k: v["average"] for k, v in payload["validation"].items()})
        version = hashlib.sha256(json.dumps(props, sort_keys=True).encode()).hexdigest()[:16]
        yield dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))
        problems = check_mixture(props, payload["inputs"]["caps"])
        yield dg.AssetCheckResult(
            check_name="on_simplex_within_caps", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"sum": sum(props.values()), "problems": "\n".join(problems) or "none"},
        )

    return StageDefinitions(assets=[mixture])


__all__ = ["build_stage"]
