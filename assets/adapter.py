"""The one adapter from a stage's ``StageOutcome`` to Dagster events.

An asset body is: load the spec, run the stage, ``yield from materialize(outcome)``. Nothing else belongs in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from assets.context import preview_markdown
from assets.ops_metadata import image_metadata, markdown_with_inline_images
from pipeline.engine.outcome import CheckOutcome, Image, Markdown, StageOutcome, Table

_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def metadata_value(value: Any) -> Any:
    """Dagster's metadata value for a plain one."""
    if isinstance(value, Table):
        return preview_markdown(value.rows, text_chars=value.text_chars)
    if isinstance(value, Image):
        return image_metadata(value.png, alt=value.alt, caption=value.caption)
    if isinstance(value, Markdown):
        if value.images_in is not None:
            return markdown_with_inline_images(value.text, value.images_in)
        return dg.MetadataValue.md(value.text)
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, (dict, list)):
        return dg.MetadataValue.json(value)
    if isinstance(value, bool):  # before int: a bool is an int
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, str):
        return dg.MetadataValue.text(value)
    return value


def check_result(check: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=check.name, passed=check.passed, severity=_SEVERITY[check.severity],
                               metadata={k: metadata_value(v) for k, v in check.metadata.items()})


def materialize(outcome: StageOutcome, *, log=None) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The materialization, then one result per check (the asset must declare each in ``check_specs``).
    ``log`` (the context's logger) gets the outcome's warnings."""
    for warning in outcome.warnings if log is not None else ():
        log.warning(warning)
    yield dg.MaterializeResult(
        metadata={k: metadata_value(v) for k, v in outcome.metadata.items()},
        data_version=dg.DataVersion(outcome.data_version) if outcome.data_version is not None else None,
    )
    for check in outcome.checks:
        yield check_result(check)
