"""Emission's memory as the number of documents grows: does the training set stay flat in data size?

A training set is planned per document copy (which document, which epoch, how many tokens), so the
plan of a corpus of many short documents is what grows: at 100 GB, tens of millions of documents,
each written twice (the mixed set and its domain's set) and repeated per epoch. This benchmark makes
that case on purpose: 4 domains of short synthetic documents (6-14 words from a 2,000-word seeded
vocabulary, a word-level tokenizer built from it: no training, no download), at 1x, 4x and 16x
documents (``--quick``: 1x and 4x of a smaller base), a budget of two epochs of every domain, Megatron
``.bin/.idx`` output (mixed and per-domain), ``engine: inline`` so that every byte is in one process.
Each size runs ``emit_training_set`` in a fresh child (peak RSS: the child's ``ru_maxrss``, see
``bench/_measure``); the child also records its high-water mark when pass 1 (the token cache) ends,
so pass 1's and pass 2's peaks are told apart.

``--baseline REV`` runs the same children against the code of git revision ``REV`` (checked out in a
worktree under ``bench/work``) in the same run, for a side-by-side ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench._measure import CHILD_PRELUDE, code_at, python_env, run_measured

REPO = Path(__file__).resolve().parent.parent
# Documents at 1x (``--quick``: at 1x of two sizes instead of three).
DOCUMENTS = 200_000
QUICK_DOCUMENTS = 50_000
WORK = REPO / "bench" / "work" / "emission_memory"
DOMAINS = 4
VOCAB_WORDS = 2000
EOS = "<|endoftext|>"

# The child: only the emission API both revisions share (EmissionInputs, emit_training_set, the configs).
CHILD = CHILD_PRELUDE + r"""
from pipeline.config.execution import ExecutionConfig
from pipeline.config.output import OutputConfig
from pipeline.emission.writer import EmissionInputs, emit_training_set

marks = {"after_imports_mib": status("VmHWM"), "anon_max_mib": 0.0, "file_max_mib": 0.0}
def progress(message):
    # Sampled at every progress line (each tokenized batch, each shard): anonymous memory, and the file pages
    # of the memory-mapped caches, which count in RSS but are the kernel's to drop.
    marks["anon_max_mib"] = max(marks["anon_max_mib"], status("RssAnon"))
    marks["file_max_mib"] = max(marks["file_max_mib"], status("RssFile"))
    if message.startswith("writing") and "pass1_peak_mib" not in marks:
        marks["pass1_peak_mib"] = status("VmHWM")
        marks["pass1_s"] = time.perf_counter() - started

config = OutputConfig(total_tokens=args["total_tokens"], formats=["megatron"], max_epochs=4.0,
                      keep_token_cache=False, min_documents_per_domain=0)
inputs = EmissionInputs(domain_files={d: [Path(f) for f in fs] for d, fs in args["files"].items()},
                        tokenizer_path=Path(args["tokenizer"]), mixture={"proportions": args["proportions"],
                        "method": "natural"}, seed=7)
started = time.perf_counter()
manifest = emit_training_set(inputs, config=config, out_dir=Path(args["out"]),
                             execution=ExecutionConfig(engine="inline"), progress=progress)
wall = time.perf_counter() - started
copies = sum(d["documents"] for d in manifest["domains"].values())
print(json.dumps({**{k: round(v, 2) for k, v in marks.items()}, "emit_wall_s": round(wall, 2),
                  "document_copies": copies, "tokens": manifest["total_tokens"]}))
"""


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {EOS: 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(VOCAB_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([EOS])
    tok.save(str(path))


def _corpus(folder: Path, documents: int) -> dict[str, list[str]]:
    """``documents`` short documents over DOMAINS domains (Parquet with doc_id, text), made once and reused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {}
    for d in range(DOMAINS):
        path = folder / f"domain{d}.parquet"
        files[f"d{d}"] = [str(path)]
        if path.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([d, documents])
        n = documents // DOMAINS
        words = rng.zipf(1.3, size=(n, 14)) % VOCAB_WORDS
        counts = rng.integers(6, 15, size=n)
        text = [" ".join(f"w{w}" for w in row[:c]) for row, c in zip(words.tolist(), counts.tolist())]
        table = pa.table({"doc_id": [f"d{d}-{i}" for i in range(n)], "text": text})
        pq.write_table(table, path.with_suffix(".tmp"), row_group_size=65_536)
        path.with_suffix(".tmp").rename(path)
    return files


def _tokens(files: dict[str, list[str]]) -> dict[str, int]:
    """Each domain's tokens in one pass, EOS included (words + 1 per document)."""
    import pyarrow.parquet as pq

    return {d: sum(sum(t.count(" ") + 2 for t in pq.read_table(f, columns=["text"]).column("text").to_pylist())
                   for f in fs) for d, fs in files.items()}


def measure(code: Path, files: dict, tokenizer: Path, tokens: dict[str, int], out: Path) -> dict:
    """Emit two epochs of every domain (proportions = each domain's tokens) with the code under ``code``."""
    args = {"files": files, "tokenizer": str(tokenizer), "total_tokens": 2 * sum(tokens.values()), "out": str(out),
            "proportions": tokens}
    env = python_env()
    env["PYTHONPATH"] = str(code)
    try:
        return run_measured([sys.executable, "-c", CHILD, json.dumps(args)], env=env, cwd=code)
    finally:
        subprocess.run(["rm", "-rf", str(out), f"{out}.cache"], check=False)


def run(quick: bool, baseline: str | None = None) -> dict:
    base = QUICK_DOCUMENTS if quick else DOCUMENTS
    scales = (1, 4) if quick else (1, 4, 16)
    WORK.mkdir(parents=True, exist_ok=True)
    tokenizer = WORK / "tokenizer.json"
    if not tokenizer.exists():
        _tokenizer(tokenizer)
    sides = {"current": REPO}
    if baseline:
        sides[f"baseline {baseline}"] = code_at(baseline, WORK)
    rows = []
    for scale in scales:
        files = _corpus(WORK / f"docs-{base * scale}", base * scale)
        tokens = _tokens(files)
        for side, code in sides.items():
            print(f"{side}: {base * scale} documents", file=sys.stderr)
            figures = measure(code, files, tokenizer, tokens, WORK / "out")
            rows.append({"side": side, "scale": scale, "documents": base * scale, "one_pass_tokens": sum(tokens.values()),
                         **figures})
    growth = {}
    for side in sides:
        mine = {r["scale"]: r for r in rows if r["side"] == side}
        top = max(scales)
        growth[side] = {
            "documents": top,
            "peak_rss": round(mine[top]["peak_rss_mib"] / mine[1]["peak_rss_mib"], 2),
            "pass2_over_pass1_peak_mib_at_top": round(mine[top]["peak_rss_mib"] - mine[top]["pass1_peak_mib"], 1),
            "cpu": round(mine[top]["process_cpu_s"] / mine[1]["process_cpu_s"], 2),
        }
    figures = {"workload": {"domains": DOMAINS, "base_documents": base, "scales": list(scales),
                            "budget": "two epochs of every domain", "formats": ["megatron"], "engine": "inline"},
               "rows": rows, "growth": growth}
    if baseline:
        top = max(scales)
        cur = next(r for r in rows if r["side"] == "current" and r["scale"] == top)
        old = next(r for r in rows if r["side"] != "current" and r["scale"] == top)
        figures["current_vs_baseline_at_top"] = {
            "peak_rss": round(cur["peak_rss_mib"] / old["peak_rss_mib"], 2),
            "wall": round(cur["emit_wall_s"] / old["emit_wall_s"], 2),
            "cpu": round(cur["process_cpu_s"] / old["process_cpu_s"], 2),
        }
    return figures


def summarize(figures: dict) -> str:
    lines = ["| code | documents | document copies | peak RSS MiB | pass 1 peak MiB | anonymous / file-backed MiB, "
             "most sampled | emit wall s | CPU s |", "|---|---|---|---|---|---|---|---|"]
    for r in figures["rows"]:
        lines.append(f"| {r['side']} | {r['documents']:,} | {r['document_copies']:,} | {r['peak_rss_mib']:,.0f} | "
                     f"{r['pass1_peak_mib']:,.0f} | {r.get('anon_max_mib', 0):,.0f} / {r.get('file_max_mib', 0):,.0f} | "
                     f"{r['emit_wall_s']:.1f} | {r['process_cpu_s']:.1f} |")
    for side, g in figures["growth"].items():
        lines.append(f"\n{side}: peak RSS at {g['documents']}x / 1x = **{g['peak_rss']}x**, CPU {g['cpu']}x; "
                     f"pass 2 above pass 1's peak at {g['documents']}x: {g['pass2_over_pass1_peak_mib_at_top']} MiB")
    if "current_vs_baseline_at_top" in figures:
        c = figures["current_vs_baseline_at_top"]
        lines.append(f"\ncurrent / baseline at the largest size: peak RSS {c['peak_rss']}x, wall {c['wall']}x, "
                     f"CPU {c['cpu']}x")
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import main_with_baseline

    main_with_baseline("emission_memory", run, summarize, __doc__.splitlines()[0])
