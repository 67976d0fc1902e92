"""Curation: exact dedup, MinHash-LSH, filters, per-domain settings, accounting, determinism."""

from __future__ import annotations

import json
import random
import string

import numpy as np
import polars as pl
import pytest

from pipeline.config.curation import (
    C4Config,
    CurationConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    MinHashConfig,
)
from pipeline.config.typed import ConfigError, build
from pipeline.curation import minhash as mh
from pipeline.curation.filters import Batch, C4Filter, GopherQualityFilter, GopherRepetitionFilter, apply_filters
from pipeline.curation.run import STAGE, check_accounting, curate
from pipeline.spec import SpecError, spec_from_dict
from pipeline.staging import stage_domain
from pipeline.store import DataRoot

RNG = random.Random(1234)


def _word(rng: random.Random, n: int = 7) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def _prose(rng: random.Random, words: int = 120) -> str:
    """Plausible English-shaped text (passes the prose filters)."""
    common = ["the", "of", "and", "to", "with", "that", "have"]
    out, sentence = [], []
    for i in range(words):
        sentence.append(rng.choice(common) if i % 3 == 0 else _word(rng, rng.randint(3, 8)))
        if len(sentence) >= 12:
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    out.append(" ".join(sentence or ["end"]).capitalize() + ".")
    return "\n".join(" ".join(out[i:i + 2]) for i in range(0, len(out), 2))


# ---------------------------------------------------------------- MinHash


def _pair_at_jaccard(rng: random.Random, j: float, size: int = 400) -> tuple[str, str]:
    """Two texts of distinct words whose 1-gram sets have Jaccard similarity exactly ``j``."""
    shared = round(size * 2 * j / (1 + j))
    own = size - shared
    words = [_word(rng, 9) for _ in range(shared + 2 * own)]
    common, a, b = words[:shared], words[shared:shared + own], words[shared + own:]
    return " ".join(common + a), " ".join(common + b)


def test_minhash_removes_pairs_above_threshold_and_keeps_those_well_below():
    rng = random.Random(7)
    config = MinHashConfig(ngram=1, threshold=0.7)
    high = [_pair_at_jaccard(rng, 0.9) for _ in range(30)]
    low = [_pair_at_jaccard(rng, 0.4) for _ in range(30)]
    texts = [t for pair in high + low for t in pair]
    hashes, doc = mh.shingles(pl.Series(texts), config, seed=3)
    sig = mh.signatures(hashes, doc, len(texts), num_perm=config.num_perm, seed=5)
    drops = mh.near_duplicates(np.arange(len(texts)), sig, config, seed=9)
    dropped = dict(zip(drops["id"].to_list(), drops["duplicate_of"].to_list()))
    for i in range(len(high)):
        assert dropped.get(2 * i + 1) == 2 * i, "the later copy goes, the earlier survives"
        assert 2 * i not in dropped
    offset = 2 * len(high)
    assert not any(offset <= k for k in dropped), "pairs at J=0.4 are kept"


def test_minhash_estimate_tracks_true_jaccard():
    rng = random.Random(11)
    config = MinHashConfig(ngram=1, num_perm=256, bands=32, rows=8)
    for j in (0.2, 0.5, 0.8):
        a, b = _pair_at_jaccard(rng, j, size=600)
        hashes, doc = mh.shingles(pl.Series([a, b]), config, seed=1)
        sig = mh.signatures(hashes, doc, 2, num_perm=256, seed=2)
        assert abs(mh.estimated_jaccard(sig[:1], sig[1:])[0] - j) < 0.1


def test_union_find_components_and_minimum_root():
    u = np.array([5, 7, 9, 2, 11])
    v = np.array([7, 9, 3, 3, 12])
    nodes, roots = mh.union_find(u, v)
    got = dict(zip(nodes.tolist(), roots.tolist()))
    assert got == {2: 2, 3: 2, 5: 2, 7: 2, 9: 2, 11: 11, 12: 11}


def test_ngram_shingles_stay_inside_documents():
    tokens = np.arange(1, 8, dtype=np.uint64)
    doc = np.array([0, 0, 0, 0, 1, 1, 2])
    grams, owner = mh.ngram_hashes(tokens, doc, 3, seed=1)
    # doc 0: 2 trigrams; doc 1 (2 tokens) and doc 2 (1 token): one short shingle each
    assert owner.tolist() == [0, 0, 1, 2]
    assert len(set(grams.tolist())) == 4


def test_text_batches_respect_the_byte_budget(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.curation.run import iter_text_batches

    sizes = [random.Random(2).randint(1, 3000) for _ in range(900)] + [50_000, 5]
    pq.write_table(pa.table({"gidx": range(len(sizes)), "text": ["x" * n for n in sizes]}), tmp_path / "t.parquet",
                   row_group_size=700)
    frames = list(iter_text_batches(tmp_path / "t.parquet", ["gidx", "text"], 10_000))
    assert [g for f in frames for g in f["gidx"].to_list()] == list(range(len(sizes)))
    for f in frames:  # at most the budget plus the one document that crossed it
        lengths = f["text"].str.len_bytes().to_list()
        assert sum(lengths) - lengths[-1] < 10_000


# ---------------------------------------------------------------- filters


def _verdict(f, texts):
    return f.evaluate(Batch(pl.Series(texts))).sort("idx")["detail"].to_list()


def test_gopher_quality_rules_on_crafted_text():
    rng = random.Random(3)
    good = _prose(rng)
    f = GopherQualityFilter(GopherQualityConfig())
    short = "The cat and the dog."
    no_stop = " ".join(_word(rng) for _ in range(80))
    symbols = " ".join(["x1=2;", "y+3", "#", "z&", "and", "the"] * 20)
    bullets = "\n".join(f"- item {_word(rng)} the and of to with that" for _ in range(20))
    hashes = good + " #tag" * 40
    d = _verdict(f, [good, short, no_stop, symbols, bullets, hashes])
    assert d[0] is None
    assert d[1].startswith("min_doc_words")
    assert d[2].startswith("min_stop_words")
    assert d[3].startswith(("min_alpha_words_ratio", "max_hash_word_ratio", "min_avg_word_length"))
    assert d[4].startswith("max_bullet_lines_ratio")
    assert d[5].startswith("max_hash_word_ratio")


def _one_rule_texts(rng):
    """rule -> a text that breaks that Gopher quality rule and no rule checked before it."""
    good = [_prose(rng, 12) for _ in range(10)]  # ten one-sentence lines, 120 words
    short_words = " ".join(["a", "to", "of", "is", "it", "at", "be", "we", "go", "do", "the", "and"] * 6)
    long_words = " ".join((["internationalizations", "counterrevolutionary"] * 4 + ["the", "and"]) * 8)
    with_ellipses = " ".join(w + (" ..." if i % 5 == 4 else "") for i, w in enumerate(" ".join(good).split()))
    with_ellipses += " And that is the end."  # the line must not end with an ellipsis (another rule)
    ellipsis_lines = "\n".join(line.rstrip(".") + ("…" if i % 2 else ".") for i, line in enumerate(good))
    numbers = " ".join(w if i % 3 else str(10_000 + i) for i, w in enumerate(" ".join(good).split()))
    return {
        "max_doc_words": " ".join(good),          # with max_doc_words lowered to 100 below
        "min_avg_word_length": short_words,
        "max_avg_word_length": long_words,
        "max_ellipsis_word_ratio": with_ellipses,
        "max_ellipsis_lines_ratio": ellipsis_lines,
        "min_alpha_words_ratio": numbers,
    }


@pytest.mark.parametrize("rule", ["max_doc_words", "min_avg_word_length", "max_avg_word_length",
                                  "max_ellipsis_word_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio"])
def test_each_gopher_quality_rule_alone(rule):
    """One crafted text per rule not covered above: it fails that rule, and with the rule switched off it
    passes the whole filter (so no other rule was involved)."""
    text = _one_rule_texts(random.Random(7))[rule]
    base = {"max_doc_words": 100} if rule == "max_doc_words" else {}
    (detail,) = _verdict(GopherQualityFilter(build(GopherQualityConfig, base)), [text])
    assert detail is not None and detail.split(":")[0] == rule, detail
    off = {**base, rule: None}
    if rule == "max_ellipsis_word_ratio":
        off = {"max_symbol_word_ratio": None}  # one limit for the '#' and the ellipsis ratios
    assert _verdict(GopherQualityFilter(build(GopherQualityConfig, off)), [text]) == [None]


def test_gopher_repetition_rules_on_crafted_text():
    rng = random.Random(4)
    good = _prose(rng, 200)
    f = GopherRepetitionFilter(GopherRepetitionConfig())
    dup_lines = "\n".join(["Click here to subscribe to the newsletter today."] * 10 + [_prose(rng, 30)])
    looping = " ".join(["buy cheap pills now"] * 60)
    d = _verdict(f, [good, dup_lines, looping])
    assert d[0] is None
    assert d[1].split(":")[0] in {"dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"}
    assert d[2].startswith(("top_2gram", "top_3gram", "top_4gram", "dup_"))
    # switching every rule off keeps everything
    off = GopherRepetitionFilter(build(GopherRepetitionConfig, {
        "dup_line_frac": None, "dup_para_frac": None, "dup_line_char_frac": None, "dup_para_char_frac": None,
        "top_ngram_char_frac": {}, "dup_ngram_char_frac": {}}))
    assert _verdict(off, [good, dup_lines, looping]) == [None, None, None]


def test_dup_ngram_fraction_counts_covered_characters_once():
    f = GopherRepetitionFilter(build(GopherRepetitionConfig, {
        "dup_line_frac": None, "dup_para_frac": None, "dup_line_char_frac": None, "dup_para_char_frac": None,
        "top_ngram_char_frac": {}, "dup_ngram_char_frac": {5: 0.15}}))
    # 5 unique words, then the same 5 again: every word is covered by a repeated 5-gram -> 1.0
    stats = f._ngram_stats(Batch(pl.Series(["aa bb cc dd ee aa bb cc dd ee", "aa bb cc dd ee ff gg hh ii jj"])))
    assert stats["dup_5"].tolist() == [1.0, 0.0]


def test_c4_rules_on_crafted_text():
    rng = random.Random(5)
    good = _prose(rng, 150)
    f = C4Filter(C4Config())
    d = _verdict(f, [good, good + "\nLorem ipsum dolor sit amet.", good + "\nfunc main() { return the value. }.",
                     "One short sentence here.", "no punctuation in any line\nat all here in this text"])
    assert d[0] is None
    assert d[1] == "lorem_ipsum"
    assert d[2].startswith("curly_bracket")
    assert d[3].startswith("min_num_sentences")
    assert d[4].startswith("min_num_sentences: 0")


def test_filters_report_first_failing_filter():
    out = apply_filters(pl.Series(["tiny", _prose(random.Random(6))]),
                        [GopherQualityFilter(GopherQualityConfig()), C4Filter(C4Config())])
    assert out["reason"].to_list() == ["gopher_quality", None]


# ---------------------------------------------------------------- per-domain settings


def test_profiles_and_domain_overrides():
    config = build(CurationConfig, {
        "domains": {
            "code": {"gopher_repetition": {"dup_line_frac": 0.9}},
            "forum": {"profile": "dialogue", "near_dedup": False},
            "web": {"gopher_quality": {"min_doc_words": 20}},
        }
    })
    code = config.for_domain("code")
    assert code.profile == "code" and not code.gopher_quality.enabled and not code.c4.enabled
    assert code.gopher_repetition.dup_line_frac == 0.9  # the override ...
    assert code.gopher_repetition.min_line_chars == 12  # ... on top of the profile
    forum = config.for_domain("forum")
    assert forum.profile == "dialogue" and forum.near_dedup is False and not forum.c4.enabled
    web = config.for_domain("web")
    assert web.profile == "prose" and web.gopher_quality.min_doc_words == 20 and web.c4.enabled
    assert config.for_domain("math").gopher_quality.min_alpha_words_ratio is None
    assert config.for_domain("unknown").gopher_quality == GopherQualityConfig()
    techdocs = config.for_domain("techdocs")
    assert techdocs.profile == "markup" and not techdocs.c4.enabled


def test_bad_domain_override_names_the_key():
    with pytest.raises(ConfigError, match=r"domains\.code\.gopher_quality\.min_words"):
        build(CurationConfig, {"domains": {"code": {"gopher_quality": {"min_words": 3}}}})
    with pytest.raises(ConfigError, match="exceeds num_perm"):
        build(CurationConfig, {"near_dedup": {"bands": 30, "rows": 5}})


# ---------------------------------------------------------------- the stage end to end


def _corpus(tmp_path, rng):
    raw = tmp_path / "raw"
    raw.mkdir()
    base = [_prose(rng, 150) for _ in range(12)]
    a = [{"text": t} for t in base[:8]]
    a.append({"text": base[0]})  # exact copy inside a source
    b = [{"text": "  " + base[1].upper().replace(" ", "   ") + "\n"}]  # same after normalization
    words = base[2].split(" ")
    for i in range(0, len(words), 40):
        words[i] = "changed"
    b.append({"text": " ".join(words)})  # a near copy (~2.5% of words changed)
    b += [{"text": t} for t in base[8:]]
    b.append({"text": "too short"})
    code = [{"text": "package main\n\nfunc main() {\n" + "".join(
        f"\t{_word(rng)} := {_word(rng)}({_word(rng)}, {i})\n" for _ in range(12)) + "}\n"} for i in range(4)]
    for name, rows in (("a", a), ("b", b), ("code", code)):
        (raw / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "name": "t", "seed": 1,
        "sources": [
            {"name": "a", "path": "raw/a.jsonl", "domain": "web"},
            {"name": "b", "path": "raw/b.jsonl", "domain": "books"},
            {"name": "go", "path": "raw/code.jsonl", "domain": "code"},
        ],
    }


def _run(spec):
    for domain in spec.domains:
        stage_domain(spec, domain)
    return curate(spec)


def test_stage_accounting_dedup_and_determinism(tmp_path, data_root):
    spec = spec_from_dict(_corpus(tmp_path, random.Random(8)), path=tmp_path / "spec.yaml")
    reports = _run(spec)
    root = DataRoot(spec.data_root)
    counts = check_accounting(root, spec.domains)
    assert all(c["ok"] for c in counts.values()), counts
    assert {d: r.rows_in for d, r in reports.items()} == {"web": 9, "books": 7, "code": 4}
    rejects = root.scan_rejects(STAGE).collect()
    exact = rejects.filter(pl.col("reason") == "exact_duplicate")
    # the copy inside source a and the normalized copy in source b go; source a's originals survive
    assert sorted(exact["source"].to_list()) == ["a", "b"]
    kept = root.scan(STAGE).collect()
    assert kept["doc_id"].is_unique().all()
    assert set(exact["duplicate_of"].to_list()) <= set(kept["doc_id"].to_list())
    near = rejects.filter(pl.col("reason") == "near_duplicate")
    assert near.height == 1 and near["source"][0] == "b"
    assert near["duplicate_of"][0] in kept["doc_id"].to_list()
    assert rejects.filter(pl.col("reason") == "gopher_quality")["excerpt"].to_list() == ["too short"]
    assert reports["code"].rows_kept == 4, "code is not judged by prose rules"
    assert set(rejects["stage"].to_list()) == {"curation"}
    # determinism: a second run gives the same survivors and the same rejects
    first_kept = sorted(kept["doc_id"].to_list())
    first_rejects = rejects.sort("doc_id", "reason").to_dicts()
    curate(spec)
    assert sorted(root.scan(STAGE).collect()["doc_id"].to_list()) == first_kept
    assert root.scan_rejects(STAGE).collect().sort("doc_id", "reason").to_dicts() == first_rejects


def test_disabled_stage_passes_everything_through(tmp_path, data_root):
    data = _corpus(tmp_path, random.Random(9))
    data["curation"] = {"enabled": False}
    spec = spec_from_dict(data, path=tmp_path / "spec.yaml")
    reports = _run(spec)
    root = DataRoot(spec.data_root)
    assert all(c["ok"] and c["dropped"] == 0 for c in check_accounting(root, spec.domains).values())
    assert sum(r.rows_kept for r in reports.values()) == 20


def test_bad_curation_section_fails_at_load(tmp_path):
    data = _corpus(tmp_path, random.Random(10))
    data["curation"] = {"near_dedup": {"treshold": 0.5}}
    with pytest.raises(SpecError, match=r"curation\.near_dedup\.treshold"):
        spec_from_dict(data, path=tmp_path / "spec.yaml")
