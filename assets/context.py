"""What every stage module receives to build its Dagster definitions from a spec."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from pipeline.config.typed import to_plain
from pipeline.spec import Spec


@dataclass(frozen=True)
class BuildContext:
    spec: Spec
    domain_partitions: dg.StaticPartitionsDefinition

    def code_version(self, code: str, *sections: str) -> str:
        """An asset's code version: its code's own version plus a hash of the spec settings it reads (the
        named sections and the seed). Editing those settings then marks exactly that asset stale, in the UI
        and for the nightly schedule, the way a code change does; assets below it follow through their
        upstream data versions."""
        settings = {"seed": self.spec.body.seed, **{s: to_plain(getattr(self.spec.body, s)) for s in sections}}
        canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
        return f"{code}+{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


@dataclass
class StageDefinitions:
    """What one stage module contributes to the code location."""

    assets: list = field(default_factory=list)
    asset_checks: list = field(default_factory=list)
    jobs: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    sensors: list = field(default_factory=list)


def preview_markdown(rows: list[dict], *, text_chars: int = 80) -> dg.MetadataValue:
    """A small Markdown table for the UI; long text cut short, pipes escaped."""
    if not rows:
        return dg.MetadataValue.md("_(no rows)_")
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            value = str(row[c]).replace("\n", " ").replace("|", "\\|")
            cells.append(value[:text_chars] + ("…" if len(value) > text_chars else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))
