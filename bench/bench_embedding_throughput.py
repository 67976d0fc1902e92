"""Embedding throughput on 2 CPU cores: all-MiniLM-L6-v2 (``minilm``) next to hashed TF-IDF + SVD (``hashing``).

The same curated pool (``DOCS`` documents sampled evenly from six ../shared/corpora files, full texts; the
embedder reads the first 8,000 characters, MiniLM's tokenizer then keeps 256 word pieces) is embedded by
curamix's ``embed_stage`` in a fresh child process per embedder, one after the other, so each side has the same
two cores (torch: 2 threads). Reported per side: documents/s of the whole stage (fit + transform + writing),
wall and CPU seconds, and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._measure import emit, python_env, run_measured, self_peak_rss_mib

FILES = ["dialogue_sgd.jsonl.gz", "math_gsm8k_train.jsonl", "science_scitldr_abstracts.jsonl.zst",
         "web_movie_reviews.jsonl.zst", "law_spdx_license_texts.jsonl.zst", "code_go_stdlib.parquet"]
DOCS = 300
KINDS = ["hashing-svd", "minilm"]


def prepare(folder: Path, docs: int) -> Path:
    """Stage the files and write a seeded sample of ``docs`` documents (even per domain) as the curated pool."""
    from bench.corpus import write_spec
    from pipeline.pruning import INPUT_STAGE
    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain
    from pipeline.store import DataRoot

    spec_path = write_spec(folder, "bench_embedding_throughput", FILES)
    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    per = docs // len(spec.domains)
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        frame = root.scan("documents", [domain]).collect()
        frame = frame[np.random.default_rng(0).permutation(frame.height)[:per]]
        out = root.domain_dir(INPUT_STAGE, domain) / "data"
        out.mkdir(parents=True)
        frame.write_parquet(out / "part-00000.parquet")
    return spec_path


def child(spec_path: Path, kind: str) -> dict:
    import torch

    from pipeline.config.pruning import EmbeddingConfig
    from pipeline.pruning import INPUT_STAGE
    from pipeline.pruning.embed import embed_stage
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    torch.set_num_threads(2)
    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    baseline = self_peak_rss_mib()
    t = time.perf_counter()
    info = embed_stage(root, EmbeddingConfig(kind=kind), seed=1, input_stage=INPUT_STAGE)
    seconds = time.perf_counter() - t
    return {"kind": kind, "docs": info.n_docs, "dim": info.dim, "seconds": round(seconds, 2),
            "docs_per_s": round(info.n_docs / seconds, 1), "baseline_rss_mib": baseline}


def run(quick: bool = False) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_embedding_throughput_"))
    try:
        spec_path = prepare(work, 300 if quick else DOCS)
        env = python_env(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2",
                         HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        me = [sys.executable, "-m", "bench.bench_embedding_throughput", "--spec", str(spec_path), "--child"]
        sides = {kind: run_measured(me + [kind], env=env) for kind in KINDS}
        h, m = sides["hashing-svd"], sides["minilm"]
        return {"workload": {"files": FILES, "docs": h["docs"]}, "sides": sides,
                "minilm_vs_hashing": {"docs_per_s_ratio": round(m["docs_per_s"] / h["docs_per_s"], 3),
                                      "peak_rss_ratio": round(m["peak_rss_mib"] / h["peak_rss_mib"], 3)},
                "machine_note": "2-core machine shared with other jobs while this ran"}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(f: dict) -> str:
    s = f["sides"]
    parts = [f"{k}: {v['docs_per_s']} docs/s wall, {v['docs'] / v['process_cpu_s']:.1f} docs per CPU second "
             f"({v['process_cpu_s']} CPU s), peak RSS {v['peak_rss_mib']} MiB" for k, v in s.items()]
    r = f["minilm_vs_hashing"]
    cpu = s["minilm"]["process_cpu_s"] / s["hashing-svd"]["process_cpu_s"]
    return (f"Embedding {f['workload']['docs']} documents on 2 cores with embed_stage: " + "; ".join(parts)
            + f". MiniLM needs {cpu:.1f}x hashing's CPU time per document ({r['docs_per_s_ratio']}x its wall "
            f"documents/s on the loaded machine) and {r['peak_rss_ratio']}x its peak memory.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.child:
        emit(child(args.spec, args.child))
    else:
        print(run(quick=args.quick))
