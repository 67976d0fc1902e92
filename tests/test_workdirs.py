"""Work folders a stopped run left behind are removed when their stage next starts, unless a live run owns
the folder (item 8 of issue 17)."""

import json
import socket
import subprocess
import sys

import dagster as dg
import yaml

from assets.resources import CuramixResource
from pipeline.workdirs import LEASES, _process_start


def _spec(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"text": "hello"}\n')
    body = {"name": "t", "data_root": "data", "sources": [{"name": "a", "path": "raw/a.jsonl", "domain": "web"}]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(body))
    return tmp_path / "spec.yaml", tmp_path / "data"


def _lease_for(data_root, folder, process):
    base = data_root / LEASES
    base.mkdir(parents=True, exist_ok=True)
    (base / f"{folder}@{process.pid}.json").write_text(json.dumps(
        {"pid": process.pid, "host": socket.gethostname(), "started": _process_start(process.pid)}))


def _run_curated(spec_path):
    seen = {}

    @dg.asset(name="curated_documents")
    def curated_documents(curamix: CuramixResource):
        seen["leftovers"] = sorted(p.name for p in (curamix.root().root / "curated").iterdir())

    defs = dg.Definitions(assets=[curated_documents], resources={"curamix": CuramixResource(spec_path=str(spec_path))})
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(asset_selection=[dg.AssetKey("curated_documents")],
                                  instance=dg.DagsterInstance.ephemeral()).success
    return seen["leftovers"]


def test_a_crashed_runs_work_folder_is_removed_and_a_live_ones_stays(tmp_path):
    spec_path, data_root = _spec(tmp_path)
    curated = data_root / "curated"
    (curated / "domain=web").mkdir(parents=True)
    (curated / ".work-1a2b3c4d" / "signatures").mkdir(parents=True)
    (curated / "domain=web.tmp-0badc0de").mkdir()
    (curated / "domain=web" / "stats.json.tmp-00ff00ff").write_text("{")
    (data_root / "curated.tmp-12345678").mkdir()
    # The run that made them was killed: its lease names a process that is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    _lease_for(data_root, "curated", dead)
    dead.wait()

    assert _run_curated(spec_path) == ["domain=web"]  # gone before the stage's own code ran
    assert sorted(p.name for p in (curated / "domain=web").iterdir()) == []
    assert not (data_root / "curated.tmp-12345678").exists()
    assert list((data_root / LEASES).iterdir()) == []  # the dead lease and the run's own are gone

    # A live run works in the folder: its work folder is left alone.
    (curated / ".work-feedbeef").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lease_for(data_root, "curated", live)
        assert ".work-feedbeef" in _run_curated(spec_path)
        assert (curated / ".work-feedbeef").exists()
    finally:
        live.kill()
        live.wait()
    # Once that run is gone, the next start removes it.
    assert _run_curated(spec_path) == ["domain=web"]
