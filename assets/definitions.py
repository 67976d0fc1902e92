"""The curamix code location: every stage module under ``assets/`` contributes its definitions.

``dagster dev -m assets.definitions`` loads ``defs`` for the spec named by ``CURAMIX_SPEC`` (the
embedded example by default). A stage module joins the code location by defining
``build_stage(ctx: BuildContext) -> StageDefinitions``; nothing here needs editing.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import dagster as dg

import assets as assets_package
from assets.context import BuildContext, StageDefinitions
from assets.resources import SPEC_ENV, CuramixResource
from pipeline.spec import DATA_ROOT_ENV, Spec, load_spec

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "examples" / "default" / "spec.yaml"


def stage_modules() -> list[str]:
    """Stage modules in a stable order (alphabetical; Dagster orders the graph by dependencies)."""
    names = []
    for info in pkgutil.iter_modules(assets_package.__path__):
        module = importlib.import_module(f"assets.{info.name}")
        if hasattr(module, "build_stage"):
            names.append(module.__name__)
    return sorted(names)


def collect(spec: Spec) -> StageDefinitions:
    ctx = BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains))
    merged = StageDefinitions()
    for name in stage_modules():
        part: StageDefinitions = importlib.import_module(name).build_stage(ctx)
        merged.assets += part.assets
        merged.asset_checks += part.asset_checks
        merged.jobs += part.jobs
        merged.schedules += part.schedules
        merged.sensors += part.sensors
    return merged


def build_definitions(spec_path: str | os.PathLike, data_root: str | None = None) -> dg.Definitions:
    spec = load_spec(spec_path, data_root=data_root)
    parts = collect(spec)
    return dg.Definitions(
        assets=parts.assets,
        asset_checks=parts.asset_checks,
        jobs=parts.jobs,
        schedules=parts.schedules,
        sensors=parts.sensors,
        resources={"curamix": CuramixResource(spec_path=str(Path(spec_path).resolve()), data_root=data_root)},
    )


defs = build_definitions(os.environ.get(SPEC_ENV, str(DEFAULT_SPEC)), os.environ.get(DATA_ROOT_ENV) or None)
