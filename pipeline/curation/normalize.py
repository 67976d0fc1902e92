"""Text normalizations shared by the dedup steps (as SQL for DuckDB and as polars expressions)."""

from __future__ import annotations

import polars as pl

from pipeline.config.curation import ExactDedupConfig, MinHashConfig


def exact_key_sql(column: str, config: ExactDedupConfig) -> str:
    """DuckDB expression: the MD5 of the normalized text, the exact-dedup key.

    NFC first, so that precomposed and combining forms of the same letter are one text.
    """
    expr = f"nfc_normalize({column})"
    if config.collapse_whitespace:
        expr = f"regexp_replace({expr}, '\\s+', ' ', 'g')"
    expr = f"trim({expr})"
    if config.lowercase:
        expr = f"lower({expr})"
    return f"md5({expr})"


def minhash_words(text: pl.Expr, config: MinHashConfig) -> pl.Expr:
    """List of normalized word tokens per document (DataTrove's simplify_text, then ``\\w+`` words)."""
    if config.strip_accents:
        text = text.str.normalize("NFKD").str.replace_all(r"\p{Mn}", "")
    if config.lowercase:
        text = text.str.to_lowercase()
    if config.normalize_numbers:
        text = text.str.replace_all(r"\p{Nd}+(?:[.,]\p{Nd}+)?", "0")
    # \w+ drops punctuation and symbols, which is what replacing them by spaces then splitting does.
    return text.str.extract_all(r"\w+")


def minhash_chars(text: pl.Expr, config: MinHashConfig) -> pl.Expr:
    """Normalized text for character shingles: as for words, then words joined by single spaces."""
    return minhash_words(text, config).list.join(" ")
