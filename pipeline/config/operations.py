"""Spec section `operations` (owned by assets/operations.py): when curamix runs by itself.

Both automations ship stopped: a data team turns them on in the UI (Automation tab) or sets
``running: true`` here. The schedule re-runs, per domain partition, only what is stale (raw files
changed, never materialized, or a new code version); the sensor reacts to new or changed raw files
within ``interval_seconds`` and requests only the affected domain partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Allowed characters of one cron field (numbers, ranges, steps, lists, names like MON or JAN).
_CRON_FIELD = set("0123456789*/,-?LW#ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class ScheduleConfig:
    """The nightly curation schedule."""

    # Five-field cron (minute hour day-of-month month day-of-week), read in ``timezone``.
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    # Shipped stopped; true starts it on deployment (the UI toggle still wins afterwards).
    running: bool = False
    # "stale": only domain partitions whose raw files, code version or upstream changed, or that were
    # never materialized; "all": every domain partition, every night.
    partitions: Literal["stale", "all"] = "stale"

    def __post_init__(self) -> None:
        fields = self.cron.split()
        if len(fields) != 5 or any(set(f) - _CRON_FIELD for f in fields):
            raise ValueError(f"cron {self.cron!r} must have five fields, e.g. '0 3 * * *' (03:00 every day)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone such as 'UTC' or 'Europe/Paris'") from None


@dataclass(frozen=True)
class SensorConfig:
    """The new-data sensor over the spec's raw source files."""

    interval_seconds: int = 60
    running: bool = False
    # "graph": one backfill of the affected domain partitions and everything downstream of them (a new
    # training set follows a changed source); "partitions": only the per-domain assets of the affected
    # partitions (what can run without the global steps), one run per domain.
    downstream: Literal["graph", "partitions"] = "graph"

    def __post_init__(self) -> None:
        if self.interval_seconds < 5:
            raise ValueError("interval_seconds must be at least 5 (every tick stats every raw file)")


@dataclass(frozen=True)
class OperationsConfig:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    # Dagster's usage telemetry for the instance curamix creates under the data root (off unless true here
    # or CURAMIX_DAGSTER_TELEMETRY=1; a DAGSTER_HOME you set yourself keeps its own dagster.yaml).
    telemetry: bool = False
