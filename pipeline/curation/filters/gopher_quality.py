"""Gopher quality rules (Rae et al., 2021, "Scaling Language Models", appendix A.1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipeline.curation.filters.base import Batch, DocFilter, Rule, threshold_rule


@dataclass(frozen=True)
class GopherQualityConfig:
    """Gopher quality rules (Rae et al., 2021, "Scaling Language Models", appendix A.1.1)."""

    enabled: bool = True
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3.0
    max_avg_word_length: float | None = 10.0
    # '#' count and ellipsis count, each relative to the number of words.
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    # At least this fraction of words must contain an alphabetic character.
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])


class GopherQualityFilter(DocFilter):
    """Gopher quality rules (Rae et al., 2021, A.1.1).

    Follows the paper: word counts and the mean word length use words that are not pure
    punctuation/symbols; '#' and ellipsis counts are relative to all words; stop words are matched
    case-insensitively (DataTrove matches them case-sensitively). Bullet / ellipsis line shares are
    over non-empty lines (DataTrove counts empty lines too, which dilutes them).
    """

    name = "gopher_quality"
    order = 10
    Config = GopherQualityConfig
    profiles = {
        # Source code: stop words, alphabetic words and word lengths describe English prose, not programs.
        "code": {"enabled": False},
        # Maths: formulas and LaTeX are words of digits and symbols; problems are short. Keep a minimal length.
        "math": {"min_doc_words": 10, "max_doc_words": None, "min_avg_word_length": None, "max_avg_word_length": None,
                 "min_alpha_words_ratio": None, "min_stop_words": None, "max_symbol_word_ratio": None,
                 "max_bullet_lines_ratio": None},
        # Dialogue: many short turns ("USER: yes.").
        "dialogue": {"min_doc_words": 10, "min_stop_words": 1, "max_avg_word_length": 12.0},
        # Marked-up documentation (wikitext, reStructuredText, Markdown, POD, man pages): prose inside
        # directives, tables and code samples, so fewer alphabetic words and more '#' than web prose;
        # links and identifiers are long words (16: bench/bench_curation_docs.py, package READMEs).
        "markup": {"min_doc_words": 20, "min_alpha_words_ratio": 0.6, "max_symbol_word_ratio": 0.3,
                   "max_avg_word_length": 16.0},
        # Reference entries (glossaries, dictionaries, API tables): short, terse, few stop words.
        "reference": {"min_doc_words": 5, "min_stop_words": None, "min_alpha_words_ratio": 0.5,
                      "max_symbol_word_ratio": 0.3, "max_avg_word_length": 15.0, "max_bullet_lines_ratio": None},
    }

    def rules(self, batch: Batch) -> tuple[pl.DataFrame, list[Rule]]:
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
            threshold_rule("min_doc_words", pl.col("n_real"), "<", c.min_doc_words),
            threshold_rule("max_doc_words", pl.col("n_real"), ">", c.max_doc_words),
            threshold_rule("min_avg_word_length", pl.col("avg_len"), "<", c.min_avg_word_length),
            threshold_rule("max_avg_word_length", pl.col("avg_len"), ">", c.max_avg_word_length),
            threshold_rule("max_hash_word_ratio", pl.col("hashes") / n_words, ">", c.max_symbol_word_ratio),
            threshold_rule("max_ellipsis_word_ratio", pl.col("ellipses") / n_words, ">", c.max_symbol_word_ratio),
            threshold_rule("max_bullet_lines_ratio", pl.col("bullets") / n_lines, ">", c.max_bullet_lines_ratio),
            threshold_rule("max_ellipsis_lines_ratio", pl.col("ellipsis_lines") / n_lines, ">", c.max_ellipsis_lines_ratio),
            threshold_rule("min_alpha_words_ratio", pl.col("n_alpha") / n_words, "<", c.min_alpha_words_ratio),
            threshold_rule("min_stop_words", pl.col("n_stop"), "<", c.min_stop_words),
        ]
        return stats, [r for r in rules if r is not None]
