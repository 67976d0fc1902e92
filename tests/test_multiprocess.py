"""Domain partitions fan out for real: concurrent runs, each with Dagster's multiprocess executor.

Partitions are curamix's unit of fan-out. Here every domain partition of ``documents`` is materialized
by its own ``dagster asset materialize`` process, all started at once against one persistent
instance, the way a run launcher starts runs on several workers; each run executes its steps with
the code location's default executor (multiprocess), so each step runs in a child process of its run.
The test reads the instance afterwards: one successful run per domain, steps in processes other than
the runs' own, run windows that overlap, and staged data that matches the raw files.
"""

import os
import subprocess
import sys

import dagster as dg
import pytest

from tests.test_operations_support import REPO, small_spec

pytestmark = pytest.mark.slow


def test_domain_partitions_fan_out_over_processes(tmp_path):
    from pipeline.freshness import changed_domains, file_states
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    spec_path = small_spec(tmp_path / "project")
    data_root = tmp_path / "data"
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "CURAMIX_SPEC": str(spec_path), "CURAMIX_DATA_ROOT": str(data_root),
           "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
    spec = load_spec(spec_path)
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create the storage once: concurrent first opens race on its schema migration

    runs = {
        domain: subprocess.Popen(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "assets.definitions",
             "--select", "documents", "--partition", domain],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        for domain in spec.domains
    }
    outputs = {}
    for domain, process in runs.items():
        out, _ = process.communicate(timeout=600)
        outputs[domain] = out.decode(errors="replace")
        assert process.returncode == 0, f"{domain}:\n{outputs[domain][-3000:]}"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        assert sorted(r.dagster_run.tags.get("dagster/partition") for r in records) == sorted(spec.domains)
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)

        # Each run's step ran in a child process of the run (the multiprocess executor).
        for record in records:
            logs = instance.all_logs(record.dagster_run.run_id)
            run_pids = {e.dagster_event.pid for e in logs
                        if e.dagster_event and e.dagster_event.event_type in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS)}
            step_pids = {e.dagster_event.pid for e in logs
                         if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START}
            assert step_pids and run_pids and not step_pids & run_pids, (run_pids, step_pids)
            assert any("multiprocess" in (e.user_message or "").lower() for e in logs)

        # The runs overlapped in time: every run started before any had finished.
        windows = [(r.start_time, r.end_time) for r in records]
        assert max(start for start, _ in windows) < min(end for _, end in windows), windows

        for domain in spec.domains:
            done = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("documents"), asset_partitions=[domain]), limit=5
            ).records
            assert len(done) == 1

    assert changed_domains(spec, DataRoot(data_root), file_states(spec)) == []
