"""The Dagster instance folder curamix creates for a spec (``<data_root>/dagster_home``).

curamix owns that folder, so it also owns its ``dagster.yaml``: telemetry is off unless the spec's
``operations.telemetry`` or the environment (``CURAMIX_DAGSTER_TELEMETRY=1``) turns it on. A
``dagster.yaml`` the user wrote (one without curamix's first line) is left exactly as it is, and so is
any ``DAGSTER_HOME`` the user set.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.layout import Layout
from pipeline.spec import load_spec

TELEMETRY_ENV = "CURAMIX_DAGSTER_TELEMETRY"
MARKER = "# written by curamix (delete this line to keep your own edits)"


def telemetry_wanted(spec_setting: bool) -> bool:
    """The environment switch wins over the spec (``1/true/yes`` on, ``0/false/no`` off)."""
    value = os.environ.get(TELEMETRY_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return spec_setting


def instance_yaml(*, telemetry: bool) -> str:
    return f"{MARKER}\ntelemetry:\n  enabled: {'true' if telemetry else 'false'}\n"


def write_instance_yaml(home: Path, *, telemetry: bool) -> None:
    path = home / "dagster.yaml"
    if path.exists() and path.stat().st_size and not path.read_text().startswith(MARKER):
        return  # the user's own instance settings
    wanted = instance_yaml(telemetry=telemetry)
    if not path.exists() or path.read_text() != wanted:
        tmp = path.with_name(f".dagster.yaml.tmp-{os.getpid()}")
        tmp.write_text(wanted)
        tmp.replace(path)


def dagster_home_for(spec_path: str | os.PathLike, data_root: str | None = None) -> Path:
    """DAGSTER_HOME if set, else a folder under the spec's data root (created on first use) with curamix's
    ``dagster.yaml``."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    spec = load_spec(spec_path, data_root=data_root)
    home = Layout.at(spec.data_root).dagster_home
    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home, telemetry=telemetry_wanted(spec.operations.telemetry))
    return home


__all__ = ["TELEMETRY_ENV", "dagster_home_for", "instance_yaml", "telemetry_wanted", "write_instance_yaml"]
