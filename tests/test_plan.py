"""`curamix plan`: per asset, the work a spec implies and an expected time from a short calibration (issue 17
item 16)."""

from assets.cli import build_parser
from assets.plan import plan_spec, profile_corpus
from pipeline.spec import load_spec
from tests.test_operations_support import small_spec


def test_plan_counts_the_work_and_times_it(tmp_path):
    spec = load_spec(small_spec(tmp_path, math_rows=40, code_rows=20, techdocs_files=8))
    text, costs = plan_spec(spec, sample_bytes=10**9)  # the whole corpus read: exact counts
    by_asset = {c.asset: c for c in costs}
    assert "68 documents" in by_asset["documents"].work  # 40 math rows + 20 Go files + 8 text files
    assert by_asset["proxy_runs"].work.startswith("6 proxies x 12 steps x 256 tokens")
    assert by_asset["reference_proxy"].work.startswith("1 proxy x 12 steps")
    assert by_asset["mixture"].work.endswith("0 proxies x 12 steps")  # validation disabled in the small spec
    for name in ("documents", "curated_documents", "tokenizer", "reference_proxy", "difficulty_scores", "proxy_runs"):
        assert by_asset[name].seconds > 0, name
    assert "math: 40 documents" in text and "total" in text

    # A sample of part of the files is extrapolated by file size.
    sampled = profile_corpus(spec, sample_bytes=5_000)
    assert 40 <= sum(sampled.documents.values()) <= 120
    assert "plan" in build_parser().format_help()
