"""What the `mixture` asset shows and checks, built from the ``mixture.json`` payload ``run_mixing`` wrote.

Dagster-free: ``assets/adapter.py`` turns the ``StageOutcome`` into the asset's events.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mixers.choose import check_mixture
from pipeline.engine.outcome import CheckOutcome, Image, Markdown, StageOutcome, Table
from pipeline.layout import Layout


def proportion_rows(payload: dict) -> list[dict]:
    """The chosen proportions beside each baseline, the cap and the epochs they imply."""
    return [{"domain": d, payload["method"]: round(p, 4),
             **{b: round(m[d], 4) for b, m in payload["baselines"].items()},
             "cap": round(payload["inputs"]["caps"][d], 4), "epochs": round(payload["epochs"][d], 3)}
            for d, p in payload["proportions"].items()]


def mixture_version(proportions: dict) -> str:
    """Changes exactly when the proportions do (a re-run that chooses the same mixture is not new data)."""
    return hashlib.sha256(json.dumps(proportions, sort_keys=True).encode()).hexdigest()[:16]


def fit_metadata(payload: dict) -> dict:
    """The regression's inputs and held-out quality, the validation runs' losses: those present."""
    out = {}
    if payload["inputs"].get("regressor_hash"):
        out["regressor_hash"] = payload["inputs"]["regressor_hash"]
        out["proxy_runs"] = len(payload["inputs"]["proxy_run_ids"])
    combined = (payload.get("fit_quality") or {}).get("combined")
    if combined:
        out["heldout_spearman"] = float(combined["spearman"] if combined["spearman"] is not None else float("nan"))
        out["heldout_mse"] = float(combined["mse"])
    if payload.get("validation"):
        out["validation_average_loss"] = {k: v["average"] for k, v in payload["validation"].items()}
    return out


def check_on_simplex(payload: dict) -> CheckOutcome:
    props = payload["proportions"]
    problems = check_mixture(props, payload["inputs"]["caps"])
    return CheckOutcome("on_simplex_within_caps", passed=not problems,
                        metadata={"sum": sum(props.values()), "problems": "\n".join(problems) or "none"})


def mixture_outcome(root: str | Path, payload: dict) -> StageOutcome:
    """The page of the mixture under data root ``root``: proportions, report (pictures inline), plots, fit."""
    out = Layout.at(root).mixture_dir
    metadata = {
        "path": Layout.at(root).mixture_json,
        "method": payload["method"],
        "proportions": Table(proportion_rows(payload)),
        "report": Markdown((out / payload.get("report", "report.md")).read_text(), images_in=out),
        "predicted": payload["predicted"],
    }
    for name, file in payload["plots"].items():
        # The picture inline (the UI's "Show Markdown"), its file path under it.
        metadata[f"plot_{name}"] = Image(out / file, alt=name, caption=str(out / file))
    metadata |= fit_metadata(payload)
    return StageOutcome(metadata=metadata, data_version=mixture_version(payload["proportions"]),
                        checks=[check_on_simplex(payload)])


__all__ = ["check_on_simplex", "mixture_outcome", "mixture_version", "proportion_rows"]
