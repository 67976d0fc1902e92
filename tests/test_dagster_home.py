"""The Dagster instance curamix creates under the data root has telemetry off unless the spec or the
environment turns it on; a dagster.yaml the user wrote is kept."""

import dagster as dg
import yaml

from assets.dagster_home import TELEMETRY_ENV, dagster_home_for


def _spec(tmp_path, telemetry=None):
    (tmp_path / "raw").mkdir(exist_ok=True)
    (tmp_path / "raw" / "a.jsonl").write_text('{"text": "hello"}\n')
    body = {"name": "t", "data_root": "data", "sources": [{"name": "a", "path": "raw/a.jsonl", "domain": "web"}]}
    if telemetry is not None:
        body["operations"] = {"telemetry": telemetry}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _telemetry(home) -> bool:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.telemetry_enabled


def test_created_instance_has_telemetry_off_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(TELEMETRY_ENV, raising=False)
    home = dagster_home_for(_spec(tmp_path))
    assert home == tmp_path / "data" / "dagster_home"
    assert _telemetry(home) is False


def test_spec_or_environment_turns_telemetry_on(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(TELEMETRY_ENV, raising=False)
    spec = _spec(tmp_path, telemetry=True)
    assert _telemetry(dagster_home_for(spec)) is True
    monkeypatch.setenv(TELEMETRY_ENV, "0")  # the environment wins over the spec
    assert _telemetry(dagster_home_for(spec)) is False


def test_a_users_dagster_yaml_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / "data" / "dagster_home"
    home.mkdir(parents=True)
    own = "telemetry:\n  enabled: true\n"
    (home / "dagster.yaml").write_text(own)
    dagster_home_for(_spec(tmp_path))
    assert (home / "dagster.yaml").read_text() == own
