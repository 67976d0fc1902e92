"""What curation reports per domain (``stats.json``, the asset's metadata, the closing lines)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DomainReport:
    domain: str
    profile: str
    rows_in: int = 0
    rows_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    # the same drops by rule ("gopher_quality.min_stop_words", "exact_duplicate", ...)
    drops_by_rule: dict[str, int] = field(default_factory=dict)
    # set when the stage dropped more of the domain than ``curation.guard`` allows (see guard.py)
    guard: dict | None = None

    @property
    def rows_dropped(self) -> int:
        return sum(self.drops.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_dropped": self.rows_dropped}
