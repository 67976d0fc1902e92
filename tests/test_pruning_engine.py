"""Embeddings, concept clusters, difficulty scores and pruning on the stage contract: the same bytes under
`inline`, `local` with 1 and 2 workers (and `ray` on a real cluster this file starts), and a worker state
(a model, a fitted embedder) loaded once per worker process."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config.execution import ExecutionConfig
from pipeline.engine import ShardTask, run_stage
from pipeline.pruning import INPUT_STAGE, STAGE
from pipeline.pruning import clusters as clusters_module
from pipeline.pruning import embed as embed_module
from pipeline.pruning import run as run_module
from pipeline.pruning.clusters import cluster_stage
from pipeline.pruning.embed import embed_stage
from pipeline.pruning.run import prune_stage
from pipeline.store import DataRoot
from proxies import scoring as scoring_module
from proxies.model import PopulationLM
from proxies.scoring import ScoreBudget, score_stage
from proxies.tokenizer import train_tokenizer
from tests.test_pruning_stage import _with_method, curated  # noqa: F401 (fixture)
from tests.test_proxies import TINY_MODEL

from tests.test_engine import INLINE, LOCAL_1, LOCAL_2, tree


# ------------------------------------------------------------------------------------ the load-once hook

@dataclass
class CountingStage:
    """A toy stage whose worker state records each time it is built (one file per load)."""

    folder: Path
    name: str = "counting"
    version: str = "1"

    @property
    def work_dir(self) -> Path:
        return self.folder / ".work"

    def plan(self) -> list[ShardTask]:
        return [ShardTask(key=f"s{i}", inputs=(), settings={"i": i}, seed=i) for i in range(6)]

    def load_worker_state(self) -> dict:
        (self.folder / "loads").mkdir(exist_ok=True)
        (self.folder / "loads" / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        return {"pid": os.getpid()}

    def run_shard(self, task: ShardTask, out: Path, state: dict) -> dict:
        (out / "value.txt").write_text(str(task.settings["i"] ** 2))
        return {"pid": os.getpid(), "state_pid": state["pid"]}

    def finish(self, results: list[dict]) -> list[dict]:
        return results


def loads(stage: CountingStage) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (stage.folder / "loads").iterdir())


@pytest.mark.parametrize("execution", [INLINE, LOCAL_2], ids=["inline", "local-2"])
def test_worker_state_is_loaded_once_per_worker_process(tmp_path, execution):
    stage = CountingStage(tmp_path)
    results = run_stage(stage, execution=execution)
    pids = {r["pid"] for r in results}
    # every shard got the state its own process loaded, and each process loaded it once
    assert all(r["state_pid"] == r["pid"] for r in results)
    assert loads(stage) == sorted(str(p) for p in pids)
    if execution is INLINE:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and len(pids) <= 2


# ------------------------------------------------------------------------------- the four stages' bytes

def small_row_groups(root: DataRoot) -> None:
    """Rewrite the curated parts with 16-document row groups, so that every stage plans several shards."""
    for path in root.data_files(INPUT_STAGE):
        table = pq.read_table(path)
        pq.write_table(table, path, row_group_size=16)


def run_pruning_stages(spec, root: DataRoot, execution: ExecutionConfig, model: PopulationLM, tokenizer) -> None:
    embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE,
                execution=execution)
    cluster_stage(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"), execution=execution)
    score_stage(root, INPUT_STAGE, root.domains(INPUT_STAGE), model=model, tokenizer=tokenizer, bos=0,
                out=root.layout.difficulty_scores_file, budget=ScoreBudget(24, "windows", seed=5), batch_docs=8,
                execution=execution)
    prune_stage(spec, root=root, execution=execution)


@pytest.fixture
def small_shards(monkeypatch):
    # Shard boundaries are decided in the driver's plan(): one shard per row group.
    for module in (embed_module, clusters_module, run_module, scoring_module):
        monkeypatch.setattr(module, "SHARD_BYTES", 1)


def engine_roots(curated_root: DataRoot, tmp_path: Path, names: list[str]) -> dict[str, DataRoot]:
    roots = {}
    for name in names:
        root = DataRoot(tmp_path / f"engine-{name}")
        shutil.copytree(curated_root.stage_dir(INPUT_STAGE), root.stage_dir(INPUT_STAGE))
        roots[name] = root
    return roots


def proxy_and_tokenizer(root: DataRoot):
    texts = root.scan(INPUT_STAGE).select("text").collect()["text"].to_list()
    torch.manual_seed(0)
    model = PopulationLM(TINY_MODEL, 600, n_members=1)
    model.init_members([3])
    return model, train_tokenizer(texts, vocab_size=600, min_frequency=2)


OUTPUTS = ["embeddings", "concept_clusters", "difficulty_scores", STAGE]


@pytest.mark.slow
def test_pruning_stages_are_byte_identical_under_inline_and_local_workers(curated, tmp_path, small_shards):
    spec_path, _, base = curated
    spec = _with_method(spec_path, method="seta", embedding={"dim": 16, "fit_sample": 1000, "batch_size": 16})
    small_row_groups(base)
    model, tokenizer = proxy_and_tokenizer(base)
    roots = engine_roots(base, tmp_path, ["inline", "local-1", "local-2"])
    for name, execution in zip(roots, [INLINE, LOCAL_1, LOCAL_2]):
        run_pruning_stages(spec, roots[name], execution, model, tokenizer)
    reference = {key: tree(roots["inline"].root / key) for key in OUTPUTS}
    assert pq.ParquetFile(roots["inline"].layout.embeddings_file).num_row_groups > 6  # several shards each
    for name in ("local-1", "local-2"):
        for key in OUTPUTS:
            assert tree(roots[name].root / key) == reference[key], (name, key)
    pruned = roots["inline"]
    assert pruned.scan_rejects(STAGE).collect()["reason"].unique().to_list() == ["seta"]
    assert not any(p.name.startswith(".") and p.name.endswith(".work") for p in pruned.root.iterdir())


def test_pruned_parts_have_row_groups_bounded_by_bytes(curated, tmp_path, monkeypatch):
    """The parts pruning writes are cut into row groups by bytes (not by a document count), so that the next stage's
    reader, which holds one row group at a time, holds a bounded amount whatever the documents' lengths."""
    from pipeline.engine import parts

    spec_path, spec, root = curated
    embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE)
    cluster_stage(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"))
    monkeypatch.setattr(parts, "ROW_GROUP_BYTES", 2048)
    prune_stage(spec, root=root, execution=INLINE)
    for path in root.data_files(STAGE):
        part = pq.ParquetFile(path)
        # ~33 kept documents of a few hundred bytes: several row groups; one closes at the first piece that reaches
        # the bound, and pieces are cut to the bound: at most twice the bound each
        text_bytes = [sum(part.read_row_group(g, columns=["n_bytes"]).column(0).to_pylist())
                      for g in range(part.num_row_groups)]
        assert part.num_row_groups >= 3 and max(text_bytes) <= 2 * 2048, text_bytes
    assert root.scan(STAGE).collect().height + root.scan_rejects(STAGE).collect().height == \
        root.scan(INPUT_STAGE).collect().height
