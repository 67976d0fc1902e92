"""Staging benchmark: curamix vs DataTrove, raw corpora -> per-domain Parquet, in one run.

Workload: every file of ``../shared/corpora/raw`` (16 files, ~200 MB of UTF-8 text; JSONL, gzip
and zstd JSONL, Parquet with a ``content`` column, GSM8K's question/answer JSONL rendered through
a template), each file mapped to the README's "suggested domain".

- **curamix**: a spec generated in a temp dir, then ``pipeline.staging.stage_domain`` for each
  domain in turn (one process, one thread; it also hashes each input file and each document for
  ``doc_id``, and keeps the rejects accounting).
- **DataTrove** 0.10.1: ``JsonlReader`` (15 files) and ``ParquetReader`` (1 file) pipelines into
  ``ParquetWriter`` with output ``${domain}/${rank}.parquet``, run by ``LocalPipelineExecutor``
  with one task per input file and ``workers=1`` (DataTrove then runs its tasks one after another
  in-process, as curamix does). Its writer is set to what curamix writes: zstd Parquet, without
  content-defined chunking or a page index (DataTrove's defaults are snappy + both, extra work
  curamix does not do). The GSM8K template and the domain labels go through a reader adapter.

Fairness: both sides get one worker (the machine has 2 shared cores); each run is a fresh
subprocess with fresh output dirs, sides alternate within each round (5 rounds, 1 with --quick),
the figures are medians over the rounds. Throughput counts the timed section inside the child
(spec/pipeline construction to the last file closed; interpreter start and imports excluded, they
are in ``process_wall_s``), in wall seconds and, steadier on a busy shared machine, in CPU seconds
of the whole child (all threads); peak memory is the child's whole-process ``ru_maxrss`` (see
``bench/_measure``), imports included (curamix's import polars and pyarrow up front).
After the first round, both outputs are read back (untimed) and compared per domain: documents,
text bytes and the multiset of text hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import dataclasses
from pathlib import Path

from bench.corpus import CORPUS, GSM8K_TEMPLATE, RAW, write_spec
from bench._measure import emit, median, python_env, run_measured, self_peak_rss_mib

REPO = Path(__file__).resolve().parent.parent

# --quick: one file per format (plain JSONL with the template, gzip, zstd, Parquet), ~60 MB of text.
QUICK_FILES = ["math_gsm8k_train.jsonl", "dialogue_sgd.jsonl.gz", "web_movie_reviews.jsonl.zst",
               "code_go_stdlib.parquet"]
# "curamix" runs with its default staging settings: Parquet zstd level 1, the level DataTrove's writer
# uses (pyarrow's default; DataTrove has no level option), so both sides write with the same settings.
# "curamix_zstd3" sets staging.compression_level: 3 (~13% smaller files, about twice the compression CPU).
SIDES = ("curamix", "datatrove", "curamix_zstd3")
CURAMIX_SIDES = ("curamix", "curamix_zstd3")
MB = 1e6  # decimal megabytes, as in the corpora README's "text MB"


# --------------------------------------------------------------------------- children (timed)

def _write_spec(files: list[str], raw: Path, folder: Path) -> Path:
    return write_spec(folder, "bench_staging", files, raw=raw)


def child_curamix(files: list[str], raw: Path, out: Path, *, zstd_level: int | None = None) -> dict:
    from pipeline.spec import load_spec, replace_section
    from pipeline.staging import stage_domain

    baseline = self_peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    spec = load_spec(_write_spec(files, raw, out))
    if zstd_level is not None:
        spec = replace_section(spec, staging=dataclasses.replace(spec.staging, compression_level=zstd_level))
    docs = text_bytes = rejected = 0
    for domain in spec.domains:
        stats = stage_domain(spec, domain)
        docs += stats.rows_kept
        text_bytes += stats.bytes_kept
        rejected += stats.rows_rejected
    return {"work_s": round(time.perf_counter() - started, 3), "work_cpu_s": round(time.process_time() - cpu_started, 3),
            "docs": docs, "text_bytes": text_bytes, "rejected": rejected, "rss_after_imports_mib": baseline}


def _datatrove_adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    """Reader adapter: the domain label, and the GSM8K template (DataTrove has no template option)."""
    name = os.path.basename(path)
    domain, source = CORPUS[name]
    if name == "math_gsm8k_train.jsonl":
        text = GSM8K_TEMPLATE.format_map(data)
    else:
        text = data.get(self.text_key, "")
    return {"text": text, "id": f"{path}/{id_in_file}", "metadata": {"domain": domain, "source": source}}


def child_datatrove(files: list[str], raw: Path, out: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader, ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    baseline = self_peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    # One input folder per reader (symlinks), so that each executor's task i reads file i.
    groups = {"jsonl": [f for f in files if ".jsonl" in f], "parquet": [f for f in files if f.endswith(".parquet")]}
    for group, names in groups.items():
        if not names:
            continue
        folder = out / "input" / group
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).symlink_to(raw / name)
        if group == "jsonl":
            reader = JsonlReader(str(folder), adapter=_datatrove_adapter)
        else:
            reader = ParquetReader(str(folder), text_key="content", adapter=_datatrove_adapter)
        writer = ParquetWriter(str(out / "data" / group), output_filename="${domain}/${rank}.parquet",
                               compression="zstd", use_content_defined_chunking=False, write_page_index=False)
        executor = LocalPipelineExecutor([reader, writer], tasks=len(names), workers=1,
                                         logging_dir=str(out / "logs" / group))
        executor.run()
    return {"work_s": round(time.perf_counter() - started, 3), "work_cpu_s": round(time.process_time() - cpu_started, 3),
            "rss_after_imports_mib": baseline}


# --------------------------------------------------------------------------- verification (untimed)

def read_back(side: str, out: Path) -> dict[str, dict]:
    """Per domain: documents, UTF-8 text bytes, and a digest of the sorted text hashes."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    per_domain: dict[str, dict] = {}
    if side in CURAMIX_SIDES:
        parts = [(p.parent.parent.name.split("=", 1)[1], p) for p in (out / "data" / "documents").glob("domain=*/data/*.parquet")]
    else:
        parts = [(p.relative_to(out / "data").parts[1], p) for p in (out / "data").glob("*/*/*.parquet")]
    hashes: dict[str, list[bytes]] = {}
    for domain, path in parts:
        texts = pq.read_table(path, columns=["text"])["text"]
        entry = per_domain.setdefault(domain, {"docs": 0, "text_bytes": 0, "parquet_bytes": 0})
        entry["docs"] += len(texts)
        entry["parquet_bytes"] += path.stat().st_size
        entry["text_bytes"] += int(pc.sum(pc.binary_length(texts.cast("large_binary"))).as_py() or 0)
        hashes.setdefault(domain, []).extend(hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts.to_pylist())
    for domain, entry in per_domain.items():
        entry["content_digest"] = hashlib.sha256(b"".join(sorted(hashes[domain]))).hexdigest()[:16]
    return dict(sorted(per_domain.items()))


def compare(ours: dict[str, dict], theirs: dict[str, dict]) -> dict:
    """Per-domain differences in content (documents, text bytes, text hashes), not in file sizes."""
    differences = {}
    for domain in sorted(set(ours) | set(theirs)):
        a, b = ({k: v for k, v in side.get(domain, {}).items() if k != "parquet_bytes"} for side in (ours, theirs))
        if a != b:
            differences[domain] = {"curamix": a, "datatrove": b}
    return {"identical": not differences, "differences": differences}


# --------------------------------------------------------------------------- parent

def _one_run(side: str, files: list[str], raw: Path, work: Path, verify: bool) -> tuple[dict, dict | None]:
    out = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work))
    try:
        argv = [sys.executable, "-m", "bench.bench_staging", "--child", side, "--raw", str(raw), "--out", str(out),
                "--files", ",".join(files)]
        figures = run_measured(argv, env=python_env(CURAMIX_DATA_ROOT=str(out / "data"), PYTHONHASHSEED="0"))
        contents = read_back(side, out) if verify else None
        if contents is not None:
            figures.setdefault("docs", sum(d["docs"] for d in contents.values()))
            figures.setdefault("text_bytes", sum(d["text_bytes"] for d in contents.values()))
        return figures, contents
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(quick: bool = False, *, rounds: int | None = None, raw: Path = RAW) -> dict:
    files = QUICK_FILES if quick else sorted(CORPUS)
    missing = [f for f in files if not (raw / f).exists()]
    if missing:
        raise FileNotFoundError(f"{raw}: missing {missing}")
    rounds = rounds or (1 if quick else 5)
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    contents: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-staging-") as tmp:
        for r in range(rounds):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            for side in order:
                figures, seen = _one_run(side, files, raw, Path(tmp), verify=(r == 0))
                if seen is not None:
                    contents[side] = seen
                runs[side].append(figures)
                print(f"round {r + 1}/{rounds} {side}: {figures}", file=sys.stderr)
    result: dict = {
        "input": {"files": len(files), "raw": str(raw), "formats": sorted({_fmt(f) for f in files})},
        "setup": {"workers_each": 1, "rounds": rounds, "statistic": "median over rounds, sides alternating",
                  "datatrove": "LocalPipelineExecutor(tasks=files per reader, workers=1); ParquetWriter zstd "
                               "(level 1), no CDC, no page index",
                  "curamix": "stage_domain per domain, default settings (zstd level 1)",
                  "curamix_zstd3": "the same with staging.compression_level: 3",
                  "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    for side in SIDES:
        # Documents and bytes from the read-back: the same measure for every side.
        n_docs = sum(d["docs"] for d in contents[side].values())
        n_bytes = sum(d["text_bytes"] for d in contents[side].values())
        work = median([f["work_s"] for f in runs[side]])
        cpu = median([f["work_cpu_s"] for f in runs[side]])
        result[side] = {
            "work_s": round(work, 2),
            "docs_per_s": round(n_docs / work, 1),
            "text_mb_per_s": round(n_bytes / MB / work, 2),
            "work_cpu_s": round(cpu, 2),
            "text_mb_per_cpu_s": round(n_bytes / MB / cpu, 2),
            "process_wall_s": round(median([f["process_wall_s"] for f in runs[side]]), 2),
            "process_cpu_s": round(median([f["process_cpu_s"] for f in runs[side]]), 2),
            "peak_rss_mib": median([f["peak_rss_mib"] for f in runs[side]]),
            "rss_after_imports_mib": median([f["rss_after_imports_mib"] for f in runs[side]]),
            "docs": n_docs,
            "text_mb": round(n_bytes / MB, 2),
            "parquet_mb": round(sum(d["parquet_bytes"] for d in contents[side].values()) / MB, 2),
            "runs": [{k: f[k] for k in ("work_s", "work_cpu_s", "process_wall_s", "peak_rss_mib")} for f in runs[side]],
        }
    result["input"].update(docs=result["curamix"]["docs"], text_mb=result["curamix"]["text_mb"])
    theirs = result["datatrove"]
    result["goal"] = ">= 1.5x DataTrove's throughput at no more peak memory"
    for side in CURAMIX_SIDES:
        ours = result[side]
        # curamix / DataTrove; same documents and bytes on both sides, so throughput ratio = time ratio.
        result[f"ratios_{side}"] = {
            "throughput": round(theirs["work_s"] / ours["work_s"], 2),
            "throughput_per_cpu_s": round(theirs["work_cpu_s"] / ours["work_cpu_s"], 2),
            "process_wall": round(theirs["process_wall_s"] / ours["process_wall_s"], 2),
            "peak_rss": round(ours["peak_rss_mib"] / theirs["peak_rss_mib"], 2),
            "goal_met": theirs["work_s"] / ours["work_s"] >= 1.5 and ours["peak_rss_mib"] <= theirs["peak_rss_mib"],
            "same_output": compare(contents[side], contents["datatrove"]),
        }
    return result


def _fmt(name: str) -> str:
    for suffix in (".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            return suffix[1:]
    return "?"


def summarize(f: dict) -> str:
    setup = f["setup"]
    lines = [
        f"Staging {f['input']['files']} raw files ({f['input']['text_mb']} MB of text, {f['input']['docs']} documents; "
        f"{', '.join(f['input']['formats'])}) to per-domain Parquet, one worker each, median of {setup['rounds']} "
        f"alternating rounds, each run in its own process. DataTrove: {setup['datatrove']}. curamix: "
        f"{setup['curamix']}; curamix_zstd3: {setup['curamix_zstd3']}. Load average after the run: "
        f"{setup['load_average_after']} on {os.cpu_count()} cores.",
        "",
        "| | docs/s | text MB/s | work s | text MB per CPU s | process wall s | peak RSS MiB | RSS after imports MiB "
        "| Parquet MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        s = f[side]
        lines.append(f"| {side} | {s['docs_per_s']} | {s['text_mb_per_s']} | {s['work_s']} | {s['text_mb_per_cpu_s']} "
                     f"| {s['process_wall_s']} | {s['peak_rss_mib']} | {s['rss_after_imports_mib']} | {s['parquet_mb']} |")
    lines.append("")
    for side in CURAMIX_SIDES:
        r = f[f"ratios_{side}"]
        same = r["same_output"]
        lines.append(
            f"- {side} / DataTrove: throughput **{r['throughput']}x** (per CPU second {r['throughput_per_cpu_s']}x; "
            f"whole process incl. imports {r['process_wall']}x), peak memory **{r['peak_rss']}x**; goal ({f['goal']}) "
            f"**{'met' if r['goal_met'] else 'not met'}**; output "
            + ("identical per domain (documents, text bytes, text hashes)." if same["identical"]
               else f"differs in {sorted(same['differences'])}.")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="child process of the staging benchmark (use python -m bench.run)")
    parser.add_argument("--child", choices=SIDES, required=True)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--files", required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = args.files.split(",")
    if args.child == "datatrove":
        emit(child_datatrove(files, args.raw, args.out))
    else:
        emit(child_curamix(files, args.raw, args.out, zstd_level=3 if args.child == "curamix_zstd3" else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
