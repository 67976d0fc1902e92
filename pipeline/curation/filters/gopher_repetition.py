"""Gopher repetition rules (Rae et al., 2021, table A1), vectorized."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipeline.curation.filters.base import Batch, DocFilter, Rule, threshold_rule
from pipeline.curation.hashes import mix64


@dataclass(frozen=True)
class GopherRepetitionConfig:
    """Gopher repetition rules (Rae et al., 2021, table A1)."""

    enabled: bool = True
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    # Lines / paragraphs shorter than this (stripped characters) are ignored by the duplicate counts:
    # 0 counts every non-empty one (the paper); code sets it higher so lone braces do not count.
    min_line_chars: int = 0
    # Most frequent n-gram's character share, n = 2, 3, 4.
    top_ngram_char_frac: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # Share of characters covered by n-grams that occur more than once, n = 5..10.
    dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


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
    order = 20
    Config = GopherRepetitionConfig
    # Code, maths, markup: only substantial lines count (closing braces, "----" underlines and directive
    # lines repeat in every healthy file) and the n-gram rules are loosened, since identifiers, call
    # patterns and formula pieces legitimately recur. Dialogue repeats politeness formulas and speaker tags.
    profiles = {
        "code": {"min_line_chars": 12, "dup_line_frac": 0.5, "dup_line_char_frac": 0.5, "dup_para_frac": 0.5,
                 "dup_para_char_frac": 0.5, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.6}},
        "math": {"min_line_chars": 12, "dup_line_frac": 0.5, "dup_line_char_frac": 0.5, "dup_para_frac": 0.5,
                 "dup_para_char_frac": 0.5, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.5}},
        "dialogue": {"dup_line_frac": 0.5, "dup_line_char_frac": 0.4, "dup_para_frac": None, "dup_para_char_frac": None,
                     "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.4}},
        "markup": {"min_line_chars": 12, "dup_line_frac": 0.4, "dup_line_char_frac": 0.3, "dup_para_frac": 0.4,
                   "dup_para_char_frac": 0.3, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.3}},
        # Reference entries share one format ("n.", "See also", "Syn."): only long repeated passages count.
        "reference": {"min_line_chars": 12, "dup_line_frac": 0.5, "dup_line_char_frac": 0.5, "dup_para_frac": 0.5,
                      "dup_para_char_frac": 0.5, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.5}},
    }

    def rules(self, batch: Batch) -> tuple[pl.DataFrame, list[Rule]]:
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
            threshold_rule("dup_para_frac", pl.col("p_d") / pl.max_horizontal(pl.col("p_n"), pl.lit(1)), ">", c.dup_para_frac),
            threshold_rule("dup_para_char_frac", pl.col("p_c") / chars, ">", c.dup_para_char_frac),
            threshold_rule("dup_line_frac", pl.col("l_d") / pl.max_horizontal(pl.col("l_n"), pl.lit(1)), ">", c.dup_line_frac),
            threshold_rule("dup_line_char_frac", pl.col("l_c") / chars, ">", c.dup_line_char_frac),
        ]
        rules += [threshold_rule(f"top_{n}gram_char_frac", pl.col(f"top_{n}"), ">", f) for n, f in sorted(c.top_ngram_char_frac.items())]
        rules += [threshold_rule(f"dup_{n}gram_char_frac", pl.col(f"dup_{n}"), ">", f) for n, f in sorted(c.dup_ngram_char_frac.items())]
        return stats, [r for r in rules if r is not None]

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
