"""Staging: every reader and format, templates, every bad-input case, accounting, idempotence."""

import gzip
import hashlib
import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from pipeline.schema import doc_id_for
from pipeline.spec import load_spec
from pipeline.staging import StagingError, stage_domain
from pipeline.store import DataRoot


def jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def make_spec(tmp_path, sources, **sections):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "seed": 1, "data_root": "data", "sources": sources, **sections}))
    return load_spec(path)


def staged(spec, domain):
    stats = stage_domain(spec, domain)
    root = DataRoot(spec.data_root)
    docs = root.scan("documents", [domain]).collect()
    rejects = root.scan_rejects("documents", [domain]).collect()
    return stats, docs, rejects


RECORDS = [{"text": f"document number {i} about things"} for i in range(10)]


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "jsonl.zst"])
def test_jsonl_formats(tmp_path, suffix):
    data = jsonl(RECORDS)
    if suffix.endswith("gz"):
        data = gzip.compress(data)
    elif suffix.endswith("zst"):
        data = zstandard.ZstdCompressor().compress(data)
    (tmp_path / f"a.{suffix}").write_bytes(data)
    spec = make_spec(tmp_path, [{"name": "a", "path": f"a.{suffix}", "domain": "web"}])
    stats, docs, rejects = staged(spec, "web")
    assert docs["text"].to_list() == [r["text"] for r in RECORDS]
    assert docs["source_row"].to_list() == list(range(1, 11))
    assert docs["doc_id"][0] == doc_id_for(RECORDS[0]["text"])
    assert docs["n_bytes"].to_list() == [len(r["text"].encode()) for r in RECORDS]
    assert set(docs["domain"]) == {"web"} and set(docs["source_file"]) == {f"a.{suffix}"}
    assert rejects.height == 0 and stats.rows_read == 10


def test_parquet_source_with_named_column(tmp_path):
    pq.write_table(pa.table({"content": ["package main", "func f() {}"], "path": ["a.go", "b.go"]}), tmp_path / "c.parquet")
    spec = make_spec(tmp_path, [{"name": "go", "path": "c.parquet", "domain": "code", "text_field": "content"}])
    _, docs, _ = staged(spec, "code")
    assert docs["text"].to_list() == ["package main", "func f() {}"]
    assert docs["source_row"].to_list() == [1, 2]


def test_text_folder_and_glob(tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Title\nbody")
    (folder / "sub" / "b.txt").write_text("plain text")
    (folder / "ignored.bin").write_bytes(b"\x00")
    spec = make_spec(tmp_path, [{"name": "notes", "path": "notes", "domain": "docs"}])
    _, docs, _ = staged(spec, "docs")
    assert sorted(docs["text"].to_list()) == ["# Title\nbody", "plain text"]
    assert sorted(docs["source_file"].to_list()) == ["notes/a.md", "notes/sub/b.txt"]
    spec = make_spec(tmp_path, [{"name": "notes", "path": "notes/**/*.txt", "domain": "docs"}])
    _, docs, _ = staged(spec, "docs")
    assert docs["text"].to_list() == ["plain text"]


def test_template_over_several_fields(tmp_path):
    (tmp_path / "qa.jsonl").write_bytes(jsonl([
        {"question": "2+2?", "answer": "4"},
        {"question": "no answer"},
        {"question": "n", "answer": 7},
    ]))
    spec = make_spec(tmp_path, [{"name": "qa", "path": "qa.jsonl", "domain": "math",
                                 "template": "Question: {question}\nAnswer: {answer}"}])
    _, docs, rejects = staged(spec, "math")
    assert docs["text"].to_list() == ["Question: 2+2?\nAnswer: 4", "Question: n\nAnswer: 7"]
    assert rejects.select("source_row", "reason", "detail").to_dicts() == [
        {"source_row": 2, "reason": "missing_field", "detail": "template field 'answer' is missing"}
    ]


def test_every_per_row_problem_is_recorded_with_its_reason(tmp_path):
    lines = [
        b'{"text": "good one"}',
        b'{"text": "broken", ',
        b'{"text": "bad \xff\xfe utf8"}',
        b'{"body": "no text field"}',
        b'{"text": "   \\n\\t "}',
        b'{"text": "' + b"x" * 200 + b'"}',
        b'["not", "an", "object"]',
        b'{"text": 42}',
        b"",
        b'{"text": "good two"}',
    ]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    spec = make_spec(tmp_path, [{"name": "bad", "path": "bad.jsonl", "domain": "web"}],
                     staging={"max_doc_bytes": 100})
    stats, docs, rejects = staged(spec, "web")
    assert docs["text"].to_list() == ["good one", "good two"]
    got = dict(zip(rejects["source_row"].to_list(), rejects["reason"].to_list()))
    assert got == {2: "malformed_json", 3: "invalid_utf8", 4: "missing_field", 5: "empty_text",
                   6: "too_large", 7: "not_an_object", 8: "text_not_string", 9: "blank_line"}
    assert set(rejects["source_file"]) == {"bad.jsonl"}
    assert rejects.filter(pl.col("source_row") == 2)["excerpt"][0].startswith('{"text": "broken"')
    assert stats.rows_read == 10 and stats.rows_kept == 2 and stats.rows_rejected == 8
    assert stats.rejects_by_reason()["malformed_json"] == 1


def test_invalid_utf8_in_text_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ok.txt").write_text("fine")
    (tmp_path / "d" / "bad.txt").write_bytes(b"caf\xe9")
    spec = make_spec(tmp_path, [{"name": "d", "path": "d", "domain": "docs"}])
    _, docs, rejects = staged(spec, "docs")
    assert docs["text"].to_list() == ["fine"]
    assert rejects.select("source_file", "reason").to_dicts() == [{"source_file": "d/bad.txt", "reason": "invalid_utf8"}]


def _truncated_gz(tmp_path):
    data = gzip.compress(jsonl([{"text": f"row {i} " * 20} for i in range(3000)]))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "ok.jsonl").write_bytes(jsonl(RECORDS))
    return [{"name": "t", "path": "t.jsonl.gz", "domain": "web"}, {"name": "ok", "path": "ok.jsonl", "domain": "web"}]


def test_truncated_gzip_fails_naming_the_file(tmp_path):
    spec = make_spec(tmp_path, _truncated_gz(tmp_path), staging={"on_bad_file": "fail"})
    with pytest.raises(StagingError, match=r"t\.jsonl\.gz: corrupt_archive: EOFError"):
        stage_domain(spec, "web")
    # a failed stage leaves no output behind that looks complete
    assert DataRoot(spec.data_root).domains("documents") == []


def test_truncated_gzip_quarantined_rows_go_to_rejects(tmp_path):
    spec = make_spec(tmp_path, _truncated_gz(tmp_path), staging={"on_bad_file": "quarantine", "batch_rows": 100})
    stats, docs, rejects = staged(spec, "web")
    assert set(docs["source"]) == {"ok"} and docs.height == 10
    quarantined = rejects.filter(pl.col("reason") == "quarantined_file")
    assert quarantined.height == stats.sources["t"].rows_read > 0
    assert quarantined["detail"][0].startswith("file quarantined: corrupt_archive")
    assert stats.sources["t"].quarantined_files[0]["file"] == "t.jsonl.gz"
    assert stats.sources["t"].rows_kept == 0


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_damaged_zstd_is_detected(tmp_path, damage):
    data = zstandard.ZstdCompressor().compress(jsonl([{"text": f"row {i} " * 20} for i in range(3000)]))
    data = data[: len(data) // 2] if damage == "truncate" else b"\x00" * 8 + data[8:]
    (tmp_path / "z.jsonl.zst").write_bytes(data)
    spec = make_spec(tmp_path, [{"name": "z", "path": "z.jsonl.zst", "domain": "web"}])
    with pytest.raises(StagingError, match=r"z\.jsonl\.zst: corrupt_archive: ZstdError"):
        stage_domain(spec, "web")


def test_parquet_without_the_named_column(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    spec = make_spec(tmp_path, [{"name": "p", "path": "p.parquet", "domain": "code", "text_field": "content"}])
    with pytest.raises(StagingError, match=r"p\.parquet: missing_column: no column 'content' \(columns: body\)"):
        stage_domain(spec, "code")
    spec = make_spec(tmp_path, [{"name": "p", "path": "p.parquet", "domain": "code", "text_field": "content"}],
                     staging={"on_bad_file": "quarantine"})
    stats, docs, _ = staged(spec, "code")
    assert docs.height == 0 and stats.sources["p"].quarantined_files[0]["reason"] == "missing_column"


def test_unreadable_path(tmp_path):
    (tmp_path / "gone.jsonl").write_bytes(jsonl(RECORDS))
    spec = make_spec(tmp_path, [{"name": "g", "path": "gone.jsonl", "domain": "web"}])
    (tmp_path / "gone.jsonl").unlink()  # vanished between validation and staging
    with pytest.raises(StagingError, match=r"gone\.jsonl: unreadable"):
        stage_domain(spec, "web")


def test_accounting_check_counts_written_files(tmp_path):
    from assets.staging import accounting_check

    (tmp_path / "a.jsonl").write_bytes(jsonl(RECORDS) + b"{oops\n")
    spec = make_spec(tmp_path, [{"name": "a", "path": "a.jsonl", "domain": "web"}])
    stage_domain(spec, "web")
    root = DataRoot(spec.data_root)
    result = accounting_check(root, "web")
    assert result.passed and result.metadata["rows_read"].value == 11
    # lose a row behind staging's back: the check must notice
    part = next((root.domain_dir("documents", "web") / "data").glob("*.parquet"))
    pq.write_table(pq.read_table(part).slice(1), part)
    assert not accounting_check(root, "web").passed


def _tree_digest(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_restaging_is_byte_identical(tmp_path):
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(RECORDS) + b"{bad\n"))
    spec = make_spec(tmp_path, [{"name": "a", "path": "a.jsonl.zst", "domain": "web"}])
    stage_domain(spec, "web")
    first = _tree_digest(spec.data_root / "documents")
    stage_domain(spec, "web")
    assert _tree_digest(spec.data_root / "documents") == first
    assert not list((spec.data_root / "documents").glob("*.tmp-*"))


def test_quarantined_file_without_a_readable_row_leaves_one_reject_row(tmp_path):
    """Issue 18 item 6: a Parquet file without the text column and a zstd file with no decodable row,
    quarantined: each leaves one reject row for the whole file, and the accounting still holds."""
    from assets.staging import accounting_check
    from pipeline.curation.closing import closing_lines

    pq.write_table(pa.table({"body": [f"row {i}" for i in range(10)]}), tmp_path / "p.parquet")
    data = zstandard.ZstdCompressor().compress(jsonl([{"text": f"row {i} " * 20} for i in range(50)]))
    (tmp_path / "z.jsonl.zst").write_bytes(b"\x00" * 8 + data[8:])
    (tmp_path / "ok.jsonl").write_bytes(jsonl(RECORDS))
    spec = make_spec(tmp_path, [{"name": "p", "path": "p.parquet", "domain": "web", "text_field": "content"},
                                {"name": "z", "path": "z.jsonl.zst", "domain": "web"},
                                {"name": "ok", "path": "ok.jsonl", "domain": "web"}],
                     staging={"on_bad_file": "quarantine"})
    stats, docs, rejects = staged(spec, "web")
    files = rejects.filter(pl.col("source_row") == 0).sort("source")
    assert files.select("source", "source_file", "reason").rows() == [
        ("p", "p.parquet", "quarantined_file"), ("z", "z.jsonl.zst", "quarantined_file")]
    assert files["detail"][0].startswith("file quarantined: missing_column: no column 'content'")
    assert "0 rows read" in files["detail"][0] and files["detail"][1].startswith("file quarantined: corrupt_archive")
    assert stats.sources["p"].rows_read == 0 and stats.sources["p"].rows_rejected == 0
    assert docs.height == stats.sources["ok"].rows_kept > 0
    assert accounting_check(DataRoot(spec.data_root), "web").passed
    lines = closing_lines(DataRoot(spec.data_root), ["web"])
    assert lines[1] == f"  web: staging rejected {stats.rows_rejected} of {stats.rows_read} rows (0 rows in 2 quarantined files)"
