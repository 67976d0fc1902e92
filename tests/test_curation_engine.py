"""Curation on the stage contract: the same bytes under every engine and worker count, shard boundaries that
change nothing but the parts, and a run that failed mid-way resumes from its finished shards."""

from __future__ import annotations

import json
import random
import shutil

import polars as pl
import pytest

import pipeline.curation.shards as shards
from pipeline.config.execution import ExecutionConfig
from pipeline.curation.keys import KeysStage
from pipeline.curation.run import STAGE, check_accounting, curate
from pipeline.curation.write import WriteStage
from pipeline.spec import spec_from_dict
from pipeline.staging import stage_domain
from pipeline.store import DataRoot
from tests.test_curation import _prose, _word
from tests.test_engine import tree

INLINE = ExecutionConfig(engine="inline")
LOCAL_1 = ExecutionConfig(engine="local", workers=1, min_bytes_per_worker=0)
LOCAL_2 = ExecutionConfig(engine="local", workers=2, min_bytes_per_worker=0)


def _near_copy(text: str) -> str:
    words = text.split(" ")
    for i in range(0, len(words), 40):
        words[i] = "changed"
    return " ".join(words)


def _staged(tmp_path):
    """Three domains, two files per prose source, exact and near copies inside a file, across files and across
    domains, a document the filters drop; staged in row groups of 3 documents."""
    rng = random.Random(12)
    base = [_prose(rng, 150) for _ in range(16)]
    files = {
        "a1": base[:6] + [base[0]],                                           # exact copy in the same file
        "a2": base[6:10] + [_near_copy(base[1])],                             # near copy across files
        "b1": base[10:13] + ["  " + base[2].upper().replace(" ", "   ") + "\n"],  # normalized copy across domains
        "b2": base[13:] + [_near_copy(base[11]), "too short", _near_copy(base[4])],
        "go": ["package main\n\nfunc main() {\n" + "".join(f"\t{_word(rng)} := {_word(rng)}({j})\n" for j in range(12))
               + "}\n" for _ in range(4)],
    }
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, texts in files.items():
        (raw / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    spec = spec_from_dict({
        "name": "t", "seed": 3, "data_root": str(tmp_path / "staged"), "staging": {"batch_rows": 3},
        "sources": [{"name": "a", "path": "raw/a*.jsonl", "domain": "web"},
                    {"name": "b", "path": "raw/b*.jsonl", "domain": "books"},
                    {"name": "go", "path": "raw/go.jsonl", "domain": "code"}],
    }, path=tmp_path / "spec.yaml")
    for domain in spec.domains:
        stage_domain(spec, domain, execution=INLINE)
    return spec


def _copy(spec, tmp_path, name: str) -> DataRoot:
    root = DataRoot(tmp_path / name)
    shutil.copytree(DataRoot(spec.data_root).stage_dir("documents"), root.stage_dir("documents"))
    return root


def test_curation_is_byte_identical_under_every_engine_and_shard_size(tmp_path, monkeypatch):
    spec = _staged(tmp_path)
    one_run = _copy(spec, tmp_path, "one-run-per-domain")
    reports = curate(spec, root=one_run, execution=INLINE)
    assert reports["books"].drops == {"exact_duplicate": 1, "gopher_quality": 1, "near_duplicate": 2}
    assert reports["web"].drops == {"exact_duplicate": 1, "near_duplicate": 1}

    monkeypatch.setattr(shards, "RUN_BYTES", 1)  # a shard per staged row group
    trees = {}
    for name, execution in [("inline", INLINE), ("local-1", LOCAL_1), ("local-2", LOCAL_2)]:
        root = _copy(spec, tmp_path, name)
        curate(spec, root=root, execution=execution)
        assert all(c["ok"] for c in check_accounting(root, spec.domains).values())
        trees[name] = tree(root.stage_dir(STAGE))
    assert trees["inline"] == trees["local-1"] == trees["local-2"]
    assert sum(k.startswith("domain=web/data/part-") for k in trees["inline"]) == 4  # 12 web documents, 3 a row group
    assert not any(p.name.startswith(".work") for p in root.stage_dir(STAGE).iterdir())

    # Finer shards change the parts, not the documents, their order or the rejects.
    fine = DataRoot(tmp_path / "inline")
    for domain in spec.domains:
        assert fine.scan(STAGE, [domain]).collect()["doc_id"].to_list() == \
            one_run.scan(STAGE, [domain]).collect()["doc_id"].to_list()
        assert fine.scan_rejects(STAGE, [domain]).collect().sort("doc_id", "reason").to_dicts() == \
            one_run.scan_rejects(STAGE, [domain]).collect().sort("doc_id", "reason").to_dicts()
        assert fine.read_stats(STAGE, domain) == one_run.read_stats(STAGE, domain)
    near = fine.scan_rejects(STAGE).filter(pl.col("reason") == "near_duplicate").collect()
    survivors = set(fine.scan(STAGE).collect()["doc_id"].to_list())
    assert near.height == 3 and set(near["duplicate_of"].to_list()) <= survivors


def test_curation_failed_mid_way_resumes_from_its_finished_shards(tmp_path, monkeypatch):
    spec = _staged(tmp_path)
    monkeypatch.setattr(shards, "RUN_BYTES", 1)
    clean = _copy(spec, tmp_path, "clean")
    curate(spec, root=clean, execution=INLINE)
    root = _copy(spec, tmp_path, "crashed")

    class Crash(Exception):
        pass

    def crash_on_third(stage_class):
        original, done = stage_class.run_shard, []

        def run_shard(self, task, out):
            if len(done) == 2:
                raise Crash(task.key)
            done.append(task.key)
            return original(self, task, out)
        monkeypatch.setattr(stage_class, "run_shard", run_shard)
        return original

    original = crash_on_third(KeysStage)
    with pytest.raises(Crash):
        curate(spec, root=root, execution=INLINE)
    monkeypatch.setattr(KeysStage, "run_shard", original)
    original = crash_on_third(WriteStage)
    seen: list[str] = []
    with pytest.raises(Crash):
        curate(spec, root=root, execution=INLINE, progress=seen.append)
    n = len(shards.plan_runs(root, spec.domains, {"a": 0, "b": 1, "go": 2}))
    assert f"curation-keys: reusing 2 finished shard(s) of {n}" in seen
    assert root.domains(STAGE) == []  # nothing that looks complete
    monkeypatch.setattr(WriteStage, "run_shard", original)
    seen.clear()
    curate(spec, root=root, execution=LOCAL_2, progress=seen.append)
    assert "curation: reusing the finished global dedup step" in seen
    assert f"curation-write: reusing 2 finished shard(s) of {n}" in seen
    assert sum(m.startswith("curation-write: shard ") for m in seen) == n - 2
    assert tree(root.stage_dir(STAGE)) == tree(clean.stage_dir(STAGE))
