"""Pruning benchmark: embedding + concept clustering + DBP on all of ../shared/corpora.

Workload: the 16 raw files of ``../shared/corpora/raw`` staged with curamix (domains from
SOURCES.json's "suggested_domain"), copied unchanged into the "curated" layout (so the figure does
not depend on curation's filters), then, in a fresh child process each:

- **pipeline**: ``embed_stage`` (hashing -> TF-IDF -> SVD to 128 dims, first 8000 chars of each
  document), ``cluster_stage`` (spherical k-means, k = 100), ``prune_stage`` with DBP to 50% (per
  domain) including writing the pruned Parquet and rejects. Docs/s per step and overall; peak RSS
  of the whole child (``ru_maxrss``, see bench/_measure).
- **clustering**: our torch spherical k-means vs scikit-learn ``KMeans`` (Euclidean Lloyd on unit
  vectors, centroids normalized after) vs ``MiniBatchKMeans``, k = 100, on (a) the real embeddings
  and (b) 300,000 vectors made from them (each real vector plus small Gaussian noise, renormalized),
  to check the "hundreds of thousands of documents" claim. Quality = mean cosine to the own
  (normalized) centroid after cosine re-assignment, higher is better.

All on the CPU here, one thread per child (2 shared cores); the torch backend uses a GPU when present.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.corpus import write_spec
from bench._measure import emit, python_env, run_measured, self_peak_rss_mib

REPO = Path(__file__).resolve().parent.parent


def _write_spec(folder: Path, files: list[str] | None = None) -> Path:
    return write_spec(folder, "bench_pruning", files,
                      pruning={"method": "dbp", "target_fraction": 0.5, "clusters": {"k": 100}})


def prepare(folder: Path, files: list[str] | None = None) -> Path:
    """Stage the corpora and copy them into the curated layout (untimed)."""
    from pipeline.pruning import INPUT_STAGE
    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain
    from pipeline.store import DataRoot

    spec_path = _write_spec(folder, files)
    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        shutil.copytree(root.domain_dir("documents", domain), root.domain_dir(INPUT_STAGE, domain))
    return spec_path


def child_pipeline(spec_path: Path) -> dict:
    from pipeline.pruning import INPUT_STAGE
    from pipeline.pruning.clusters import cluster_stage
    from pipeline.pruning.embed import embed_stage
    from pipeline.pruning.run import prune_stage
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    baseline = self_peak_rss_mib()
    n_docs = root.scan(INPUT_STAGE).select("doc_id").collect().height
    text_mb = root.scan(INPUT_STAGE).select("n_bytes").sum().collect().item() / 1e6
    t0 = time.perf_counter()
    info = embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage=INPUT_STAGE)
    t1 = time.perf_counter()
    _, summary = cluster_stage(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"))
    t2 = time.perf_counter()
    result = prune_stage(spec, root=root)
    t3 = time.perf_counter()
    return {
        "docs": n_docs, "text_mb": round(text_mb, 1), "dim": info.dim, "k": summary["k"],
        "embed_s": round(t1 - t0, 2), "cluster_s": round(t2 - t1, 2), "dbp_s": round(t3 - t2, 2),
        "total_s": round(t3 - t0, 2),
        "embed_docs_per_s": round(n_docs / (t1 - t0), 1), "cluster_docs_per_s": round(n_docs / (t2 - t1), 1),
        "dbp_docs_per_s": round(n_docs / (t3 - t2), 1), "overall_docs_per_s": round(n_docs / (t3 - t0), 1),
        "kmeans_iterations": summary["iterations"], "mean_cos_to_centroid": summary["mean_cos_to_centroid"],
        "rows_kept": result.rows_kept, "baseline_rss_mib": baseline,
    }


def child_clustering(spec_path: Path, scale: int) -> dict:
    import numpy as np

    from pipeline.pruning.clusters import sklearn_kmeans, spherical_kmeans
    from pipeline.pruning.embed import l2_normalize, load_embeddings
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    spec = load_spec(spec_path)
    _, _, x = load_embeddings(DataRoot(spec.data_root))
    if scale > len(x):
        rng = np.random.default_rng(0)
        base = x[rng.integers(0, len(x), size=scale)]
        x = l2_normalize(base + 0.05 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(x.shape[1]))
    out = {"n": int(len(x)), "dim": int(x.shape[1]), "k": 100}
    for name, fn in (("spherical_torch", spherical_kmeans), ("sklearn_kmeans", sklearn_kmeans),
                     ("sklearn_minibatch", _minibatch)):
        started = time.perf_counter()
        res = fn(x, 100, seed=0, max_iter=50)
        out[name] = {"seconds": round(time.perf_counter() - started, 2), "mean_cos": round(res.objective, 5),
                     "iterations": res.iterations}
    return out


def _minibatch(x, k, *, seed, max_iter):
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans

    from pipeline.pruning.clusters import ClusterResult
    from pipeline.pruning.embed import l2_normalize

    started = time.perf_counter()
    model = MiniBatchKMeans(n_clusters=k, batch_size=4096, max_iter=max_iter, n_init=1, random_state=seed).fit(x)
    c = l2_normalize(model.cluster_centers_)
    sims = x @ c.T
    labels = sims.argmax(axis=1)
    return ClusterResult(labels=labels, centroids=c, distance=1 - sims[np.arange(len(x)), labels],
                         iterations=int(model.n_iter_), seconds=time.perf_counter() - started)


def run(quick: bool = False) -> dict:
    files = ["math_gsm8k_train.jsonl", "web_movie_reviews.jsonl.zst", "science_scitldr_abstracts.jsonl.zst"] if quick else None
    work = Path(tempfile.mkdtemp(prefix="bench_pruning_"))
    try:
        spec_path = prepare(work, files)
        # One thread per child: on this shared machine two threads oversubscribe (measured 12x slower
        # per torch step); every side gets the same single core.
        env = python_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        me = [sys.executable, "-m", "bench.bench_pruning", "--spec", str(spec_path)]
        pipeline = run_measured(me + ["--child", "pipeline"], env=env)
        clustering = {}
        for scale in ((0,) if quick else (0, 300_000)):
            clustering[str(scale or "real")] = run_measured(me + ["--child", "clustering", "--scale", str(scale)], env=env)
        return {"workload": "all 16 files of ../shared/corpora/raw" if not quick else f"quick: {files}",
                "pipeline": pipeline, "clustering": clustering}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(f: dict) -> str:
    p = f["pipeline"]
    lines = [f"Embedding + clustering + DBP on {p['docs']} documents ({p['text_mb']} MB of text): "
             f"{p['overall_docs_per_s']} docs/s overall (embed {p['embed_docs_per_s']}, k-means k={p['k']} "
             f"{p['cluster_docs_per_s']}, DBP incl. writing {p['dbp_docs_per_s']} docs/s), peak RSS "
             f"{p['peak_rss_mib']} MiB."]
    for scale, c in f["clustering"].items():
        parts = [f"{name} {c[name]['seconds']} s (mean cos {c[name]['mean_cos']})"
                 for name in ("spherical_torch", "sklearn_kmeans", "sklearn_minibatch")]
        lines.append(f"Clustering {c['n']} x {c['dim']}, k={c['k']}: " + "; ".join(parts) + ".")
    return " ".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["pipeline", "clustering"], required=True)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=0)
    args = parser.parse_args()
    emit(child_pipeline(args.spec) if args.child == "pipeline" else child_clustering(args.spec, args.scale))
