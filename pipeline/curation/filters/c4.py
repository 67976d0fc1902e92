"""C4 rules (Raffel et al., 2020, section 2.2; TFDS ``c4_utils``), applied as a document filter."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.curation.filters.base import WORD, Batch, DocFilter, Rule, threshold_rule

_POLICY = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
_SENTENCE_END = r"[.?!]+(?:\s|$)"


@dataclass(frozen=True)
class C4Config:
    """C4 rules (Raffel et al., 2020, section 2.2), applied as a document filter.

    A line "survives" if it ends in terminal punctuation (or is hard-wrapped into a paragraph that
    does), has at least ``min_words_per_line`` words and mentions neither "javascript" nor a
    cookie/terms-of-use phrase. A document is dropped if it contains "lorem ipsum", if a surviving
    line holds a curly bracket, or if the surviving lines hold fewer than ``min_num_sentences``
    sentences. Unlike C4 (and DataTrove), we never rewrite the kept text: the stage keeps documents
    byte-identical to staging so ``doc_id`` stays the hash of what is kept.
    """

    enabled: bool = True
    min_num_sentences: int | None = 5
    min_words_per_line: int = 3
    max_word_length: int | None = 1000
    filter_no_terminal_punct: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class C4Filter(DocFilter):
    """C4 rules as a document filter; see ``C4Config``.

    C4 judges lines of web text, where one line is one block of the page. Hard-wrapped text (reST,
    Markdown, man pages, e-mail, books) breaks a sentence over several lines, and only the last line of
    a paragraph ends in punctuation; counted line by line, a 17-sentence page counts 4. So the
    terminal-punctuation test is applied to the wrapped line's paragraph: a line that does not end in
    punctuation survives when a later line of its paragraph (no blank line between) does, and its
    sentence ends count too. Sentences are runs of terminal punctuation followed by a space or the
    line's end (at least one per line that ends in punctuation), instead of a sentence tokenizer.
    The line-level boilerplate tests (javascript, policy phrases, too few words) stay per line, except
    that the last line of a wrapped sentence is not judged "too short" on its own.
    """

    name = "c4"
    order = 30
    Config = C4Config
    # Code, maths, dialogue and documentation are not web pages: brackets, unpunctuated lines and
    # short turns are their format, not boilerplate.
    profiles = {profile: {"enabled": False} for profile in ("code", "math", "dialogue", "markup", "reference")}

    def rules(self, batch: Batch) -> tuple[pl.DataFrame, list[Rule]]:
        c = self.config
        line = pl.col("line").str.replace_all(_CITATION, "")
        lower = pl.col("line").str.to_lowercase()
        ends = line.str.contains(r"[.?!\"']$") & ~line.str.ends_with("...")
        survives = pl.col("line") != ""
        if c.max_word_length is not None:
            survives &= ~pl.col("line").str.contains(rf"\S{{{c.max_word_length + 1}}}")
        if c.filter_no_terminal_punct:
            survives &= pl.col("wrapped_end")
        # the end of a wrapped sentence ("the link.") is no short line of its own
        survives &= (pl.col("line").str.count_matches(WORD) >= c.min_words_per_line) | pl.col("continues")
        if c.filter_javascript:
            survives &= ~lower.str.contains("javascript", literal=True)
        if c.filter_policy:
            survives &= ~lower.str.contains("|".join(_POLICY))
        sentences = pl.col("line").str.count_matches(_SENTENCE_END)
        sentences = pl.when(pl.col("ends")).then(pl.max_horizontal(sentences, pl.lit(1))).otherwise(sentences)
        lines = batch.lines.with_columns(
            ends.alias("ends"),
            (pl.col("line") == "").cum_sum().over("idx").alias("para"),
        ).with_columns(
            # a line "ends" its sentence when it, or a later line of its paragraph, ends in punctuation
            pl.col("ends").cast(pl.Int8).reverse().cum_max().reverse().over("idx", "para").cast(pl.Boolean)
            .alias("wrapped_end"),
            (pl.col("ends").shift(1).over("idx", "para") == False).fill_null(False).alias("continues"),  # noqa: E712
        )
        per_doc = (
            lines.with_columns(survives.alias("ok"), sentences.alias("n_sent"))
            .group_by("idx")
            .agg(
                pl.col("line").filter(pl.col("ok")).str.contains("{", literal=True).any().alias("curly"),
                pl.col("n_sent").filter(pl.col("ok")).sum().alias("sentences"),
            )
        )
        stats = (
            batch.docs.select("idx", pl.col("text").str.to_lowercase().str.contains("lorem ipsum", literal=True).alias("lorem"))
            .join(per_doc, on="idx", how="left")
            .with_columns(pl.col("curly").fill_null(False), pl.col("sentences").fill_null(0))
        )
        rules = []
        if c.filter_lorem_ipsum:
            rules.append(Rule("lorem_ipsum", pl.col("lorem"), pl.lit("lorem_ipsum")))
        if c.filter_curly_bracket:
            rules.append(Rule("curly_bracket", pl.col("curly"), pl.lit("curly_bracket in a kept line")))
        if c.min_num_sentences is not None:
            rules.append(threshold_rule("min_num_sentences", pl.col("sentences"), "<", c.min_num_sentences))
        return stats, rules
