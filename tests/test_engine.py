"""The stage contract and its engines: same bytes under every engine and worker count, and a stage killed
mid-way resumes from its finished shards."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config.execution import ExecutionConfig
from pipeline.engine import ShardTask, marker_path, run_stage, shard_dir
from pipeline.spec import load_spec
from pipeline.staging import StagingStage, stage_domain
from pipeline.store import DataRoot
from tests.conftest import EXAMPLE_SPEC, REPO

INLINE = ExecutionConfig(engine="inline")
# min_bytes_per_worker=0: start workers even for these small inputs
LOCAL_1 = ExecutionConfig(engine="local", workers=1, min_bytes_per_worker=0)
LOCAL_2 = ExecutionConfig(engine="local", workers=2, min_bytes_per_worker=0)
LOCAL_2_SPAWN = ExecutionConfig(engine="local", workers=2, min_bytes_per_worker=0, start_method="spawn")


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class SquareStage:
    """A toy stage: each shard squares the numbers of its input file; finish sums them."""

    folder: Path
    out: Path
    name: str = "squares"
    version: str = "1"

    @property
    def work_dir(self) -> Path:
        return self.folder / ".work"

    def plan(self) -> list[ShardTask]:
        return [ShardTask(key=p.stem, inputs=(str(p),), settings={"power": 2}, seed=0)
                for p in sorted(self.folder.glob("*.txt"))]

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        values = [int(v) ** task.settings["power"] for v in Path(task.inputs[0]).read_text().split()]
        (out / "squares.txt").write_text(" ".join(map(str, values)))
        return {"sum": sum(values), "pid": os.getpid()}

    def finish(self, results: list[dict]) -> list[int]:
        self.out.write_text(json.dumps({"sums": [r["sum"] for r in results], "pids": [r["pid"] for r in results]}))
        return [r["sum"] for r in results]


def toy_stage(tmp_path: Path) -> SquareStage:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"part-{i}.txt").write_text(" ".join(str(i * 10 + j) for j in range(5)))
    return SquareStage(folder, tmp_path / "sums.json")


@pytest.mark.parametrize("execution", [LOCAL_2, LOCAL_2_SPAWN], ids=["forkserver", "spawn"])
def test_local_pool_runs_shards_in_other_processes_and_keeps_plan_order(tmp_path, execution):
    stage = toy_stage(tmp_path)
    seen = []
    sums = run_stage(stage, execution=execution, progress=seen.append)
    assert sums == [sum((i * 10 + j) ** 2 for j in range(5)) for i in range(6)]
    written = json.loads(stage.out.read_text())
    assert written["sums"] == sums and os.getpid() not in written["pids"]
    assert not stage.work_dir.exists()  # shard folders are removed once the stage is assembled
    assert [m.split()[2] for m in seen] == [f"part-{i}" for i in range(6)]


def test_a_finished_shard_is_reused_and_a_changed_input_is_redone(tmp_path):
    stage = toy_stage(tmp_path)

    class Crash(Exception):
        pass

    def crash_at_finish(results):
        raise Crash  # the shards are done; the global step "crashes"

    crashing = SquareStage(stage.folder, stage.out)
    crashing.finish = crash_at_finish
    with pytest.raises(Crash):
        run_stage(crashing, execution=INLINE)
    markers = {t.key: marker_path(stage, t.key).stat().st_mtime_ns for t in stage.plan()}
    (stage.folder / "part-3.txt").write_text("1 2 3")  # one input changes after the crash
    seen = []
    sums = run_stage(stage, execution=INLINE, progress=seen.append)
    assert seen[0] == "squares: reusing 5 finished shard(s) of 6"
    assert [m for m in seen[1:]] == ["squares: shard part-3 done (1/1)"]
    assert sums[3] == 1 + 4 + 9 and len(markers) == 6


def test_small_inputs_start_no_workers(tmp_path):
    from pipeline.engine.executors import worker_count

    tasks = toy_stage(tmp_path).plan()
    assert worker_count(ExecutionConfig(workers=2), tasks) == 1  # 6 files of a few bytes: not worth a worker
    assert worker_count(LOCAL_2, tasks) == 2
    assert worker_count(ExecutionConfig(workers=2, min_bytes_per_worker=50), tasks) == 2
    assert worker_count(ExecutionConfig(workers=8, min_bytes_per_worker=0), tasks) == 6


def test_shard_failure_names_the_first_failing_task_in_plan_order(tmp_path):
    stage = toy_stage(tmp_path)
    (stage.folder / "part-2.txt").write_text("1 two 3")
    (stage.folder / "part-4.txt").write_text("x")
    with pytest.raises(ValueError, match="'two'"):
        run_stage(stage, execution=LOCAL_2)
    # the shards that did finish are kept for the next run; the failed ones left nothing that looks finished
    assert marker_path(stage, "part-0").exists() and not shard_dir(stage, "part-2").exists()


@dataclass
class ThreadsStage(SquareStage):
    """Reports, per shard, its worker's process and the tokenizer thread count the worker was given."""

    name: str = "threads"

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        return super().run_shard(task, out) | {"rayon": os.environ.get("RAYON_NUM_THREADS")}

    def finish(self, results: list[dict]) -> list:
        super().finish(results)
        return [r["rayon"] for r in results]


@dataclass
class LoadingStage(SquareStage):
    name: str = "loading"

    def load_worker_state(self) -> int:
        return 2

    def run_shard(self, task: ShardTask, out: Path, state: int) -> dict:
        return super().run_shard(task, out)


def test_the_local_pool_outlives_a_stage_and_is_closed_after_a_stage_that_loaded_a_model(tmp_path):
    from pipeline.engine import executors

    executors.close_pool()
    folder = toy_stage(tmp_path).folder
    first, second = ThreadsStage(folder, tmp_path / "a.json"), ThreadsStage(folder, tmp_path / "b.json", version="2")
    run_stage(first, execution=LOCAL_2)
    pool = executors._POOL.executor
    run_stage(second, execution=LOCAL_2)  # another stage value: its workers unpickle it, nothing else restarts
    assert executors._POOL.executor is pool
    workers = set(pool._processes)
    for stage in (first, second):
        pids = set(json.loads(stage.out.read_text())["pids"])
        assert pids <= workers and os.getpid() not in pids
    # no idle worker keeps a model: the pool is closed after a stage with worker state (and a later one starts anew)
    run_stage(LoadingStage(folder, tmp_path / "c.json"), execution=LOCAL_2)
    assert executors._POOL is None


def test_start_engine_starts_the_pool_that_the_next_stage_uses(tmp_path):
    from pipeline.engine import executors, start_engine

    executors.close_pool()
    start_engine(LOCAL_2)
    pool = executors._POOL.executor
    assert len(pool._processes) == 2
    stage = toy_stage(tmp_path)
    run_stage(stage, execution=LOCAL_2)
    assert executors._POOL.executor is pool and set(json.loads(stage.out.read_text())["pids"]) <= set(pool._processes)
    start_engine(INLINE)  # nothing to start


def test_each_local_worker_gets_its_share_of_the_tokenizer_threads(tmp_path):
    from pipeline.config.execution import core_count
    from pipeline.engine import executors

    executors.close_pool()
    threads = run_stage(ThreadsStage(toy_stage(tmp_path).folder, tmp_path / "t.json"), execution=LOCAL_2)
    assert set(threads) == {os.environ.get("RAYON_NUM_THREADS") or str(max(1, core_count() // 2))}


def test_small_tasks_travel_in_consecutive_groups():
    from pipeline.engine.executors import batches

    tasks = [ShardTask(key=f"t{i}", inputs=(), settings=None, seed=0) for i in range(100)]
    groups = batches(tasks, 2)
    assert [t for g in groups for t in g] == tasks  # every task once, in plan order
    assert 16 <= len(groups) <= 17 and len(batches(tasks[:5], 2)) == 5  # ~8 groups a worker; few tasks: one each


@pytest.mark.slow
def test_example_is_byte_identical_under_every_engine_and_worker_count(tmp_path):
    """Staging (every domain of the example; techdocs has 51 input files) and token bins on it."""
    from proxies.bins import build_bins
    from proxies.tokenizer import train_tokenizer

    trees = {}
    tokenizer = None
    for name, execution in [("inline", INLINE), ("local-1", LOCAL_1), ("local-2", LOCAL_2)]:
        spec = load_spec(EXAMPLE_SPEC, data_root=tmp_path / name)
        root = DataRoot(spec.data_root)
        for domain in spec.domains:
            stage_domain(spec, domain, root=root, execution=execution)
        if tokenizer is None:
            tokenizer = train_tokenizer(root.scan("documents").select("text").head(300).collect()["text"], vocab_size=512)
        build_bins(root, "documents", spec.domains, root.root / "token_bins", tokenizer=tokenizer,
                   tokenizer_sha256="t", validation_fraction=0.1, seed=spec.seed_for("token_bins"),
                   max_train_tokens=150_000, execution=execution)
        trees[name] = tree(root.root)
    assert len(trees["inline"]) > 80 and any(k.startswith("token_bins/domain=techdocs") for k in trees["inline"])
    assert trees["inline"] == trees["local-1"] == trees["local-2"]


CRASHING_RUN = """
import sys, time
from pipeline.config.execution import ExecutionConfig
from pipeline.engine import run_stage
from pipeline.spec import load_spec
from pipeline.staging import StagingStage
from pipeline.store import DataRoot
from tests.test_engine import SlowStagingStage

spec = load_spec(sys.argv[1], data_root=sys.argv[2])
run_stage(SlowStagingStage(spec, "techdocs", DataRoot(spec.data_root)), execution=ExecutionConfig(engine="inline"))
"""


class SlowStagingStage(StagingStage):
    """Staging as it is, with time between shards so that the test can kill it mid-way."""

    def run_shard(self, task, out):
        result = super().run_shard(task, out)
        time.sleep(0.15)
        return result


@pytest.mark.slow
def test_staging_killed_mid_way_resumes_from_its_finished_shards(tmp_path):
    spec = load_spec(EXAMPLE_SPEC, data_root=tmp_path / "crashed")
    root = DataRoot(spec.data_root)
    stage = StagingStage(spec, "techdocs", root)
    n_tasks = len(stage.plan())
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(EXAMPLE_SPEC), str(root.root)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    done_dir = stage.work_dir / "done"
    deadline = time.monotonic() + 120
    while not (done_dir.exists() and len(list(done_dir.glob("*.json"))) >= 10):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not root.domain_dir("documents", "techdocs").exists()  # nothing that looks complete
    finished = {p.stem for p in done_dir.glob("*.json")}
    assert 10 <= len(finished) < n_tasks
    inodes = {k: (shard_dir(stage, k) / "data.parquet").stat().st_ino for k in finished}

    seen = []
    stage_domain(spec, "techdocs", root=root, execution=LOCAL_2, progress=seen.append)
    assert seen[0] == f"documents: reusing {len(finished)} finished shard(s) of {n_tasks}"
    assert len(seen) == 1 + n_tasks - len(finished)
    data = root.domain_dir("documents", "techdocs") / "data"
    # the reused shards' files are the very files written before the kill (hard-linked, not rewritten)
    assert all((data / f"{k}.parquet").stat().st_ino == inodes[k] for k in finished)

    clean = load_spec(EXAMPLE_SPEC, data_root=tmp_path / "clean")
    stage_domain(clean, "techdocs", execution=INLINE)
    assert tree(root.domain_dir("documents", "techdocs")) == tree(DataRoot(clean.data_root).domain_dir("documents", "techdocs"))


def test_adapter_turns_a_stage_outcome_into_dagster_events():
    import dagster as dg

    from assets.adapter import materialize
    from pipeline.engine.outcome import CheckOutcome, Markdown, StageOutcome, Table

    outcome = StageOutcome(
        metadata={"rows": 3, "share": 0.5, "ok": True, "by_reason": {"too_large": 1}, "path": Path("/x"),
                  "note": Markdown("**b**"), "preview": Table([{"a": 1}])},
        data_version="abc",
        checks=[CheckOutcome("accounting", passed=False, metadata={"problems": "p"}),
                CheckOutcome("sizes", passed=True, severity="warn")])
    result, failed, warned = list(materialize(outcome))
    assert isinstance(result, dg.MaterializeResult) and result.data_version == dg.DataVersion("abc")
    md = result.metadata
    assert md["rows"] == dg.MetadataValue.int(3) and md["share"] == dg.MetadataValue.float(0.5)
    assert md["ok"] == dg.MetadataValue.bool(True) and md["by_reason"] == dg.MetadataValue.json({"too_large": 1})
    assert md["path"] == dg.MetadataValue.path("/x") and md["note"] == dg.MetadataValue.md("**b**")
    assert "| a |" in md["preview"].value
    assert (failed.check_name, failed.passed, failed.severity) == ("accounting", False, dg.AssetCheckSeverity.ERROR)
    assert (warned.check_name, warned.passed, warned.severity) == ("sizes", True, dg.AssetCheckSeverity.WARN)


def test_token_bins_shard_parquet_parts_by_row_groups_with_the_same_bytes(tmp_path, monkeypatch):
    """One staged part of many row groups (as pruning writes a domain) is split into several shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import proxies.bins as bins
    from proxies.tokenizer import train_tokenizer

    texts = [f"document {i}: " + " ".join(f"word{(i * 7 + j) % 50}" for j in range(5 + i % 9)) for i in range(40)]
    root = DataRoot(tmp_path / "data")
    part = root.domain_dir("documents", "web") / "data" / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": [f"{i:032x}" for i in range(40)], "text": texts}), part, row_group_size=6)
    tokenizer = train_tokenizer(texts, vocab_size=300)
    kw = dict(tokenizer=tokenizer, tokenizer_sha256="t", validation_fraction=0.2, seed=3, max_train_tokens=400)
    bins.build_bins(root, "documents", ["web"], tmp_path / "one", execution=INLINE, **kw)
    monkeypatch.setattr(bins, "SHARD_BYTES", 1)
    stage = bins.TokenBinsStage(root=root, stage="documents", domains=["web"], out_dir=tmp_path / "x",
                                tokenizer_json="", tokenizer_sha256="t", validation_fraction=0.2, seed=3)
    assert [t.settings["row_groups"] for t in stage.plan()] == [[g] for g in range(7)]
    bins.build_bins(root, "documents", ["web"], tmp_path / "seven", execution=LOCAL_2, **kw)
    assert tree(tmp_path / "one") == tree(tmp_path / "seven") and len(tree(tmp_path / "one")) == 4
