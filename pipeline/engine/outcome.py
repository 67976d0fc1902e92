"""What a stage reports when it is done, without Dagster: metadata, a data version and check results.

``assets/adapter.py`` turns one ``StageOutcome`` into Dagster's ``MaterializeResult`` and
``AssetCheckResult`` s, the same way for every asset; the rules behind the checks live with the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    # "error" fails a blocking check (and stops what depends on the asset); "warn" only shows.
    severity: Literal["error", "warn"] = "error"


@dataclass(frozen=True)
class Markdown:
    """Metadata text to render as Markdown (plain ``str`` values are shown as text)."""

    text: str
    # A report written next to its PNGs: its relative image links are shown inline (the UI cannot fetch
    # files from the data root).
    images_in: Path | None = None


@dataclass(frozen=True)
class Table:
    """A few rows to preview as a small table."""

    rows: list[dict]
    text_chars: int = 80  # longer cells are cut short


@dataclass(frozen=True)
class Image:
    """A PNG chart (``pipeline.plots``) to show inline: its bytes, or a PNG file (then named under it)."""

    png: bytes | Path
    alt: str = "plot"
    caption: str | None = None


@dataclass(frozen=True)
class StageOutcome:
    # Plain values: int, float, str, bool, None, Path (a path), dict or list (JSON), Markdown, Table, Image;
    # anything else is passed through unchanged (e.g. an image the Dagster layer made).
    metadata: dict[str, Any] = field(default_factory=dict)
    # Changes exactly when the output's content changes; None lets Dagster use the run id.
    data_version: str | None = None
    checks: list[CheckOutcome] = field(default_factory=list)
    # What the user should read in the run's log as a warning (also shown in the metadata where it matters).
    warnings: list[str] = field(default_factory=list)
