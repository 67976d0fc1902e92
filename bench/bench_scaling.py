"""Scaling: the data stages on 1x, 2x and 4x corpora of distinct documents, and `local` vs `inline`.

Corpora. The base (1x) is a seeded subsample of every file of ../shared/corpora (``BASE_FRACTION`` of the
documents, so that all three sizes finish in minutes on a 2-core machine). Copy 0 is the base as it is;
copies 1..3 are the same documents with a deterministic word-level perturbation: within every line,
about a third of the adjacent word pairs are swapped, at positions chosen by a hash of (copy, line, pair).
Every copy keeps each document's words, their lengths, lines and stop words, so the quality filters judge a
copy as they judge its original; but about 80% of its 5-word shingles are new, so neither exact dedup nor
MinHash-LSH sees copies as duplicates of each other, while documents that were duplicates in the base
stay duplicates in every copy (the same positions are swapped). 2x = copies 0-1, 4x = copies 0-3. Each
(source, copy) is written as ``PARTS`` JSONL files, as a sharded raw corpus would come.

Assets: documents, curated_documents, tokenizer, pruned_documents (method "none": a pass-through) and
token_bins. Per asset (each in its own process; library calls, not Dagster): CPU seconds (user + system of the process
and its workers), wall seconds, peak RSS (the largest of the process and its waited-for workers), rows in
and out; growth ratios 4x/1x; for the ported stages (documents, token_bins) both engines, with the outputs'
bytes compared. The machine is shared with other jobs: compare ratios within one run, not absolute times.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench._measure import emit, python_env, run_measured
from bench.corpus import source_entries

BASE_FRACTION = 0.06
QUICK_FRACTION = 0.02
PARTS = 4
SIZES = (1, 2, 4)
# Pruning passes documents through (method "none"): its embeddings and k-means are not what this measures, and
# leaving them out keeps the three sizes within minutes on a shared 2-core machine.
STEPS = ["documents", "curated_documents", "tokenizer", "pruned_documents", "token_bins"]
PORTED = {"documents": "documents", "token_bins": "token_bins"}  # step -> output folder compared across engines
SECTIONS = {"tokenizer": {"vocab_size": 2048}, "pruning": {"method": "none"}}


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


def build_corpora(folder: Path, *, fraction: float) -> dict[int, Path]:
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
        for copy in range(max(SIZES)):
            out = raw / source.name
            out.mkdir(parents=True, exist_ok=True)
            handles = [open(out / f"c{copy}-p{p}.jsonl", "w", encoding="utf-8") for p in range(PARTS)]
            for i, text in enumerate(texts):
                handles[i % PARTS].write(json.dumps({"text": perturb(text, copy)}) + "\n")
            for h in handles:
                h.close()
        sources.append({"name": source.name, "domain": source.domain})
    specs = {}
    for size in SIZES:
        spec = {"name": f"scaling-{size}x", "seed": 0, "data_root": f"data-{size}x",
                "sources": [{**s, "path": f"raw/{s['name']}/c[0-{size - 1}]-p*.jsonl", "format": "jsonl"} for s in sources],
                **SECTIONS}
        specs[size] = folder / f"spec-{size}x.yaml"
        specs[size].write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


def run_step(step: str, spec_path: str, engine: str) -> dict:
    """One asset's work, in this (measured) process; returns rows in and out."""
    from pipeline.config.execution import ExecutionConfig
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    spec = load_spec(spec_path)
    root = DataRoot(spec.data_root)
    execution = ExecutionConfig(engine=engine)
    count = lambda stage: root.scan(stage).select("doc_id").collect().height  # noqa: E731
    if step == "documents":
        from pipeline.staging import stage_domain

        stats = [stage_domain(spec, d, root=root, execution=execution) for d in spec.domains]
        return {"rows_in": sum(s.rows_read for s in stats), "rows_out": sum(s.rows_kept for s in stats)}
    if step == "curated_documents":
        from pipeline.curation.run import curate

        curate(spec, root=root)
        return {"rows_in": count("documents"), "rows_out": count("curated")}
    if step == "tokenizer":
        from proxies.tokenizer import sample_training_texts, save_tokenizer, train_tokenizer

        cfg = spec.tokenizer
        texts = sample_training_texts(root, "curated", spec.domains, max_bytes=cfg.max_training_bytes,
                                      seed=spec.seed_for("tokenizer"))
        save_tokenizer(train_tokenizer(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency),
                       root.root / "tokenizer" / "tokenizer.json")
        return {"rows_in": count("curated"), "rows_out": 1}
    if step == "embeddings":
        from pipeline.pruning.embed import embed_stage

        info = embed_stage(root, spec.pruning.embedding, seed=spec.seed_for("embeddings"), input_stage="curated")
        return {"rows_in": count("curated"), "rows_out": info.n_docs}
    if step == "concept_clusters":
        from pipeline.pruning.clusters import cluster_stage

        _, summary = cluster_stage(root, spec.pruning.clusters, seed=spec.seed_for("concept_clusters"))
        return {"rows_in": summary["n_docs"], "rows_out": summary["n_docs"]}
    if step == "pruned_documents":
        from pipeline.pruning.run import prune_stage

        prune_stage(spec, root=root)
        return {"rows_in": count("curated"), "rows_out": count("pruned")}
    if step == "token_bins":
        from proxies.bins import build_bins
        from proxies.tokenizer import file_sha256, load_tokenizer

        path = root.root / "tokenizer" / "tokenizer.json"
        cfg = spec.proxies
        meta = build_bins(root, "pruned", spec.domains, root.root / "token_bins", tokenizer=load_tokenizer(path),
                          tokenizer_sha256=file_sha256(path), validation_fraction=cfg.validation_fraction,
                          min_validation_docs=cfg.min_validation_docs, max_train_tokens=cfg.max_train_tokens_per_domain,
                          seed=spec.seed_for("token_bins"), execution=execution)
        docs = sum(v["train_docs"] + v["val_docs"] + v["train_docs_over_cap"] for v in meta["domains"].values())
        kept = sum(v["train_docs"] + v["val_docs"] for v in meta["domains"].values())
        return {"rows_in": docs, "rows_out": kept, "tokens": sum(v["train_tokens"] + v["val_tokens"] for v in meta["domains"].values())}
    raise ValueError(f"unknown step {step!r}")


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            digest.update(p.relative_to(folder).as_posix().encode() + hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()[:16]


def measure(step: str, spec: Path, engine: str) -> dict:
    figures = run_measured([sys.executable, "-m", "bench.bench_scaling", "--child", step, str(spec), engine],
                           env=python_env())
    return {"cpu_s": figures["process_cpu_s"], "wall_s": figures["process_wall_s"],
            "peak_rss_mib": figures["peak_rss_mib"], **{k: figures[k] for k in ("rows_in", "rows_out", "tokens") if k in figures}}


def run(quick: bool = False) -> dict:
    fraction = QUICK_FRACTION if quick else BASE_FRACTION
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        folder = Path(tmp)
        specs = build_corpora(folder, fraction=fraction)
        raw_mib = {size: round(sum(p.stat().st_size for p in (folder / "raw").rglob(f"c[0-{size - 1}]-*.jsonl")) / 2**20, 1)
                   for size in SIZES}
        sizes: dict[str, dict] = {}
        for size in SIZES:
            steps: dict[str, dict] = {}
            for step in STEPS:
                figures = measure(step, specs[size], "local")
                if step in PORTED:
                    out = folder / f"data-{size}x" / PORTED[step]
                    local_digest = tree_digest(out)
                    inline = measure(step, specs[size], "inline")
                    figures["inline"] = {k: inline[k] for k in ("cpu_s", "wall_s", "peak_rss_mib")}
                    figures["local_speedup_wall"] = round(inline["wall_s"] / figures["wall_s"], 2)
                    figures["identical_bytes_local_vs_inline"] = tree_digest(out) == local_digest
                steps[step] = figures
                print(f"scaling {size}x {step}: {figures}", file=sys.stderr, flush=True)
            sizes[f"{size}x"] = {"raw_mib": raw_mib[size], "steps": steps}
            shutil.rmtree(folder / f"data-{size}x", ignore_errors=True)
    growth = {}
    for step in STEPS:
        one, four = sizes["1x"]["steps"][step], sizes["4x"]["steps"][step]
        growth[step] = {"cpu_4x_over_1x": round(four["cpu_s"] / max(one["cpu_s"], 1e-9), 2),
                        "rss_4x_over_1x": round(four["peak_rss_mib"] / one["peak_rss_mib"], 2),
                        "kept_fraction_1x": round(one["rows_out"] / max(one["rows_in"], 1), 4),
                        "kept_fraction_4x": round(four["rows_out"] / max(four["rows_in"], 1), 4)}
    return {"base_fraction": fraction, "parts_per_source_copy": PARTS, "workers": _cores(), "sizes": sizes,
            "growth": growth, "note": "machine shared with other jobs while measured: compare ratios, not seconds"}


def _cores() -> int:
    from pipeline.config.execution import core_count

    return core_count()


def summarize(figures: dict) -> str:
    rows = ["| asset | 1x CPU s | 2x CPU s | 4x CPU s | CPU 4x/1x | wall s 1x / 4x | 1x RSS MiB | 4x RSS MiB | RSS 4x/1x | rows in->out 1x | rows in->out 4x | local speedup 1x / 4x |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for step in STEPS:
        s = {k: figures["sizes"][k]["steps"][step] for k in ("1x", "2x", "4x")}
        g = figures["growth"][step]
        speed = (f"{s['1x']['local_speedup_wall']} / {s['4x']['local_speedup_wall']}" if "local_speedup_wall" in s["1x"] else "")
        rows.append(f"| {step} | {s['1x']['cpu_s']:.1f} | {s['2x']['cpu_s']:.1f} | {s['4x']['cpu_s']:.1f} | {g['cpu_4x_over_1x']} | "
                    f"{s['1x']['wall_s']:.0f} / {s['4x']['wall_s']:.0f} | {s['1x']['peak_rss_mib']:.0f} | {s['4x']['peak_rss_mib']:.0f} | {g['rss_4x_over_1x']} | "
                    f"{s['1x']['rows_in']}->{s['1x']['rows_out']} | {s['4x']['rows_in']}->{s['4x']['rows_out']} | {speed} |")
    raw = ", ".join(f"{k}: {v['raw_mib']} MiB" for k, v in figures["sizes"].items())
    return "\n".join([f"Raw JSONL per size: {raw}. Machine shared with other jobs while measured.", "", *rows])


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        emit(run_step(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
