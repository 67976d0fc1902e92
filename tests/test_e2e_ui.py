"""End to end through the real UI server: `dagster dev` on loopback, "Materialize all" as the UI sends it.

The test starts `dagster dev` (webserver, daemon and code server) in a temporary DAGSTER_HOME on a
free loopback port, for a small copy of the embedded example spec, then does what a click on
"Materialize all" in the asset graph makes the UI do (dagster-webserver 1.13's
``LaunchAssetExecutionButton.tsx`` and ``LaunchAssetChoosePartitionsDialog.tsx``, read from the
source maps shipped in the wheel): load the asset nodes with the UI's ``LaunchAssetLoaderQuery``
fields, choose between one run and a partitions dialog by the same rules, and launch with the same
``launchPartitionBackfill`` (or ``launchPipelineExecution``) mutation and the ``dagster/from_ui``
tag. It polls the backfill until it ends, then checks every run, asset and asset check, the staged
outputs, and (when the graph has ``training_set``) verifies the training set against its manifest.
The server's whole process group is stopped at the end and must leave no process behind.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_operations_support import REPO, small_spec

pytestmark = pytest.mark.slow

FROM_UI = {"key": "dagster/from_ui", "value": "true"}
HIDDEN_JOB_PREFIXES = ("__ASSET_JOB", "__anonymous_asset_job")
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 3
    dequeue_interval_seconds: 1
"""

# The fields of the UI's LaunchAssetExecutionAssetNodeFragment that its launch decision reads.
ASSET_NODE_FIELDS = """
  id opNames jobNames graphName isObservable isExecutable isMaterializable
  assetKey { path }
  dependencyKeys { path }
  partitionDefinition { description type name dimensionTypes { name dynamicPartitionsDefinitionName } }
  backfillPolicy { maxPartitionsPerRun policyType }
  repository { name location { name } }
  requiredResources { resourceKey }
  configField { isRequired }
  assetChecksOrError { ... on AssetChecks { checks { name canExecuteIndividually jobNames } } }
"""
LAUNCH_ASSET_LOADER_QUERY = f"""
query LaunchAssetLoaderQuery($assetKeys: [AssetKeyInput!]!) {{
  assetNodes(assetKeys: $assetKeys) {{ {ASSET_NODE_FIELDS} }}
  assetNodeAdditionalRequiredKeys(assetKeys: $assetKeys) {{ path }}
  assetNodeDefinitionCollisions(assetKeys: $assetKeys) {{ assetKey {{ path }} }}
}}"""
LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
LAUNCH_PIPELINE_EXECUTION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


class UI:
    """A GraphQL client for one running webserver (loopback only)."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def query(self, text: str, **variables) -> dict:
        body = json.dumps({"query": text, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"HTTP {exc.code} from the webserver: {exc.read().decode(errors='replace')[:2000]}") from None
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, probe, *, timeout: float, every: float = 1.0, server=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise AssertionError(f"dagster dev exited ({server.returncode}) while waiting for {what}")
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _server_up(ui: UI):
    try:
        with urllib.request.urlopen(f"{ui.url}/server_info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _location_loaded(ui: UI):
    data = ui.query("""{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
    entries = data["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry["locationOrLoadError"]
        if error and error["__typename"] == "PythonError":
            raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def _daemons_healthy(ui: UI):
    data = ui.query("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
    statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
    return all(s["healthy"] for s in statuses if s["required"] and s["daemonType"] in ("BACKFILL", "QUEUED_RUN_COORDINATOR"))


def same_partitioning(a: dict, b: dict) -> bool:
    """The UI's ``partitionDefinitionsEqual``."""
    return a["description"] == b["description"] and json.dumps(a["dimensionTypes"]) == json.dumps(b["dimensionTypes"])


def launch_like_materialize_all(ui: UI) -> dict:
    """What "Materialize all" in the asset graph sends; returns {"backfillId": ...} or {"runId": ...}."""
    every = ui.query("{ assetNodes { assetKey { path } isMaterializable } }")["assetNodes"]
    keys = [{"path": n["assetKey"]["path"]} for n in every if n["isMaterializable"]]
    data = ui.query(LAUNCH_ASSET_LOADER_QUERY, assetKeys=keys)
    assert not data["assetNodeDefinitionCollisions"]
    assert not data["assetNodeAdditionalRequiredKeys"]
    assets = data["assetNodes"]
    assert all(a["isExecutable"] and not a["isObservable"] for a in assets)

    repo = assets[0]["repository"]
    partitioned = [a for a in assets if a["partitionDefinition"]]
    common_jobs = [j for j in assets[0]["jobNames"] if all(j in a["jobNames"] for a in assets)]
    job = common_jobs[0] if common_jobs else None
    same_space = all(same_partitioning(a["partitionDefinition"], partitioned[0]["partitionDefinition"]) for a in partitioned)
    same_repo = all(a["repository"] == repo for a in assets)
    asset_selection = [{"path": a["assetKey"]["path"]} for a in assets]

    if not partitioned:  # the UI's "single-run" path
        assert job, "no job holds every asset"
        checks = [
            {"assetKey": {"path": a["assetKey"]["path"]}, "name": c["name"]}
            for a in assets for c in (a["assetChecksOrError"].get("checks") or []) if not c["jobNames"] or job in c["jobNames"]
        ]
        result = ui.query(LAUNCH_PIPELINE_EXECUTION, executionParams={
            "mode": "default", "runConfigData": "{}",
            "executionMetadata": {"tags": [FROM_UI]},
            "selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                         "pipelineName": job, "assetSelection": asset_selection, "assetCheckSelection": checks},
        })["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return {"runId": result["run"]["runId"]}

    if same_repo and same_space and job:
        target = "job"
        anchor = partitioned[0]
    else:  # the "pureWithAnchorAsset" path: roots of the selection that are partitioned
        selected = {json.dumps(a["assetKey"]["path"]) for a in assets}
        roots = [a for a in assets if not any(json.dumps(d["path"]) in selected for d in a["dependencyKeys"])]
        partitioned_roots = sorted((r for r in roots if r["partitionDefinition"]), key=lambda r: r["assetKey"]["path"])
        assert partitioned_roots, "the UI would launch a pure backfill of all partitions (pureAll)"
        anchor = partitioned_roots[0]
        assert all(same_partitioning(anchor["partitionDefinition"], r["partitionDefinition"]) for r in partitioned_roots)
        target = "pureWithAnchorAsset"

    if target == "pureWithAnchorAsset":
        # Dagster builds such a backfill by walking down from the anchor through partitioned assets only
        # (AssetBackfillData.from_asset_partitions): a partitioned asset below an unpartitioned one is not
        # in it, and what reads that asset fails. Say so plainly instead of failing deep in a run.
        path = lambda a: json.dumps(a["assetKey"]["path"])  # noqa: E731
        reached, frontier = {path(anchor)}, [anchor]
        while frontier:
            parent = frontier.pop()
            for child in partitioned:
                if path(child) not in reached and any(json.dumps(d["path"]) == path(parent) for d in child["dependencyKeys"]):
                    reached.add(path(child))
                    frontier.append(child)
        dropped = ["/".join(a["assetKey"]["path"]) for a in partitioned if path(a) not in reached]
        assert not dropped, (
            f"'Materialize all' launches a backfill anchored on {'/'.join(anchor['assetKey']['path'])} that cannot "
            f"include {dropped}: partitioned differently and below an unpartitioned asset, so they are left out and "
            "the assets that read them fail. Partition them like the anchor, or not at all."
        )

    # The dialog offers every partition key of the anchor, all selected by default.
    node = ui.query("""query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) {
        ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }""",
                    k={"path": anchor["assetKey"]["path"]})["assetNodeOrError"]
    (dimension,) = node["partitionKeysByDimension"]
    partition_keys = dimension["partitionKeys"]
    assert partition_keys
    params = {"tags": [FROM_UI], "assetSelection": asset_selection, "partitionNames": partition_keys, "fromFailure": False}
    if target == "job" and not job.startswith(HIDDEN_JOB_PREFIXES):
        params["selector"] = {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"]},
        }
    result = ui.query(LAUNCH_PARTITION_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return {"backfillId": result["backfillId"], "partitions": partition_keys, "target": target}


def runs_of(ui: UI, tag: dict) -> list[dict]:
    data = ui.query("""query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
        ... on Runs { results { runId status tags { key value } } } } }""", tags=[tag])
    return data["runsOrError"]["results"]


def run_failure(ui: UI, run_id: str) -> str:
    data = ui.query("""query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on MessageEvent { message } ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }""",
                    id=run_id)
    events = data["logsForRun"].get("events", [])
    failures = [f"{e.get('stepKey')}: {e['error']['message']}" for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    return "\n".join(failures) or "\n".join(e.get("message", "") for e in events[-5:])


def asset_report(ui: UI) -> list[dict]:
    return ui.query("""{ assetNodes {
        assetKey { path } isMaterializable
        partitionStats { numMaterialized numPartitions numFailed }
        assetMaterializations(limit: 1) { runId metadataEntries { label __typename ... on PathMetadataEntry { path } } }
        assetChecksOrError { ... on AssetChecks { checks { name blocking
            executionForLatestMaterialization { status } } } } } }""")["assetNodes"]


def _terminal_like_signals() -> None:
    """In the child: SIGINT/SIGTERM back to their defaults (a shell that started the tests in the
    background leaves them ignored), so that dagster dev's Ctrl-C shutdown works as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


SCHEDULE_DRY_RUN = """
mutation($selector: ScheduleSelector!, $timestamp: Float) { scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
  __typename ... on PythonError { message }
  ... on DryRunInstigationTick { evaluationResult {
    skipReason error { message } runRequests { runKey tags { key value } assetSelection { path } } } } } }"""
SENSOR_DRY_RUN = """
mutation($selector: SensorSelector!, $cursor: String) { sensorDryRun(selectorData: $selector, cursor: $cursor) {
  __typename ... on PythonError { message }
  ... on DryRunInstigationTick { evaluationResult {
    skipReason error { message } runRequests { runKey tags { key value } assetSelection { path } } } } } }"""


def dry_run(ui: UI, kind: str, name: str, repo: dict) -> dict:
    """The UI's "Test schedule" / "Test sensor" buttons: evaluate one tick in the code server."""
    selector = {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"]}
    if kind == "schedule":
        # The dialog evaluates the tick at a time the user picks (the next one by default); now is fine.
        result = ui.query(SCHEDULE_DRY_RUN, selector={**selector, "scheduleName": name}, timestamp=time.time())["scheduleDryRun"]
    else:
        # The dialog passes the cursor the user sees (none for a sensor that never ticked).
        result = ui.query(SENSOR_DRY_RUN, selector={**selector, "sensorName": name}, cursor=None)["sensorDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", result
    evaluation = result["evaluationResult"]
    assert not evaluation["error"], evaluation["error"]
    return evaluation


def stop_process_group(server: subprocess.Popen, timeout: float = 60) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to the whole group), then wait until no process of the
    group is left; a group still alive after ``timeout`` is killed and the test fails."""
    pgid = server.pid
    try:
        os.killpg(pgid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    server.wait(timeout=10)
    raise AssertionError(f"dagster dev's process group {pgid} was still alive {timeout:.0f}s after SIGINT")


@pytest.fixture
def ui_server(tmp_path):
    spec = small_spec(tmp_path / "project")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    data_root = tmp_path / "data"
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CURAMIX_SPEC": str(spec),
        "CURAMIX_DATA_ROOT": str(data_root),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = open(tmp_path / "dagster_dev.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_terminal_like_signals,
    )
    ui = UI(port)
    try:
        wait_until("the webserver", lambda: _server_up(ui), timeout=180, server=server)
        wait_until("the code location", lambda: _location_loaded(ui), timeout=180, server=server)
        wait_until("the daemons", lambda: _daemons_healthy(ui), timeout=120, every=2, server=server)
        yield ui, spec, data_root, tmp_path / "dagster_dev.log"
    finally:
        stop_process_group(server)
        log.close()


def test_materialize_all_from_the_ui(ui_server):
    ui, spec, data_root, log_path = ui_server
    started = time.monotonic()
    launched = launch_like_materialize_all(ui)

    if "backfillId" in launched:
        backfill_id = launched["backfillId"]

        def backfill_done():
            data = ui.query("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status isAssetBackfill } ... on PythonError { message } } }""", id=backfill_id)
            status = data["partitionBackfillOrError"].get("status")
            failed = [r for r in runs_of(ui, {"key": "dagster/backfill", "value": backfill_id}) if r["status"] == "FAILURE"]
            if failed:
                raise AssertionError(f"run {failed[0]['runId']} failed:\n{run_failure(ui, failed[0]['runId'])}")
            return status if status in BACKFILL_DONE else None

        status = wait_until("the backfill", backfill_done, timeout=900, every=2)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
        runs = runs_of(ui, {"key": "dagster/backfill", "value": backfill_id})
        assert runs and all(r["status"] == "SUCCESS" for r in runs)
        assert all({"key": "dagster/from_ui", "value": "true"} in r["tags"] for r in runs)
    else:
        def run_done():
            (run,) = [r for r in runs_of(ui, FROM_UI) if r["runId"] == launched["runId"]]
            return run["status"] if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert wait_until("the run", run_done, timeout=900, every=2) == "SUCCESS"
    elapsed = time.monotonic() - started

    # Every asset materialized (every partition), every asset check on the latest materialization passed.
    report = {"/".join(a["assetKey"]["path"]): a for a in asset_report(ui) if a["isMaterializable"]}
    for name, node in report.items():
        stats = node["partitionStats"]
        if stats:
            assert stats["numMaterialized"] == stats["numPartitions"] > 0, (name, stats)
        else:
            assert node["assetMaterializations"], f"{name} was not materialized"
        for check in node["assetChecksOrError"].get("checks") or []:
            execution = check["executionForLatestMaterialization"]
            assert execution and execution["status"] == "SUCCEEDED", (name, check)

    # The outputs a user would look at.
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    root = DataRoot(data_root)
    domains = load_spec(spec).domains
    assert root.domains("documents") == sorted(domains)
    assert root.scan("documents").select("doc_id").collect().height > 0

    if "training_set" in report:
        entries = {e["label"]: e for e in report["training_set"]["assetMaterializations"][0]["metadataEntries"]}
        out_dir = Path(entries["path"]["path"])
        assert (out_dir / "manifest.json").exists()
        from pipeline.emission.verify import verify

        assert verify(out_dir) == []
        manifest = json.loads((out_dir / "manifest.json").read_text())
        assert set(manifest["domains"]) <= set(domains)
    print(f"\nmaterialize-all through the UI: {len(report)} assets, {elapsed:.0f}s from launch to success")

    # Incremental: everything is fresh, so "Test schedule" requests nothing; after one source file of
    # one domain changes, the schedule asks for that domain only and the sensor for one backfill.
    repo = ui.query("{ assetNodes { repository { name location { name } } } }")["assetNodes"][0]["repository"]
    idle = dry_run(ui, "schedule", "nightly_curation", repo)
    assert not idle["runRequests"] and "up to date" in idle["skipReason"], idle
    source = spec.parent / "raw" / "math_gsm8k.jsonl"
    with open(source, "a") as handle:
        handle.write(json.dumps({"question": "What is 2 + 3?", "answer": "2 + 3 = 5. #### 5"}) + "\n")
    tick = dry_run(ui, "schedule", "nightly_curation", repo)
    partitions = [{t["key"]: t["value"] for t in r["tags"]}.get("dagster/partition") for r in tick["runRequests"]]
    assert partitions == ["math"], tick
    sensed = dry_run(ui, "sensor", "raw_files_sensor", repo)
    assert len(sensed["runRequests"]) == 1, sensed
    assert {"key": "curamix/trigger", "value": "raw_files_sensor"} in sensed["runRequests"][0]["tags"]
