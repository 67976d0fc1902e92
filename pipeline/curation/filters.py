"""Heuristic quality filters, evaluated on a whole batch of documents at once with polars.

Each filter is a small class with its parameters (a section of the spec) and a ``name``; ``evaluate``
returns one row per document of the batch: ``idx`` and ``detail``, where ``detail`` is null for a
kept document and otherwise names the first failing rule with the measured value, e.g.
``"min_stop_words: 1 < 2"``. The reject reason is the filter's name.

Words are whitespace-separated tokens (as in the Gopher paper and Dolma), not a language model's
tokenizer: that is both much faster and what the published thresholds were tuned on. Where the
Gopher paper, its DataTrove port and our choice differ, the class docstring says which we follow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np
import polars as pl

from pipeline.config.curation import C4Config, DomainFilters, GopherQualityConfig, GopherRepetitionConfig
from pipeline.curation.minhash import mix64

_WORD = r"\S+"


class Batch:
    """One batch of documents and its derived views (built once, shared by every filter)."""

    def __init__(self, texts: pl.Series):
        # \r\n and lone \r are line breaks too (Gutenberg texts use \r\n).
        text = texts.cast(pl.String).str.replace_all("\r\n?", "\n")
        self.docs = pl.DataFrame({"text": text}).with_row_index("idx")

    def __len__(self) -> int:
        return self.docs.height

    @cached_property
    def lines(self) -> pl.DataFrame:
        """(idx, line) for every line, stripped; empty lines kept (callers decide)."""
        return (
            self.docs.select("idx", pl.col("text").str.split("\n").alias("line"))
            .explode("line")
            .with_columns(pl.col("line").fill_null("").str.strip_chars())
        )

    @cached_property
    def paragraphs(self) -> pl.DataFrame:
        """(idx, para): blocks separated by blank lines, stripped."""
        return (
            self.docs.select(
                "idx",
                pl.col("text").str.replace_all(r"\n(?:[ \t]*\n)+", "\x00").str.split("\x00").alias("para"),
            )
            .explode("para")
            .with_columns(pl.col("para").fill_null("").str.strip_chars())
        )

    @cached_property
    def words(self) -> pl.DataFrame:
        """(idx, word, chars) for every whitespace-separated word, in text order."""
        return (
            self.docs.select("idx", pl.col("text").str.extract_all(_WORD).alias("word"))
            .explode("word")
            .drop_nulls("word")
            .with_columns(pl.col("word").str.len_chars().alias("chars"))
        )

    @cached_property
    def word_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(doc index int64, word hash uint64, word length int64) as NumPy arrays."""
        w = self.words
        return (
            w["idx"].cast(pl.Int64).to_numpy(),
            w["word"].hash(seed=17).to_numpy(),
            w["chars"].cast(pl.Int64).to_numpy(),
        )


def first_failure(stats: pl.DataFrame, rules: list[tuple[pl.Expr, pl.Expr]]) -> pl.DataFrame:
    """``detail`` = the detail of the first rule whose ``fails`` is true (null when none fails)."""
    if not rules:
        return stats.select("idx", pl.lit(None, dtype=pl.String).alias("detail"))
    detail = pl.coalesce([pl.when(fails.fill_null(False)).then(text) for fails, text in rules])
    return stats.select("idx", detail.cast(pl.String).alias("detail"))


def _fmt(expr: pl.Expr, digits: int = 3) -> pl.Expr:
    return expr.cast(pl.Float64).round(digits).cast(pl.String)


def _rule(name: str, value: pl.Expr, op: str, limit: float | int | None) -> tuple[pl.Expr, pl.Expr] | None:
    if limit is None:
        return None
    fails = value < limit if op == "<" else value > limit
    return fails, pl.format(f"{name}: {{}} {op} {limit}", _fmt(value))


class DocFilter(ABC):
    name: str

    @abstractmethod
    def evaluate(self, batch: Batch) -> pl.DataFrame:
        """(idx, detail) for every document of ``batch``; detail null = keep."""


class GopherQualityFilter(DocFilter):
    """Gopher quality rules (Rae et al., 2021, A.1.1).

    Follows the paper: word counts and the mean word length use words that are not pure
    punctuation/symbols; '#' and ellipsis counts are relative to all words; stop words are matched
    case-insensitively (DataTrove matches them case-sensitively). Bullet / ellipsis line shares are
    over non-empty lines (DataTrove counts empty lines too, which dilutes them).
    """

    name = "gopher_quality"

    def __init__(self, config: GopherQualityConfig):
        self.config = config

    def evaluate(self, batch: Batch) -> pl.DataFrame:
        c = self.config
        n_docs = len(batch)
        words = batch.words
        idx = words["idx"].cast(pl.Int64).to_numpy()
        real = ~words["word"].str.contains(r"^[\p{P}\p{S}]+$").to_numpy()
        alpha = words["word"].str.contains(r"\p{L}").to_numpy()
        stop_list = sorted({w.lower() for w in c.stop_words})
        # stop-word number per word (-1: none); distinct (document, stop word) pairs counted per document
        code = (words["word"].str.to_lowercase()
                .replace_strict(stop_list, list(range(len(stop_list))), default=-1, return_dtype=pl.Int64).to_numpy())
        hit = code >= 0
        pairs = np.unique(idx[hit] * (len(stop_list) + 1) + code[hit]) // (len(stop_list) + 1)
        chars = words["chars"].cast(pl.Int64).to_numpy()
        n_real = np.bincount(idx, weights=real, minlength=n_docs)
        with np.errstate(invalid="ignore", divide="ignore"):
            avg_len = np.bincount(idx, weights=chars * real, minlength=n_docs) / n_real
        per_doc = pl.DataFrame({
            "idx": np.arange(n_docs, dtype=np.uint32),
            "n_words": np.bincount(idx, minlength=n_docs),
            "n_real": n_real,
            "avg_len": np.where(n_real > 0, avg_len, np.nan),
            "n_alpha": np.bincount(idx, weights=alpha, minlength=n_docs),
            "n_stop": np.bincount(pairs, minlength=n_docs),
        }).with_columns(pl.col("avg_len").fill_nan(None))
        lines = batch.lines.filter(pl.col("line") != "").group_by("idx").agg(
            pl.len().alias("n_lines"),
            pl.col("line").str.contains(r"^[•\-\*‣◦●▪–]").sum().alias("bullets"),
            (pl.col("line").str.ends_with("...") | pl.col("line").str.ends_with("…")).sum().alias("ellipsis_lines"),
        )
        stats = (
            batch.docs.select(
                "idx",
                pl.col("text").str.count_matches("#", literal=True).alias("hashes"),
                (pl.col("text").str.count_matches("...", literal=True)
                 + pl.col("text").str.count_matches("…", literal=True)).alias("ellipses"),
            )
            .join(per_doc, on="idx", how="left")
            .join(lines, on="idx", how="left")
            .with_columns(pl.col("n_words", "n_real", "n_alpha", "n_stop", "n_lines", "bullets", "ellipsis_lines")
                          .fill_null(0))
        )
        n_words = pl.max_horizontal(pl.col("n_words"), pl.lit(1))
        n_lines = pl.max_horizontal(pl.col("n_lines"), pl.lit(1))
        rules = [
            _rule("min_doc_words", pl.col("n_real"), "<", c.min_doc_words),
            _rule("max_doc_words", pl.col("n_real"), ">", c.max_doc_words),
            _rule("min_avg_word_length", pl.col("avg_len"), "<", c.min_avg_word_length),
            _rule("max_avg_word_length", pl.col("avg_len"), ">", c.max_avg_word_length),
            _rule("max_hash_word_ratio", pl.col("hashes") / n_words, ">", c.max_symbol_word_ratio),
            _rule("max_ellipsis_word_ratio", pl.col("ellipses") / n_words, ">", c.max_symbol_word_ratio),
            _rule("max_bullet_lines_ratio", pl.col("bullets") / n_lines, ">", c.max_bullet_lines_ratio),
            _rule("max_ellipsis_lines_ratio", pl.col("ellipsis_lines") / n_lines, ">", c.max_ellipsis_lines_ratio),
            _rule("min_alpha_words_ratio", pl.col("n_alpha") / n_words, "<", c.min_alpha_words_ratio),
            _rule("min_stop_words", pl.col("n_stop"), "<", c.min_stop_words),
        ]
        return first_failure(stats, [r for r in rules if r is not None])


def _dup_items(items: pl.DataFrame, column: str, min_chars: int) -> pl.DataFrame:
    """Per document: number of items, number of repeated items, characters in repeated items.

    A repeat is every occurrence after the first (as in the paper's "duplicate line fraction").
    """
    kept = items.filter(pl.col(column).str.len_chars() >= max(min_chars, 1))
    groups = kept.group_by("idx", column).agg(pl.len().alias("n"), pl.col(column).first().str.len_chars().alias("c"))
    return groups.group_by("idx").agg(
        pl.col("n").sum().alias("items"),
        (pl.col("n") - 1).sum().alias("dups"),
        ((pl.col("n") - 1) * pl.col("c")).sum().alias("dup_chars"),
    )


_NGRAM_SEED = 0x5EED_1234


def _ngram_keys(doc: np.ndarray, h: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(start positions, key) of every n-gram lying inside one document."""
    size = len(h)
    if size < n:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
    weights = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    key = h[: size - n + 1] * weights[0]
    for k in range(1, n):
        key = key + h[k: size - n + 1 + k] * weights[k]
    starts = np.flatnonzero(doc[: size - n + 1] == doc[n - 1:])
    return starts, mix64(key[starts] ^ np.uint64(_NGRAM_SEED + n))


def _ngram_counts(doc: np.ndarray, h: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(start positions, occurrences of that n-gram in its document) for every in-document n-gram.

    Counting sorts one uint64 key per n-gram (n-gram hash mixed with the document index) instead of
    grouping a frame: a few arrays of the batch's word count, nothing more.
    """
    starts, key = _ngram_keys(doc, h, n)
    if len(starts) == 0:
        return starts, np.empty(0, dtype=np.int64)
    keyed = mix64(key ^ (doc[starts].astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)))
    _, inverse, counts = np.unique(keyed, return_inverse=True, return_counts=True)
    return starts, counts[inverse]


class GopherRepetitionFilter(DocFilter):
    """Gopher repetition rules (Rae et al., 2021, table A1), vectorized.

    Line/paragraph rules: share of repeated items and of characters in repeated items (occurrences
    after the first, over the text's characters). N-gram rules follow the paper (and RedPajama-V2's
    implementation) rather than DataTrove: for n = 5..10, the share of word characters covered by any
    occurrence of an n-gram that occurs more than once, overlaps counted once; for n = 2..4, the share
    of word characters taken by the most frequent n-gram, counted only if it occurs at least twice
    (DataTrove also fires on a short text whose only 2-gram occurs once).
    """

    name = "gopher_repetition"

    def __init__(self, config: GopherRepetitionConfig):
        self.config = config

    def evaluate(self, batch: Batch) -> pl.DataFrame:
        c = self.config
        lines = _dup_items(batch.lines, "line", c.min_line_chars)
        paras = _dup_items(batch.paragraphs, "para", c.min_line_chars)
        stats = (
            batch.docs.select("idx", pl.col("text").str.len_chars().alias("chars"))
            .join(lines.rename({"items": "l_n", "dups": "l_d", "dup_chars": "l_c"}), on="idx", how="left")
            .join(paras.rename({"items": "p_n", "dups": "p_d", "dup_chars": "p_c"}), on="idx", how="left")
            .fill_null(0)
        )
        ngram_cols = self._ngram_stats(batch)
        for name, values in ngram_cols.items():
            stats = stats.with_columns(pl.Series(name, values))
        chars = pl.max_horizontal(pl.col("chars"), pl.lit(1))
        rules = [
            _rule("dup_para_frac", pl.col("p_d") / pl.max_horizontal(pl.col("p_n"), pl.lit(1)), ">", c.dup_para_frac),
            _rule("dup_para_char_frac", pl.col("p_c") / chars, ">", c.dup_para_char_frac),
            _rule("dup_line_frac", pl.col("l_d") / pl.max_horizontal(pl.col("l_n"), pl.lit(1)), ">", c.dup_line_frac),
            _rule("dup_line_char_frac", pl.col("l_c") / chars, ">", c.dup_line_char_frac),
        ]
        rules += [_rule(f"top_{n}gram_char_frac", pl.col(f"top_{n}"), ">", f) for n, f in sorted(c.top_ngram_char_frac.items())]
        rules += [_rule(f"dup_{n}gram_char_frac", pl.col(f"dup_{n}"), ">", f) for n, f in sorted(c.dup_ngram_char_frac.items())]
        return first_failure(stats, [r for r in rules if r is not None])

    def _ngram_stats(self, batch: Batch) -> dict[str, np.ndarray]:
        c = self.config
        n_docs = len(batch)
        out: dict[str, np.ndarray] = {}
        if not c.top_ngram_char_frac and not c.dup_ngram_char_frac:
            return out
        doc, h, length = batch.word_arrays
        word_chars = np.maximum(np.bincount(doc, weights=length, minlength=n_docs), 1)
        cum = np.r_[0, np.cumsum(length)]
        for n in sorted(c.top_ngram_char_frac):
            starts, count = _ngram_counts(doc, h, n)
            top = np.zeros(n_docs)
            if len(starts):
                # chars of the n-gram starting at each position, times how often it occurs (if > 1)
                value = np.where(count > 1, count * (cum[starts + n] - cum[starts]), 0)
                np.maximum.at(top, doc[starts], value)
            out[f"top_{n}"] = top / word_chars
        for n in sorted(c.dup_ngram_char_frac):
            starts, count = _ngram_counts(doc, h, n)
            covered_chars = np.zeros(n_docs)
            if len(starts):
                dup_starts = starts[count > 1]
                delta = np.bincount(dup_starts, minlength=len(h) + n + 1) - np.bincount(dup_starts + n, minlength=len(h) + n + 1)
                covered = np.cumsum(delta)[: len(h)] > 0
                covered_chars = np.bincount(doc, weights=length * covered, minlength=n_docs)
            out[f"dup_{n}"] = covered_chars / word_chars
        return out


_POLICY = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"


class C4Filter(DocFilter):
    """C4 rules (Raffel et al., 2020; TFDS c4_utils) as a document filter; see ``C4Config``.

    Sentences in surviving lines are counted as runs of terminal punctuation followed by a space or
    the line's end (at least one per line), instead of a sentence tokenizer.
    """

    name = "c4"

    def __init__(self, config: C4Config):
        self.config = config

    def evaluate(self, batch: Batch) -> pl.DataFrame:
        c = self.config
        line = pl.col("line").str.replace_all(_CITATION, "")
        lower = pl.col("line").str.to_lowercase()
        survives = pl.col("line") != ""
        if c.max_word_length is not None:
            survives &= ~pl.col("line").str.contains(rf"\S{{{c.max_word_length + 1}}}")
        if c.filter_no_terminal_punct:
            survives &= line.str.contains(r"[.?!\"']$") & ~line.str.ends_with("...")
        survives &= pl.col("line").str.count_matches(_WORD) >= c.min_words_per_line
        if c.filter_javascript:
            survives &= ~lower.str.contains("javascript", literal=True)
        if c.filter_policy:
            survives &= ~lower.str.contains("|".join(_POLICY))
        per_doc = (
            batch.lines.with_columns(survives.alias("ok"))
            .group_by("idx")
            .agg(
                pl.col("line").filter(pl.col("ok")).str.contains("{", literal=True).any().alias("curly"),
                pl.max_horizontal(pl.col("line").str.count_matches(r"[.?!]+(?:\s|$)"), pl.lit(1))
                .filter(pl.col("ok")).sum().alias("sentences"),
            )
        )
        stats = (
            batch.docs.select("idx", pl.col("text").str.to_lowercase().str.contains("lorem ipsum", literal=True).alias("lorem"))
            .join(per_doc, on="idx", how="left")
            .with_columns(pl.col("curly").fill_null(False), pl.col("sentences").fill_null(0))
        )
        rules = []
        if c.filter_lorem_ipsum:
            rules.append((pl.col("lorem"), pl.lit("lorem_ipsum")))
        if c.filter_curly_bracket:
            rules.append((pl.col("curly"), pl.lit("curly_bracket in a kept line")))
        if c.min_num_sentences is not None:
            rules.append(_rule("min_num_sentences", pl.col("sentences"), "<", c.min_num_sentences))
        return first_failure(stats, rules)


def filters_for(domain: DomainFilters) -> list[DocFilter]:
    """The enabled filters of a domain, in the order they are checked."""
    chain: list[DocFilter] = []
    if domain.gopher_quality.enabled:
        chain.append(GopherQualityFilter(domain.gopher_quality))
    if domain.gopher_repetition.enabled:
        chain.append(GopherRepetitionFilter(domain.gopher_repetition))
    if domain.c4.enabled:
        chain.append(C4Filter(domain.c4))
    return chain


def apply_filters(texts: pl.Series, chain: list[DocFilter]) -> pl.DataFrame:
    """(idx, reason, detail) for every document of the batch; reason null = kept.

    Every filter sees the whole batch (vectorized), and a document's reason is the first filter in
    the chain that rejects it.
    """
    batch = Batch(texts)
    result = batch.docs.select("idx", pl.lit(None, dtype=pl.String).alias("reason"),
                               pl.lit(None, dtype=pl.String).alias("detail"))
    for f in chain:
        verdict = f.evaluate(batch).sort("idx")
        fresh = result["reason"].is_null() & verdict["detail"].is_not_null()
        result = result.with_columns(
            pl.when(fresh).then(pl.lit(f.name)).otherwise(pl.col("reason")).alias("reason"),
            pl.when(fresh).then(verdict["detail"]).otherwise(pl.col("detail")).alias("detail"),
        )
    return result
