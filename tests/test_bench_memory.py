"""The before/after memory benchmarks, tiny and on the current code only: their children still drive the stages
they measure (they reach into the emission, pruning and token-bins APIs), and their figures add up."""

from __future__ import annotations

from bench import bench_document_count, bench_emission_memory


def test_emission_memory_benchmark_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_emission_memory, "WORK", tmp_path)
    monkeypatch.setattr(bench_emission_memory, "QUICK_DOCUMENTS", 2_000)
    figures = bench_emission_memory.run(quick=True)
    rows = figures["rows"]
    assert [r["documents"] for r in rows] == [2_000, 8_000]
    assert all(r["document_copies"] == 2 * r["documents"] for r in rows)  # two epochs of every domain, exactly
    assert all(r["tokens"] == 2 * r["one_pass_tokens"] and r["anon_max_mib"] > 0 for r in rows)
    assert "| current | 8,000 | 16,000 |" in bench_emission_memory.summarize(figures)


def test_document_count_benchmark_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_document_count, "WORK", tmp_path / "documents")
    monkeypatch.setattr(bench_emission_memory, "WORK", tmp_path / "tokenizer")
    monkeypatch.setattr(bench_document_count, "QUICK_DOCUMENTS", 2_000)
    figures = bench_document_count.run(quick=True)
    rows = {(r["stage"], r["documents"]): r for r in figures["rows"]}
    assert set(rows) == {(stage, n) for stage in bench_document_count.STAGES for n in (2_000, 8_000)}
    assert rows["pruning_selection", 8_000]["kept"] == rows["pruning_selection", 8_000]["dropped"] == 4_000
    assert rows["pruning_writer", 8_000]["kept"] == rows["pruning_writer", 8_000]["dropped"] == 4_000
    assert rows["token_bins", 8_000]["dropped"] == 800  # the validation documents: 10%
    assert all(r["write_peak_mib"] >= r["rss_before_write_mib"] > 0 for r in rows.values())
