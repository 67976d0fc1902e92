"""The `ray` engine against a real Ray cluster that these tests start (`ray start --head` on a free port, its own
temp folder) and stop: same bytes as `local` through Dagster, a killed worker retried by Ray, and bad input
surfacing as the file and line, not as a Ray traceback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.config.execution import ExecutionConfig
from pipeline.config.ray_engine import RayConfig
from pipeline.config.typed import ConfigError, build
from pipeline.engine import run_stage
from pipeline.spec import load_spec
from pipeline.staging import StagingStage, StagingError
from pipeline.store import DataRoot
from bench.graph_run import graph_keys, key_folder, materialize_each, output_files
from tests.conftest import EXAMPLE_SPEC, REPO
from tests.test_operations_support import small_spec

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

RAY_BIN = Path(sys.executable).parent / "ray"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (the sockets stay bound until all are chosen, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# Ray turns token authentication on by itself when ~/.ray/auth_token exists (any earlier `ray.init()` on the
# machine writes one): a test cluster and its driver must not depend on that shared file, so both say "disabled".
NO_TOKEN_AUTH = {"RAY_AUTH_MODE": "disabled"}


class RayCluster:
    """`ray start --head --block` in its own process group: stopping that group stops every process of this
    cluster and nothing else (never `ray stop`, which stops every cluster of the user on the machine)."""

    def __init__(self, *, num_cpus: int = 2):
        self.port, client, dashboard, agent, agent_grpc, metrics, runtime_env = free_ports(7)
        self.temp_dir = tempfile.mkdtemp(prefix="cmxray", dir="/tmp")  # short: Ray's socket paths have a limit
        self.log = Path(self.temp_dir) / "start.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", **NO_TOKEN_AUTH}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(RAY_BIN), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={num_cpus}",
                 "--num-gpus=0", f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
                 "--disable-usage-stats",
                 # every listening port free, so that clusters of concurrent test runs do not collide
                 f"--ray-client-server-port={client}", f"--dashboard-port={dashboard}",
                 f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                 f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        log = self.log.read_text()[-3000:]  # before stop(), which removes the cluster's folder
        self.stop()
        raise RuntimeError(f"ray start did not come up:\n{log}")

    def worker_pids(self, title: str) -> list[int]:
        """Ray workers of this cluster (its session: workers get process groups of their own) whose process title, ``ray::<task name>``, starts
        with ``title``."""
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                if not proc.name.isdigit() or os.getsid(int(proc.name)) != self.process.pid:
                    continue
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(f"ray::{title}"):
                pids.append(int(proc.name))
        return pids

    def session_pids(self) -> list[int]:
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.getsid(int(proc.name)) == self.process.pid:
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def stop(self) -> None:
        """Leave the cluster, ask `ray start --block` to stop what it started, then kill what is left of this
        cluster's session (workers get process groups of their own, so not the group: the session)."""
        from pipeline.engine import ray_executor

        ray_executor.disconnect()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    saved = {k: os.environ.get(k) for k in NO_TOKEN_AUTH}
    os.environ.update(NO_TOKEN_AUTH)  # the driver (this process) as well as the cluster
    cluster = RayCluster()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def on_ray(cluster: RayCluster, **ray) -> ExecutionConfig:
    return ExecutionConfig(engine="ray", ray=RayConfig(address=cluster.address, **ray))


# ---------------------------------------------------------------------------------------------- spec section

def test_ray_section_is_typed_and_validated():
    config = build(ExecutionConfig, {"engine": "ray", "ray": {"address": "ray://head:10001", "num_cpus_per_task": 2,
                                                              "num_gpus_per_task": 0.5}})
    assert config.ray == RayConfig(address="ray://head:10001", num_cpus_per_task=2.0, num_gpus_per_task=0.5)
    assert build(ExecutionConfig, {}).ray.address == "auto"
    with pytest.raises(ConfigError, match=r"ray: address must be auto, local, ray://host:port or host:port"):
        build(ExecutionConfig, {"engine": "ray", "ray": {"address": "http://head"}})
    with pytest.raises(ConfigError, match=r"ray\.num_gpus: unknown key"):
        build(ExecutionConfig, {"ray": {"num_gpus": 1}})


def test_spec_hash_does_not_depend_on_the_engine(tmp_path):
    """The training set's manifest records the spec hash: it must not change when only the engine does."""
    local = load_spec(spec_copy(tmp_path, "local", {"engine": "local"}))
    on_ray = load_spec(spec_copy(tmp_path, "ray", {"engine": "ray", "ray": {"address": "ray://head:10001"}}))
    assert local.spec_hash == on_ray.spec_hash


def test_curamix_imports_and_runs_local_without_ray(tmp_path):
    """`make demo` does not install ray: everything but the ray engine works without it, and asking for the
    ray engine then says how to install it."""
    script = f"""
import sys
sys.modules["ray"] = None  # as if not installed
import assets.definitions, pipeline.spec, pipeline.engine
from pipeline.config.execution import ExecutionConfig
from pipeline.engine import run_stage
from tests.test_engine import toy_stage
from pathlib import Path
stage = toy_stage(Path({str(tmp_path)!r}))
assert run_stage(stage, execution=ExecutionConfig(engine="inline"))[0] == sum(j * j for j in range(5))
try:
    run_stage(toy_stage(Path({str(tmp_path / 'b')!r})), execution=ExecutionConfig(engine="ray"))
except ImportError as exc:
    print("IMPORT-ERROR:", exc)
"""
    (tmp_path / "b").mkdir()
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "IMPORT-ERROR: execution.engine 'ray' needs Ray: pip install 'curamix[ray]'" in out.stdout


# ---------------------------------------------------------------------------------------------- on a real cluster

def spec_copy(folder: Path, name: str, execution: dict) -> Path:
    """The example spec beside links to the example's files (so relative paths read the same), plus an
    `execution` section."""
    for entry in EXAMPLE_SPEC.parent.iterdir():
        if entry.name != EXAMPLE_SPEC.name and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["execution"] = execution
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def step_errors(results) -> list[str]:
    return [e.event_specific_data.error.to_string() for r in results for e in r.all_events
            if e.event_type_value == "STEP_FAILURE"]


def tiny_graph_spec(folder: Path) -> Path:
    """The example's graph on a tiny spec (three domains cut from the example, tiny proxies, a small sweep):
    SeTa pruning, so that every asset does its work (the reference proxy and the difficulty scores are
    skipped for other methods), and the mixture's validation runs on."""
    path = small_spec(folder, math_rows=120, code_rows=40, techdocs_files=10)
    body = yaml.safe_load(path.read_text())
    body["pruning"]["method"] = "seta"
    body["proxies"]["train"]["steps"] = 6
    body["proxies"]["reference_steps"] = 6
    body["proxies"]["sweeps"] = [{"name": "sweep0", "n_mixtures": 4, "seeds": [0]}]
    body["mixing"]["validation"] = {"enabled": True, "steps": 4, "seeds": 1, "baselines": ["uniform"]}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def with_execution(spec_path: Path, name: str, execution: dict) -> Path:
    body = yaml.safe_load(spec_path.read_text())
    body["execution"] = execution
    path = spec_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.mark.slow
def test_whole_example_graph_through_dagster_is_byte_identical_under_ray_and_local(cluster, tmp_path, monkeypatch):
    """Every asset of the graph, materialized through Dagster with `engine: local` and with `engine: ray`:
    every file under the two data roots the same (JSON files compared without the wall-clock figures stages
    record, ``bench.graph_run.output_files``). Stages on the engine contract run their shards as Ray tasks;
    the others run in-process under both engines (and are covered here once they move onto the contract)."""
    import dagster as dg

    monkeypatch.delenv("CURAMIX_DATA_ROOT", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    spec = tiny_graph_spec(tmp_path)
    specs = {"local": with_execution(spec, "local", {"engine": "local", "workers": 2, "min_bytes_per_worker": 0}),
             "ray": with_execution(spec, "ray", {"engine": "ray", "ray": {"address": cluster.address}})}
    roots = {name: tmp_path / f"data-{name}" for name in specs}
    keys = graph_keys(specs["local"])
    assert {"documents", "curated_documents", "proxy_runs", "mixture", "training_set"} <= set(keys)
    for name in ("local", "ray"):
        results = [r for _, _, r, _ in materialize_each(specs[name], roots[name], keys, dg.DagsterInstance.ephemeral())]
        assert not step_errors(results), step_errors(results)[0]
        assert all(r.success for r in results)
    local, on_ray = output_files(roots["local"]), output_files(roots["ray"])
    for key in keys:  # every asset left files behind, and the same ones
        assert any(key_folder(key) == p.split("/", 1)[0] for p in local), key
    assert set(on_ray) == set(local)
    assert [p for p in sorted(local) if local[p] != on_ray[p]] == []
    # the ray runs' driver was this process, connected to the test's cluster
    assert ray.get_runtime_context().gcs_address.endswith(f":{cluster.port}")


def _stage_modules_missing() -> list[str]:
    import sys

    from pipeline.engine.executors import STAGE_MODULES

    return [m for m in STAGE_MODULES if m not in sys.modules]


@pytest.mark.slow
def test_ray_workers_start_with_every_stage_module_imported(cluster):
    """The engine's worker setup hook: a stage's first shard on a worker pays no imports (torch: ~1.5 s), as a local
    worker forked from the preloaded forkserver does not."""
    from pipeline.config.ray_engine import RayConfig
    from pipeline.engine import ray_executor

    ray_executor.connect(RayConfig(address=cluster.address))
    ray_executor.stop_actors()  # the engine's actors hold the cluster's 2 CPUs until its driver stops them
    missing = ray.get([ray.remote(_stage_modules_missing).remote() for _ in range(2)])
    assert missing == [[], []]


@pytest.mark.slow
def test_the_engine_keeps_its_actors_from_one_stage_to_the_next(cluster, tmp_path):
    """A stage's shards run on the driver's actors, and the next stage runs on the same processes: no new worker and
    no imports between two stages (a sub-second stage had paid 1.5-2.5 s for them)."""
    from pipeline.engine import ray_executor, start_engine
    from tests.test_engine import SquareStage, toy_stage

    ray_executor.stop_actors()
    start_engine(on_ray(cluster))  # as many actors as the cluster's 2 CPUs fit, each up and running
    assert len(ray_executor._ACTORS) == 2
    first = toy_stage(tmp_path)
    second = SquareStage(first.folder, tmp_path / "again.json", version="2")
    for stage in (first, second):
        assert run_stage(stage, execution=on_ray(cluster))[0] == sum(j ** 2 for j in range(5))
    pids = [set(json.loads(s.out.read_text())["pids"]) for s in (first, second)]
    assert pids[1] <= pids[0] and len(pids[0]) <= 2 and os.getpid() not in pids[0]
    assert len(ray_executor._ACTORS) == 2


@dataclass
class HeldStaging(StagingStage):
    """Staging whose shards wait while ``hold/wait`` exists, so that the test can kill a worker mid-shard.
    Imported by the Ray workers from this module (the cluster's PYTHONPATH holds the repository)."""

    hold: str = ""

    def run_shard(self, task, out):
        Path(self.hold, f"{task.key}.{os.getpid()}").touch()
        while Path(self.hold, "wait").exists():
            time.sleep(0.05)
        return super().run_shard(task, out)


def kill_first_worker(cluster: RayCluster, hold: Path, killed: list, timeout: float = 120, *,
                      title: str = "ShardWorker") -> None:
    """Find a Ray worker (or actor) running a shard by its process title, SIGKILL it, then let the shards go."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pids = cluster.worker_pids(title)
            started = {int(p.name.rsplit(".", 1)[1]) for p in hold.glob("*.*")}
            running = [p for p in pids if p in started]  # past its start: inside run_shard
            if running:
                os.kill(running[0], signal.SIGKILL)
                killed.append(running[0])
                return
            time.sleep(0.05)
    finally:
        time.sleep(1.0)  # let Ray notice the death before the others finish
        (hold / "wait").unlink(missing_ok=True)


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_retried_and_the_output_is_the_same(cluster, tmp_path):
    spec = load_spec(EXAMPLE_SPEC, data_root=tmp_path / "local")
    reference = StagingStage(spec, "math", DataRoot(spec.data_root))
    run_stage(reference, execution=ExecutionConfig(engine="inline"))

    spec = load_spec(EXAMPLE_SPEC, data_root=tmp_path / "ray")
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "wait").touch()
    killed: list[int] = []
    killer = threading.Thread(target=kill_first_worker, args=(cluster, hold, killed))
    killer.start()
    try:
        run_stage(HeldStaging(spec, "math", DataRoot(spec.data_root), hold=str(hold)),
                  execution=on_ray(cluster, max_retries=2))
    finally:
        (hold / "wait").unlink(missing_ok=True)
        killer.join()
    assert killed, "no running Ray worker was found to kill"
    attempts = sorted(p.name for p in hold.glob("*.*") if p.name != "wait")
    victim = next(p.rsplit(".", 1)[0] for p in attempts if p.endswith(f".{killed[0]}"))
    # the killed shard ran again in another worker process; every shard ran at least once
    assert len([p for p in attempts if p.startswith(victim + ".")]) == 2, attempts
    assert {p.rsplit(".", 1)[0] for p in attempts} == {t.key for t in reference.plan()}
    assert output_files(tmp_path / "ray" / "documents") == output_files(tmp_path / "local" / "documents")


@pytest.mark.slow
def test_bad_input_on_a_ray_worker_names_the_file_and_line_in_the_dagster_run(cluster, tmp_path, monkeypatch):
    import gzip

    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    data = gzip.compress("".join(json.dumps({"text": f"row {i} " * 20}) + "\n" for i in range(3000)).encode())
    (tmp_path / "broken.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "ok.jsonl").write_text(json.dumps({"text": "a fine document"}) + "\n")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "bad", "seed": 1, "data_root": "data",
        "sources": [{"name": "ok", "path": "ok.jsonl", "domain": "web"},
                    {"name": "broken", "path": "broken.jsonl.gz", "domain": "web"}],
        "staging": {"on_bad_file": "fail"},
        "execution": {"engine": "ray", "ray": {"address": cluster.address}}}))
    monkeypatch.delenv("CURAMIX_DATA_ROOT", raising=False)
    runs = materialize_each(spec_path, tmp_path / "data", ["documents"], dg.DagsterInstance.ephemeral())
    (error,) = step_errors([result for _, _, result, _ in runs])
    assert "broken.jsonl.gz: corrupt_archive: EOFError" in error and "lines)" in error
    assert "StagingError" in error and "stage documents, shard broken-00000, on a Ray worker" in error
    assert "RayTaskError" not in error and "ray/_private" not in error
    assert DataRoot(tmp_path / "data").domains("documents") == []  # nothing that looks complete
    # the same error, raised directly, is the original exception type
    spec = load_spec(spec_path)
    with pytest.raises(StagingError, match=r"broken\.jsonl\.gz: corrupt_archive"):
        run_stage(StagingStage(spec, "web", DataRoot(spec.data_root)), execution=spec.execution)
