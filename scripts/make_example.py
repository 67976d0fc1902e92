"""Cut the embedded default corpus (examples/default/raw) from ../shared/corpora, keeping formats.

Run once by a maintainer; the output is committed. Each domain gets roughly ``--per-domain-kb`` of
text taken whole-document from the start of a licensed source file, written back in the source's
own format (JSONL, gzip/zstd JSONL, Parquet, a folder of text files).

A source whose first documents would mostly be dropped by curation's default filters, or whose documents
are so long that the domain would hold a handful of them, gets a cut that fits it (``Cut``): only documents
that the domain's default filters keep, each shortened at a paragraph boundary. The Wikipedia sample is
such a source: most of its first pages are redirect stubs (< 20 words) and the rest are articles of up to
180 kB; cut, the encyclopedia domain keeps about as many documents as the others after curation.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard


@dataclass(frozen=True)
class Cut:
    """Keep only documents the domain's default curation filters keep; shorten each to at most ``max_bytes``
    at a paragraph boundary (a blank line), keeping its beginning."""

    domain: str
    max_bytes: int


# (source file, output name, per-document byte cap so one huge book cannot fill a domain[, a cut that fits it])
PICKS = [
    ("math_gsm8k_train.jsonl", "math_gsm8k_train.jsonl", None),
    ("math_openlogic.jsonl.zst", "math_openlogic.jsonl.zst", 60_000),
    ("code_go_stdlib.parquet", "code_go_stdlib.parquet", 60_000),
    ("dialogue_sgd.jsonl.gz", "dialogue_sgd.jsonl.gz", None),
    ("law_spdx_license_texts.jsonl.zst", "law_spdx_license_texts.jsonl.zst", 60_000),
    ("ref_wikipedia_gensim_sample.jsonl.zst", "ref_wikipedia_gensim_sample.jsonl.zst", None,
     Cut("encyclopedia", 5_000)),
    ("science_scitldr_abstracts.jsonl.zst", "science_scitldr_abstracts.jsonl.zst", None),
    ("web_movie_reviews.jsonl.zst", "web_movie_reviews.jsonl.zst", None),
    ("techdocs_python311_rst.jsonl.zst", "techdocs_python311_rst", 60_000),  # -> folder of .txt
]


def _read_jsonl(path: Path):
    raw = path.read_bytes()
    if path.name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    elif path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    for line in raw.splitlines():
        yield json.loads(line)


def _size(record: dict) -> int:
    return sum(len(str(v).encode()) for k, v in record.items() if k in ("text", "content", "question", "answer"))


def _shorten(text: str, max_bytes: int) -> str:
    if len(text.encode()) <= max_bytes:
        return text
    kept, size = [], 0
    for paragraph in text.split("\n\n"):
        size += len(paragraph.encode()) + 2
        if kept and size > max_bytes:
            break
        kept.append(paragraph)
    return "\n\n".join(kept)


def _apply_cut(rows: list[dict], cut: Cut) -> list[dict]:
    import polars as pl

    from pipeline.config.curation import CurationConfig
    from pipeline.curation.filters import apply_filters, filters_for

    verdict = apply_filters(pl.Series([r["text"] for r in rows]), filters_for(CurationConfig().for_domain(cut.domain)))
    kept = [r for r, reason in zip(rows, verdict["reason"].to_list()) if reason is None]
    return [{**r, "text": _shorten(r["text"], cut.max_bytes)} for r in kept]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "examples" / "default" / "raw"))
    parser.add_argument("--per-domain-kb", type=int, default=450)
    args = parser.parse_args()
    src, out = Path(args.shared) / "raw", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = args.per_domain_kb * 1000
    for name, target, cap, *cut in PICKS:
        path = src / name
        if name.endswith(".parquet"):
            table = pq.read_table(path)
            rows = [r for r in table.to_pylist() if cap is None or len(r["content"].encode()) <= cap]
        else:
            rows = [r for r in _read_jsonl(path) if cap is None or _size(r) <= cap]
        if cut:
            rows = _apply_cut(rows, cut[0])
        picked, total = [], 0
        for row in rows:
            if total >= budget:
                break
            picked.append(row)
            total += _size(row)
        dest = out / target
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(picked, schema=table.schema), dest, compression="zstd")
        elif not target.endswith((".jsonl", ".gz", ".zst")):
            dest.mkdir(exist_ok=True)
            for i, row in enumerate(picked):
                (dest / f"doc{i:04d}.txt").write_text(row["text"], encoding="utf-8")
        else:
            data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in picked)
            if target.endswith(".zst"):
                data = zstandard.ZstdCompressor(level=19).compress(data)
            elif target.endswith(".gz"):
                data = gzip.compress(data, mtime=0)
            dest.write_bytes(data)
        print(f"{target}: {len(picked)} docs, {total / 1e3:.0f} kB of text")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the curation filters, for a Cut
    main()
