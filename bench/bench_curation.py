"""Curation benchmark: curamix vs DataTrove on the real corpora plus 500 injected near-copies, one run.

Corpus: every file of ``../shared/corpora/raw`` (~200 MB of text, 16 sources, 9 domains), staged with
``pipeline.staging`` (untimed), plus 500 near-copies (100 with --quick) of randomly chosen documents of
at least 50 words, each with ~3% of its words replaced by random corpus words. A copy goes to its
original's domain as a separate source listed after all real ones, so curamix's survivor rule (spec
order) keeps the original.

Sides, each in its own subprocess (peak RSS from ``bench/_measure``), all reading the same staged
Parquet and writing the kept documents plus the dropped ones:

- ``curamix_minhash``: ``curate`` with only near-dedup on (defaults: word 3-grams, 20x5 bands, verified
  at Jaccard 0.7); ``datatrove_minhash``: DataTrove's 4-stage MinHash pipeline with its default
  ``MinhashConfig`` (word 5-grams, 14 buckets x 8 hashes), stage 4 writing kept (Parquet) and
  removed (JSONL) documents; ``LocalPipelineExecutor`` with workers=1 (stage 2: 14 tasks, one per
  bucket).
- ``curamix_filters``: ``curate`` with only the filters on and every domain on the prose profile
  (Gopher quality + Gopher repetition + C4, as DataTrove's three filters); ``datatrove_filters``:
  ``GopherQualityFilter``, ``GopherRepetitionFilter``, ``C4QualityFilter`` (defaults, English) then a
  Parquet writer.
- ``curamix_full``: the shipped default stage (exact dedup, per-domain profiles, near-dedup), for
  reference.

Recall: ``caught`` = injected copies removed; ``pairs_detected`` = pairs of which at least one side was
removed (DataTrove keeps an arbitrary cluster member, so it may drop the original instead of the
copy); ``originals_removed``; ``other_removed`` = documents neither injected nor chosen as originals
(true duplicates already in the corpora, or false positives).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._measure import emit, python_env, run_measured, self_peak_rss_mib
from bench.corpus import CORPUS as SHARED_CORPUS
from bench.corpus import GSM8K_TEMPLATE, RAW, REPO

MB = 1e6

# file -> (source name, domain): the shared table (bench/corpus.py), except that movie reviews and speeches
# stay one "web" domain here, as when this benchmark's committed results were taken (per-domain filter
# profiles and the recall figures depend on the domain names).
WEB_AS_ONE = {"web_movie_reviews.jsonl.zst", "web_us_speeches.jsonl.zst"}
CORPUS: dict[str, tuple[str, str]] = {
    f: (source, "web" if f in WEB_AS_ONE else domain) for f, (domain, source) in SHARED_CORPUS.items()
}
QUICK_FILES = ["math_gsm8k_train.jsonl", "web_movie_reviews.jsonl.zst", "law_spdx_license_texts.jsonl.zst",
               "science_scitldr_abstracts.jsonl.zst"]
SIDES = ("curamix_minhash", "datatrove_minhash", "curamix_filters", "curamix_full", "datatrove_filters")
PARTIAL = REPO / "bench" / "work" / "curation-partial.json"  # figures so far, side by side, while it runs
CHANGE = 0.03
MIN_WORDS = 50


# --------------------------------------------------------------------------- setup (untimed)

def _source(name: str, path: Path, domain: str):
    from pipeline.config.staging import SourceConfig

    extra = {"text_field": "content"} if path.suffix == ".parquet" else {}
    if name == "gsm8k":
        extra["template"] = GSM8K_TEMPLATE
    return SourceConfig(name=name, path=str(path), domain=domain, **extra)


def mutate(text: str, rng: random.Random, vocab: list[str], fraction: float = CHANGE) -> str:
    """Replace ``fraction`` of the whitespace-separated words (at least one) with random words."""
    parts = re.split(r"(\s+)", text)
    words = [i for i in range(0, len(parts), 2) if parts[i]]
    for i in rng.sample(words, max(1, round(fraction * len(words)))):
        parts[i] = rng.choice(vocab)
    return "".join(parts)


def build_corpus(files: list[str], raw: Path, work: Path, n_copies: int, seed: int = 20261122) -> dict:
    """Write the spec (real sources + injected copies) and stage it; returns the injection truth."""
    import yaml

    from pipeline.readers import read_source_file
    from pipeline.spec import load_spec
    from pipeline.staging import stage_domain

    rng = random.Random(seed)
    pool: list[tuple[str, str, int, str]] = []  # (source, domain, row, text)
    seen: set[str] = set()
    for name in files:
        source, domain = CORPUS[name]
        for row in read_source_file(_source(source, raw / name, domain), raw / name, batch_rows=4096):
            if row.text and row.text not in seen:
                seen.add(row.text)
                pool.append((source, domain, row.row, row.text))
    vocab = sorted({w for *_, t in rng.sample(pool, min(300, len(pool))) for w in t.split()[:400]
                    if w.isalpha() and 3 <= len(w) <= 10})
    eligible = [p for p in pool if len(p[3].split()) >= MIN_WORDS]
    originals = rng.sample(eligible, n_copies)
    copies: dict[str, list[dict]] = {}
    truth = []
    for source, domain, row, text in originals:
        copy = mutate(text, rng, vocab)
        rows = copies.setdefault(domain, [])
        truth.append({"original": [source, row], "copy": [f"injected_{domain}", len(rows) + 1], "domain": domain})  # JSONL rows are 1-based
        rows.append({"text": copy})
    inject = work / "injected"
    inject.mkdir(parents=True)
    sources = [{"name": CORPUS[f][0], "path": str(raw / f), "domain": CORPUS[f][1],
                **({"text_field": "content"} if f.endswith(".parquet") else {}),
                **({"template": GSM8K_TEMPLATE} if CORPUS[f][0] == "gsm8k" else {})} for f in files]
    for domain, rows in sorted(copies.items()):
        path = inject / f"{domain}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources.append({"name": f"injected_{domain}", "path": str(path), "domain": domain})
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"name": "bench-curation", "seed": 1, "data_root": str(work / "staged"),
                                         "sources": sources, "staging": {"max_doc_bytes": 100_000_000}}))
    os.environ.pop("CURAMIX_DATA_ROOT", None)
    spec = load_spec(spec_path)
    for domain in spec.domains:
        stage_domain(spec, domain)
    (work / "truth.json").write_text(json.dumps(truth))
    return {"spec": str(spec_path), "pool_docs": len(pool), "copies": len(truth)}


def _child_root(work: Path, out: Path) -> Path:
    """A data root for one child whose `documents` stage is the shared staged corpus."""
    root = out / "data"
    root.mkdir(parents=True)
    (root / "documents").symlink_to(work / "staged" / "documents")
    return root


# --------------------------------------------------------------------------- children (timed)

def child_curamix(side: str, work: Path, out: Path) -> dict:
    from pipeline.config.curation import CurationConfig
    from pipeline.config.typed import build
    from pipeline.curation.run import curate
    from pipeline.spec import load_spec
    from pipeline.store import DataRoot

    baseline = self_peak_rss_mib()
    root = DataRoot(_child_root(work, out))
    spec = load_spec(work / "spec.yaml")
    if side == "curamix_minhash":
        config = build(CurationConfig, {"exact_dedup": {"enabled": False}, "filters_enabled": False})
    elif side == "curamix_filters":
        config = build(CurationConfig, {"exact_dedup": {"enabled": False}, "near_dedup": {"enabled": False},
                                        "domains": {d: {"profile": "prose"} for d in spec.domains}})
    else:
        config = CurationConfig()
    started, cpu_started = time.perf_counter(), time.process_time()
    reports = curate(spec, config=config, root=root)
    return {"work_s": round(time.perf_counter() - started, 3), "work_cpu_s": round(time.process_time() - cpu_started, 3),
            "docs_in": sum(r.rows_in for r in reports.values()), "kept": sum(r.rows_kept for r in reports.values()),
            "rss_after_imports_mib": baseline}


def _adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    key = f"{data['source']}|{data['source_file']}|{data['source_row']}"
    return {"text": data["text"], "id": key, "metadata": {"domain": data["domain"]}}


def child_datatrove(side: str, work: Path, out: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

    baseline = self_peak_rss_mib()
    docs = str(work / "staged" / "documents")

    def reader():
        return ParquetReader(docs, glob_pattern="domain=*/data/*.parquet", adapter=_adapter)

    def kept_writer():
        return ParquetWriter(str(out / "kept"), compression="zstd")

    started, cpu_started = time.perf_counter(), time.process_time()
    if side == "datatrove_filters":
        from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

        LocalPipelineExecutor(
            [reader(),
             GopherQualityFilter(exclusion_writer=JsonlWriter(str(out / "removed" / "gopher_quality"))),
             GopherRepetitionFilter(exclusion_writer=JsonlWriter(str(out / "removed" / "gopher_repetition"))),
             C4QualityFilter(exclusion_writer=JsonlWriter(str(out / "removed" / "c4"))),
             kept_writer()],
            tasks=1, workers=1, logging_dir=str(out / "logs" / "filters"),
        ).run()
    else:
        from datatrove.pipeline.dedup.minhash import (
            MinhashConfig,
            MinhashDedupBuckets,
            MinhashDedupCluster,
            MinhashDedupFilter,
            MinhashDedupSignature,
        )

        config = MinhashConfig()
        sigs, buckets, remove = (str(out / n) for n in ("sigs", "buckets", "remove_ids"))
        LocalPipelineExecutor([reader(), MinhashDedupSignature(output_folder=sigs, config=config)],
                              tasks=1, workers=1, logging_dir=str(out / "logs" / "s1")).run()
        LocalPipelineExecutor([MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)],
                              tasks=config.num_buckets, workers=1, logging_dir=str(out / "logs" / "s2")).run()
        LocalPipelineExecutor([MinhashDedupCluster(input_folder=buckets, output_folder=remove, config=config)],
                              tasks=1, workers=1, logging_dir=str(out / "logs" / "s3")).run()
        LocalPipelineExecutor(
            [reader(), MinhashDedupFilter(input_folder=remove, exclusion_writer=JsonlWriter(str(out / "removed" / "minhash"))),
             kept_writer()],
            tasks=1, workers=1, logging_dir=str(out / "logs" / "s4"),
        ).run()
    return {"work_s": round(time.perf_counter() - started, 3), "work_cpu_s": round(time.process_time() - cpu_started, 3),
            "rss_after_imports_mib": baseline}


# --------------------------------------------------------------------------- read-back (untimed)

def removed_keys(side: str, out: Path) -> dict[str, set[tuple[str, int]]]:
    """reason -> {(source, source_row)} of the documents a side dropped."""
    import gzip

    import polars as pl

    if side.startswith("curamix"):
        from pipeline.curation.run import STAGE
        from pipeline.store import DataRoot

        rejects = DataRoot(out / "data").scan_rejects(STAGE).select("reason", "source", "source_row").collect()
        return {reason: set(zip(g["source"].to_list(), g["source_row"].to_list()))
                for (reason,), g in rejects.partition_by("reason", as_dict=True).items()}
    result: dict[str, set] = {}
    for folder in sorted((out / "removed").glob("*")):
        keys = set()
        for f in folder.glob("*.jsonl*"):
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt") as handle:
                for line in handle:
                    source, _, row = json.loads(line)["id"].split("|")
                    keys.add((source, int(row)))
        result[folder.name] = keys
    return result


def recall(removed: set[tuple[str, int]], truth: list[dict]) -> dict:
    originals = {tuple(t["original"]) for t in truth}
    copies = {tuple(t["copy"]) for t in truth}
    caught = sum(tuple(t["copy"]) in removed for t in truth)
    pairs = sum(tuple(t["copy"]) in removed or tuple(t["original"]) in removed for t in truth)
    return {
        "injected": len(truth),
        "caught": caught,
        "recall": round(caught / len(truth), 4),
        "pairs_detected": pairs,
        "pair_recall": round(pairs / len(truth), 4),
        "originals_removed": len(originals & removed),
        "other_removed": len(removed - originals - copies),
    }


# --------------------------------------------------------------------------- parent

def _staged_size(work: Path) -> tuple[int, int]:
    import polars as pl

    frame = pl.scan_parquet(str(work / "staged" / "documents" / "domain=*" / "data" / "*.parquet"))
    docs, size = frame.select(pl.len(), pl.col("n_bytes").sum()).collect().row(0)
    return int(docs), int(size)


def run(quick: bool = False, *, raw: Path = RAW, sides: tuple[str, ...] | None = None) -> dict:
    files = QUICK_FILES if quick else sorted(CORPUS)
    # BENCH_CURATION_SIDES=a,b limits the sides (e.g. to skip the slowest peer while iterating)
    sides = sides or tuple(x for x in os.environ.get("BENCH_CURATION_SIDES", ",".join(SIDES)).split(",") if x)
    n_copies = 100 if quick else 500
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        work = Path(tmp)
        setup = build_corpus(files, raw, work, n_copies)
        truth = json.loads((work / "truth.json").read_text())
        docs, size = _staged_size(work)
        result["input"] = {"files": len(files), "docs": docs, "text_mb": round(size / MB, 2), "injected": len(truth),
                           "words_changed": CHANGE, "originals_min_words": MIN_WORDS}
        for side in sides:
            out = work / f"out-{side}"
            out.mkdir()
            argv = [sys.executable, "-m", "bench.bench_curation", "--child", side, "--work", str(work), "--out", str(out)]
            figures = run_measured(argv, env=python_env(PYTHONHASHSEED="0"))
            removed_by = removed_keys(side, out)
            figures["removed_by_reason"] = {k: len(v) for k, v in sorted(removed_by.items())}
            near = set().union(*[v for k, v in removed_by.items() if k in ("near_duplicate", "minhash", "exact_duplicate")]) \
                if removed_by else set()
            if "minhash" in side or side == "curamix_full":
                figures["recall"] = recall(near, truth)
            figures["docs_per_s"] = round(docs / figures["work_s"], 1)
            figures["text_mb_per_s"] = round(size / MB / figures["work_s"], 3)
            figures["text_mb_per_cpu_s"] = round(size / MB / figures["process_cpu_s"], 3)
            result[side] = figures
            print(f"{side}: {json.dumps(figures)}", file=sys.stderr)
            PARTIAL.parent.mkdir(parents=True, exist_ok=True)
            PARTIAL.write_text(json.dumps(result, indent=2) + "\n")
            shutil.rmtree(out, ignore_errors=True)
    result["setup"] = {
        "workers": "DataTrove LocalPipelineExecutor workers=1; curamix one process (polars/DuckDB may use both cores: "
                   "compare text_mb_per_cpu_s too)",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    ratios = {}
    for kind in ("minhash", "filters"):
        ours, theirs = result.get(f"curamix_{kind}"), result.get(f"datatrove_{kind}")
        if ours and theirs:
            ratios[kind] = {
                "throughput": round(theirs["work_s"] / ours["work_s"], 2),
                "throughput_per_cpu_s": round(theirs["process_cpu_s"] / ours["process_cpu_s"], 2),
                "peak_rss": round(ours["peak_rss_mib"] / theirs["peak_rss_mib"], 2),
                "goal_met": theirs["work_s"] / ours["work_s"] >= 2 and ours["peak_rss_mib"] <= theirs["peak_rss_mib"],
            }
    if "minhash" in ratios:
        ours, theirs = result["curamix_minhash"]["recall"], result["datatrove_minhash"]["recall"]
        ratios["minhash"]["recall_goal_met"] = ours["recall"] >= 0.95 and ours["originals_removed"] <= theirs["originals_removed"]
    result["ratios"] = ratios
    result["goal"] = ">= 2x DataTrove throughput on MinHash and on filters at no more peak memory; MinHash recall >= 95% " \
                     "with no more originals removed"
    return result


def summarize(f: dict) -> str:
    inp = f["input"]
    lines = [
        f"Curation on {inp['files']} corpora files ({inp['text_mb']} MB of text, {inp['docs']} documents incl. "
        f"{inp['injected']} injected near-copies with {inp['words_changed']:.0%} of words replaced), each side in its "
        f"own process. {f['setup']['workers']}. Load average after: {f['setup']['load_average_after']}.",
        "",
        "| side | docs/s | text MB/s | MB per CPU s | work s | peak RSS MiB | removed | recall (copies removed) "
        "| pairs detected | originals removed | other removed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        s = f.get(side)
        if not s:
            continue
        r = s.get("recall", {})
        lines.append(
            f"| {side} | {s['docs_per_s']} | {s['text_mb_per_s']} | {s['text_mb_per_cpu_s']} | {s['work_s']} "
            f"| {s['peak_rss_mib']} | {sum(s['removed_by_reason'].values())} | "
            + (f"{r['caught']}/{r['injected']} ({r['recall']:.1%}) | {r['pairs_detected']} | {r['originals_removed']} "
               f"| {r['other_removed']} |" if r else "| | | |")
        )
    lines.append("")
    lines.append("Recall = injected copies removed; pairs detected = copy or original removed. curamix keeps the "
                 "original (survivor rule: spec order); DataTrove keeps an arbitrary cluster member, so for it "
                 "pairs detected is the fair recall and its originals removed are mostly that choice.")
    if "runs" in f.get("setup", {}):
        lines.append(f"Runs: {f['setup']['runs']}.")
    lines.append("")
    for kind, r in f.get("ratios", {}).items():
        lines.append(f"- {kind}: curamix / DataTrove throughput **{r['throughput']}x** (per CPU s "
                     f"{r['throughput_per_cpu_s']}x), peak memory **{r['peak_rss']}x**; 2x goal "
                     f"**{'met' if r['goal_met'] else 'not met'}**"
                     + (f"; recall goal **{'met' if r['recall_goal_met'] else 'not met'}**" if "recall_goal_met" in r else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="child process of the curation benchmark (use python -m bench.run)")
    parser.add_argument("--child", choices=SIDES, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.child.startswith("datatrove"):
        emit(child_datatrove(args.child, args.work, args.out))
    else:
        emit(child_curamix(args.child, args.work, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
