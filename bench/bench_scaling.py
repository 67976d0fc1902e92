"""Scaling: the data stages on 1x, 2x and 4x corpora of distinct documents, and `local` vs `inline` on 2 cores.

Corpora. The base (1x) is a seeded subsample of every file of ../shared/corpora (``BASE_FRACTION`` of the
documents, so that all sizes finish in minutes on a 2-core machine). Copy 0 is the base as it is;
copies 1, 2, ... are the same documents with a deterministic word-level perturbation: within every line,
about a third of the adjacent word pairs are swapped, at positions chosen by a hash of (copy, line, pair).
Every copy keeps each document's words, their lengths, lines and stop words, so the quality filters judge a
copy as they judge its original; but about 80% of its 5-word shingles are new, so neither exact dedup nor
MinHash-LSH sees copies as duplicates of each other, while documents that were duplicates in the base
stay duplicates in every copy (the same positions are swapped). Nx = copies 0..N-1. Each (source, copy) is
written as ``PARTS`` JSONL files, as a sharded raw corpus would come.

Growth (1x, 2x, 4x; the spec's defaults, engine `local`; the three pruning-side steps at 1x and 4x only): documents, curated_documents, tokenizer, embeddings,
concept_clusters, difficulty_scores (these three with ``pruning.method: seta``: they are skipped when pruning is
off, and the scores when SeTa does not read them; the reference proxy, 1 layer of width 64 trained 10 steps,
first, unmeasured),
pruned_documents (method "none": a pass-through, so token bins read every curated document), token_bins and
the training set's tokenization (its per-domain token caches). embeddings, concept_clusters and
difficulty_scores are materialized through Dagster (their figures include Dagster's start-up in that process,
~3 s of CPU and ~150 MiB); the others are library calls. Per step, each in its own process: CPU seconds (user +
system of the process and its workers: the forkserver that forks the workers is stopped and waited for before
the process exits, so that the workers' CPU and peak memory are counted), wall seconds, peak RSS (the largest of
the process and its workers), rows in and out, and the workers the engine started; growth ratios 4x/1x.

Speedup (``SPEEDUP_COPIES``x; 8x = ~95 MiB of raw JSONL): documents, curated_documents, token_bins and the
training set's tokenization, each with `inline` and with `local` (2 workers on 2 cores), outputs compared byte
for byte. Token bins and the training set also run `inline` with one tokenizer thread
(``RAYON_NUM_THREADS=1``: inline tokenizes on every core by itself), and staging also runs on a corpus 4x as
large (4x the base fraction), where its fixed start weighs less. Bench setting: ``execution.min_bytes_per_worker`` is lowered to ``SPEEDUP_MIN_BYTES_PER_WORKER`` (1 MiB)
for this part, because staging runs one stage per domain and most domains of the corpus are below the default
16 MiB, below which the engine starts no worker (it then runs in-process, and `local` would equal `inline`). The
speedup is the ratio of the stage's own wall time (from the call to its return, in a process that has imported
curamix: as in a Dagster step) and, for reference, of the whole process's wall time. The machine may be shared:
compare ratios within one run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._measure import emit, python_env, run_measured
from bench.corpus import source_entries

BASE_FRACTION = 0.06
QUICK_FRACTION = 0.03  # the smallest at which every source keeps a document at 1x
PARTS = 4
SIZES = (1, 2, 4)
GROWTH_ENDS = (1, 4)  # the sizes every step is measured at (the growth ratios' ends)
SPEEDUP_COPIES = 8
QUICK_SPEEDUP_COPIES = 4
SPEEDUP_MIN_BYTES_PER_WORKER = 1 << 20
# In the order they run (each reads what the ones before wrote).
STEPS = ["documents", "curated_documents", "tokenizer", "embeddings", "concept_clusters", "reference_proxy",
         "difficulty_scores", "pruned_documents", "token_bins", "training_set"]
UNMEASURED = {"reference_proxy"}  # upstream of difficulty_scores; a fixed number of training steps
DAGSTER_STEPS = {"embeddings", "concept_clusters", "reference_proxy", "difficulty_scores"}
SPEEDUP_STEPS = ["documents", "curated_documents", "token_bins", "training_set"]
TOKENIZING = {"token_bins", "training_set"}  # their inline run is also measured with one tokenizer thread
# step -> output compared across engines (a folder under the data root, or the bench's token-cache folder)
OUTPUTS = {"documents": "documents", "curated_documents": "curated", "token_bins": "token_bins",
           "training_set": "../tokcache"}
# A small reference proxy: difficulty_scores' cost is per document through the model; training it is upstream.
SECTIONS = {"tokenizer": {"vocab_size": 2048}, "pruning": {"method": "none"},
            "proxies": {"reference_steps": 10, "model": {"n_layers": 1, "d_model": 64, "n_heads": 2, "d_ff": 128}}}
# embeddings, concept_clusters and difficulty_scores are computed only when pruning is active and (the scores) when
# SeTa reads them: their spec differs from the others only there (the others prune with method "none").
ACTIVE = {"pruning": {"method": "seta"}}
ACTIVE_STEPS = {"embeddings", "concept_clusters", "reference_proxy", "difficulty_scores"}


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def perturb(text: str, copy: int) -> str:
    """Copy ``copy`` of a document (0: the document itself): a third of adjacent word pairs swapped per line."""
    if copy == 0:
        return text
    lines = text.split("\n")
    for li, line in enumerate(lines):
        words = line.split(" ")
        for j in range(0, len(words) - 1, 2):
            if words[j] and words[j + 1] and _hash(copy, li, j) % 3 == 0:
                words[j], words[j + 1] = words[j + 1], words[j]
        lines[li] = " ".join(words)
    return "\n".join(lines)


def build_corpora(folder: Path, *, fraction: float, sizes: tuple[int, ...]) -> dict[int, Path]:
    """Write the raw files of all copies once and one spec per size; returns {size: spec path}."""
    from pipeline.config.staging import SourceConfig
    from pipeline.readers import read_source_file

    import yaml

    raw = folder / "raw"
    sources = []
    for entry in source_entries():
        source = SourceConfig(**{k: v for k, v in entry.items() if k != "path"}, path=entry["path"])
        texts = [r.text for r in read_source_file(source, Path(entry["path"]))
                 if r.text and not r.text.isspace() and _hash("base", r.text) % 10_000 < fraction * 10_000]
        for copy in range(max(sizes)):
            out = raw / source.name
            out.mkdir(parents=True, exist_ok=True)
            handles = [open(out / f"c{copy}-p{p}.jsonl", "w", encoding="utf-8") for p in range(PARTS)]
            for i, text in enumerate(texts):
                handles[i % PARTS].write(json.dumps({"text": perturb(text, copy)}) + "\n")
            for h in handles:
                h.close()
        sources.append({"name": source.name, "domain": source.domain})
    specs = {}
    for size in sizes:
        assert size <= 10, "copies are matched by one digit"
        spec = {"name": f"scaling-{size}x", "seed": 0, "data_root": f"data-{size}x",
                "sources": [{**s, "path": f"raw/{s['name']}/c[0-{size - 1}]-p*.jsonl", "format": "jsonl"} for s in sources],
                **SECTIONS}
        specs[size] = folder / f"spec-{size}x.yaml"
        specs[size].write_text(yaml.safe_dump(spec, sort_keys=False))
        (folder / f"spec-{size}x-active.yaml").write_text(yaml.safe_dump({**spec, **ACTIVE}, sort_keys=False))
    return specs


def _materialize(spec_path: str, asset: str) -> None:
    """One asset through Dagster (its upstream already on disk), in this process."""
    import dagster as dg

    from assets.definitions import build_definitions

    job = build_definitions(spec_path).resolve_implicit_global_asset_job_def()
    job.execute_in_process(asset_selection=[dg.AssetKey(asset)], instance=dg.DagsterInstance.ephemeral(),
                           raise_on_error=True)


def _library_step(step: str, spec, root, execution, spec_path: str) -> dict:
    count = lambda stage: root.scan(stage).select("doc_id").collect().height  # noqa: E731
    if step == "documents":
        from pipeline.staging import stage_domain

        stats = [stage_domain(spec, d, root=root, execution=execution) for d in spec.domains]
        return {"rows_in": sum(s.rows_read for s in stats), "rows_out": sum(s.rows_kept for s in stats)}
    if step == "curated_documents":
        from pipeline.curation.run import curate

        curate(spec, root=root, execution=execution)
        return {"rows_in": count("documents"), "rows_out": count("curated")}
    if step == "tokenizer":
        from proxies.tokenizer import sample_training_texts, save_tokenizer, train_tokenizer

        cfg = spec.tokenizer
        texts = sample_training_texts(root, "curated", spec.domains, max_bytes=cfg.max_training_bytes,
                                      seed=spec.seed_for("tokenizer"))
        save_tokenizer(train_tokenizer(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency),
                       root.layout.tokenizer_json)
        return {"rows_in": count("curated"), "rows_out": 1}
    if step in DAGSTER_STEPS:
        _materialize(spec_path, step)
        rows = count("curated")
        return {"rows_in": rows, "rows_out": rows}
    if step == "pruned_documents":
        from pipeline.pruning.run import prune_stage

        prune_stage(spec, root=root)
        return {"rows_in": count("curated"), "rows_out": count("pruned")}
    if step == "token_bins":
        from proxies.bins import build_bins
        from proxies.tokenizer import file_sha256, load_tokenizer

        path = root.layout.tokenizer_json
        cfg = spec.proxies
        meta = build_bins(root, "pruned", spec.domains, root.layout.token_bins, tokenizer=load_tokenizer(path),
                          tokenizer_sha256=file_sha256(path), validation_fraction=cfg.validation_fraction,
                          min_validation_docs=cfg.min_validation_docs, max_train_tokens=cfg.max_train_tokens_per_domain,
                          seed=spec.seed_for("token_bins"), execution=execution)
        docs = sum(v["train_docs"] + v["val_docs"] + v["train_docs_over_cap"] for v in meta["domains"].values())
        kept = sum(v["train_docs"] + v["val_docs"] for v in meta["domains"].values())
        return {"rows_in": docs, "rows_out": kept, "tokens": sum(v["train_tokens"] + v["val_tokens"] for v in meta["domains"].values())}
    if step == "training_set":
        import numpy as np

        from pipeline.emission.tokenize_stage import tokenize_domains
        from proxies.tokenizer import load_tokenizer

        out = root.root / OUTPUTS["training_set"]
        shutil.rmtree(out, ignore_errors=True)
        files = {d: root.data_files("pruned", [d]) for d in spec.domains}
        caches = tokenize_domains(files, fingerprints={d: f"bench-{d}" for d in files}, cache_root=out,
                                  tokenizer=load_tokenizer(root.layout.tokenizer_json), dtype=np.dtype("uint16"),
                                  batch_bytes=spec.output.encode_batch_bytes, execution=execution)
        return {"rows_in": count("pruned"), "rows_out": len(caches)}
    raise ValueError(f"unknown step {step!r}")


def run_step(step: str, spec_path: str, engine: str, min_bytes_per_worker: int | None = None) -> dict:
    """One asset's work, in this (measured) process; returns rows in and out, the stage's own wall time and the
    most workers the engine started for it."""
    import dataclasses

    from pipeline.engine import executors
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    spec = load_spec(spec_path)
    execution = dataclasses.replace(spec.execution, engine=engine)
    if min_bytes_per_worker is not None:
        execution = dataclasses.replace(execution, min_bytes_per_worker=min_bytes_per_worker)
    workers: list[int] = []
    counted = executors.worker_count

    def worker_count(*args, **kwargs):
        workers.append(counted(*args, **kwargs))
        return workers[-1]

    executors.worker_count = worker_count  # records what run_stage decides (1 = in this process)
    started = time.perf_counter()
    figures = _library_step(step, spec, DataRoot(spec.data_root), execution, spec_path)
    figures["stage_wall_s"] = round(time.perf_counter() - started, 3)
    figures["workers"] = max(workers) if workers and engine != "inline" else 1
    return figures


def _reap_workers() -> None:
    """Stop the forkserver (it has reaped the pool's workers) and wait for it, so that this process's rusage,
    which the measuring parent reads, includes the workers' CPU time and peak RSS."""
    from multiprocessing import forkserver

    from pipeline.engine.executors import close_pool

    close_pool()  # the engine keeps its pool between stages: its workers exit first
    server = getattr(forkserver, "_forkserver", None)
    if server is not None and getattr(server, "_forkserver_pid", None):
        server._stop()


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            digest.update(p.relative_to(folder).as_posix().encode() + hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()[:16]


def measure(step: str, spec: Path, engine: str, min_bytes_per_worker: int | None = None, **env: str) -> dict:
    argv = [sys.executable, "-m", "bench.bench_scaling", "--child", step, str(spec), engine]
    if min_bytes_per_worker is not None:
        argv.append(str(min_bytes_per_worker))
    figures = run_measured(argv, env=python_env(RAY_AUTH_MODE="disabled", **env))
    return {"cpu_s": figures["process_cpu_s"], "wall_s": figures["process_wall_s"],
            "peak_rss_mib": figures["peak_rss_mib"],
            **{k: figures[k] for k in ("stage_wall_s", "workers", "rows_in", "rows_out", "tokens") if k in figures}}


def _raw_mib(folder: Path, size: int) -> float:
    return round(sum(p.stat().st_size for p in (folder / "raw").rglob(f"c[0-{size - 1}]-*.jsonl")) / 2**20, 1)


def _growth(folder: Path, specs: dict[int, Path]) -> dict:
    sizes: dict[str, dict] = {}
    for size in SIZES:
        steps: dict[str, dict] = {}
        for step in STEPS:
            if step in ACTIVE_STEPS and size not in GROWTH_ENDS:
                continue  # the pruning-side steps at 1x and 4x only: their reference proxy is the bench's costliest part
            spec = specs[size].with_name(f"spec-{size}x-active.yaml") if step in ACTIVE_STEPS else specs[size]
            figures = measure(step, spec, "local")
            print(f"scaling {size}x {step}: {figures}", file=sys.stderr, flush=True)
            if step not in UNMEASURED:
                steps[step] = figures
        sizes[f"{size}x"] = {"raw_mib": _raw_mib(folder, size), "steps": steps}
        shutil.rmtree(folder / f"data-{size}x", ignore_errors=True)
    return sizes


def _speedup(folder: Path, spec: Path, size: int) -> dict:
    out: dict[str, dict] = {}
    root = folder / f"data-{size}x"
    for step in STEPS:
        if step in ACTIVE_STEPS:
            continue  # not upstream of the four measured here
        if step not in SPEEDUP_STEPS:
            measure(step, spec, "local")  # upstream of the next measured step, once
            continue
        local = measure(step, spec, "local", SPEEDUP_MIN_BYTES_PER_WORKER)
        digest = tree_digest(root / OUTPUTS[step])
        inline = measure(step, spec, "inline", SPEEDUP_MIN_BYTES_PER_WORKER)
        out[step] = {"local": local, "inline": inline,
                     "speedup_stage_wall": round(inline["stage_wall_s"] / max(local["stage_wall_s"], 1e-9), 2),
                     "speedup_process_wall": round(inline["wall_s"] / max(local["wall_s"], 1e-9), 2),
                     "identical_bytes_local_vs_inline": tree_digest(root / OUTPUTS[step]) == digest,
                     "inline_cores_used": round(inline["cpu_s"] / max(inline["wall_s"], 1e-9), 2)}
        if step in TOKENIZING:
            # inline already tokenizes on every core (the tokenizer's own threads): against that, 2 workers on 2
            # cores can gain only what those threads leave idle. One tokenizer thread is the one-core reference.
            one = measure(step, spec, "inline", SPEEDUP_MIN_BYTES_PER_WORKER, RAYON_NUM_THREADS="1")
            out[step] |= {"inline_one_thread": one,
                          "speedup_over_one_thread": round(one["stage_wall_s"] / max(local["stage_wall_s"], 1e-9), 2)}
        print(f"speedup {size}x {step}: {out[step]}", file=sys.stderr, flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return {"size": f"{size}x", "raw_mib": _raw_mib(folder, size), "min_bytes_per_worker": SPEEDUP_MIN_BYTES_PER_WORKER,
            "steps": out}


def _staging_large(folder: Path, *, fraction: float, copies: int) -> dict:
    """Staging alone on a corpus 4x the speedup's (4x the base fraction): at 95 MiB it is ~2 s of work, so the pool's
    fixed start (a forkserver, ~0.4 s) weighs as much as the parallel part."""
    specs = build_corpora(folder, fraction=fraction, sizes=(copies,))
    local = measure("documents", specs[copies], "local", SPEEDUP_MIN_BYTES_PER_WORKER)
    inline = measure("documents", specs[copies], "inline", SPEEDUP_MIN_BYTES_PER_WORKER)
    out = {"raw_mib": _raw_mib(folder, copies), "fraction": fraction, "local": local, "inline": inline,
           "speedup_stage_wall": round(inline["stage_wall_s"] / max(local["stage_wall_s"], 1e-9), 2)}
    print(f"staging, large corpus: {out}", file=sys.stderr, flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def run(quick: bool = False) -> dict:
    fraction = QUICK_FRACTION if quick else BASE_FRACTION
    copies = QUICK_SPEEDUP_COPIES if quick else SPEEDUP_COPIES
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        folder = Path(tmp)
        specs = build_corpora(folder, fraction=fraction, sizes=tuple(sorted({*SIZES, copies})))
        sizes = _growth(folder, specs)
        speedup = _speedup(folder, specs[copies], copies)
        speedup["staging_large"] = _staging_large(folder / "large", fraction=4 * fraction, copies=copies)
    growth = {}
    for step in sizes["1x"]["steps"]:
        one, four = sizes["1x"]["steps"][step], sizes["4x"]["steps"][step]
        growth[step] = {"cpu_4x_over_1x": round(four["cpu_s"] / max(one["cpu_s"], 1e-9), 2),
                        "rss_4x_over_1x": round(four["peak_rss_mib"] / one["peak_rss_mib"], 2),
                        "kept_fraction_1x": round(one["rows_out"] / max(one["rows_in"], 1), 4),
                        "kept_fraction_4x": round(four["rows_out"] / max(four["rows_in"], 1), 4)}
    return {"base_fraction": fraction, "parts_per_source_copy": PARTS, "cores": _cores(), "sizes": sizes,
            "growth": growth, "speedup": speedup,
            "note": "machine shared with other jobs while measured: compare ratios, not seconds"}


def _cores() -> int:
    from pipeline.config.execution import core_count

    return core_count()


def summarize(figures: dict) -> str:
    rows = ["| asset | CPU s 1x / 2x / 4x | CPU 4x/1x | peak RSS MiB 1x / 4x | RSS 4x/1x | workers 1x / 4x | rows in->out 4x |",
            "|---|---|---|---|---|---|---|"]
    for step, g in figures["growth"].items():
        s = {k: figures["sizes"][k]["steps"].get(step, {}) for k in ("1x", "2x", "4x")}
        cpu = " / ".join(f"{s[k]['cpu_s']:.1f}" if s[k] else "-" for k in ("1x", "2x", "4x"))
        rows.append(f"| {step} | {cpu} | "
                    f"{g['cpu_4x_over_1x']} | {s['1x']['peak_rss_mib']:.0f} / {s['4x']['peak_rss_mib']:.0f} | "
                    f"{g['rss_4x_over_1x']} | {s['1x'].get('workers', '')} / {s['4x'].get('workers', '')} | "
                    f"{s['4x']['rows_in']}->{s['4x']['rows_out']} |")
    sp = figures["speedup"]
    rows += ["", f"`local` vs `inline` at {sp['size']} ({sp['raw_mib']} MiB raw JSONL; min_bytes_per_worker "
                 f"{sp['min_bytes_per_worker']}):", "",
             "| stage | workers | inline stage wall s | local stage wall s | speedup (stage) | speedup (process) | "
             "CPU s inline / local | peak RSS MiB inline / local | same bytes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for step, f in sp["steps"].items():
        i, loc = f["inline"], f["local"]
        rows.append(f"| {step} | {loc.get('workers')} | {i['stage_wall_s']:.1f} | {loc['stage_wall_s']:.1f} | "
                    f"{f['speedup_stage_wall']} | {f['speedup_process_wall']} | {i['cpu_s']:.1f} / {loc['cpu_s']:.1f} | "
                    f"{i['peak_rss_mib']:.0f} / {loc['peak_rss_mib']:.0f} | {f['identical_bytes_local_vs_inline']} |")
    for step, f in sp["steps"].items():
        if "inline_one_thread" in f:
            rows.append(f"| {step}, inline with one tokenizer thread | 1 | {f['inline_one_thread']['stage_wall_s']:.1f} "
                        f"| {f['local']['stage_wall_s']:.1f} | {f['speedup_over_one_thread']} | | "
                        f"{f['inline_one_thread']['cpu_s']:.1f} / {f['local']['cpu_s']:.1f} | | |")
    large = sp.get("staging_large")
    if large:
        rows.append(f"| documents, {large['raw_mib']} MiB raw | {large['local'].get('workers')} | "
                    f"{large['inline']['stage_wall_s']:.1f} | {large['local']['stage_wall_s']:.1f} | "
                    f"{large['speedup_stage_wall']} | | {large['inline']['cpu_s']:.1f} / {large['local']['cpu_s']:.1f} | "
                    f"{large['inline']['peak_rss_mib']:.0f} / {large['local']['peak_rss_mib']:.0f} | |")
    raw = ", ".join(f"{k}: {v['raw_mib']} MiB" for k, v in figures["sizes"].items())
    return "\n".join([f"Raw JSONL per size: {raw}. {figures['note']}.", "", *rows])


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "--child":
        emit(run_step(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) == 6 else None))
        _reap_workers()
    elif len(sys.argv) == 3 and sys.argv[1] == "--staging-only":
        # Staging alone, `local` vs `inline`, on a corpus FACTOR x the base fraction (8 copies): how its speedup
        # grows once the fixed start weighs less (16: ~1.5 GB of raw JSONL, a few minutes to build).
        with tempfile.TemporaryDirectory(prefix="bench-staging-") as tmp:
            print(json.dumps(_staging_large(Path(tmp), fraction=float(sys.argv[2]) * BASE_FRACTION,
                                            copies=SPEEDUP_COPIES), indent=2))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
