"""What every quality filter shares: the batch view, the rule shape, the registry, the chain.

A filter is a ``DocFilter`` subclass in its own module of this package (see ``__init__``). It names
its rules: ``rules(batch)`` returns one frame of per-document statistics (with ``idx``) and a list of
``Rule`` (name, ``fails`` expression, ``detail`` expression). The shared code turns that into the
stage's verdict (the first failing rule, ``evaluate``) or into one flag per rule (``rule_verdicts``,
for the dry run), so a filter never writes that logic itself.

Words are whitespace-separated tokens (as in the Gopher paper and Dolma), not a language model's
tokenizer: that is both much faster and what the published thresholds were tuned on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import numpy as np
import polars as pl

WORD = r"\S+"

# name -> filter class, filled by ``DocFilter.__init_subclass__`` as the filter modules are imported.
FILTERS: dict[str, type[DocFilter]] = {}


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
            self.docs.select("idx", pl.col("text").str.extract_all(WORD).alias("word"))
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


class Rule(NamedTuple):
    """One rule of a filter: ``fails`` (boolean expression) and ``detail`` (a string starting with ``name``)."""

    name: str
    fails: pl.Expr
    detail: pl.Expr


def fmt(expr: pl.Expr, digits: int = 3) -> pl.Expr:
    return expr.cast(pl.Float64).round(digits).cast(pl.String)


def threshold_rule(name: str, value: pl.Expr, op: str, limit: float | int | None) -> Rule | None:
    """``value < limit`` (op "<") or ``value > limit`` fails; ``None`` when the rule is switched off."""
    if limit is None:
        return None
    fails = value < limit if op == "<" else value > limit
    return Rule(name, fails, pl.format(f"{name}: {{}} {op} {limit}", fmt(value)))


def first_failure(stats: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
    """``detail`` = the detail of the first rule whose ``fails`` is true (null when none fails)."""
    if not rules:
        return stats.select("idx", pl.lit(None, dtype=pl.String).alias("detail"))
    detail = pl.coalesce([pl.when(r.fails.fill_null(False)).then(r.detail) for r in rules])
    return stats.select("idx", detail.cast(pl.String).alias("detail"))


def rule_of(detail: pl.Expr) -> pl.Expr:
    """The rule's name at the start of a reject ``detail`` ("min_stop_words: 1 < 2" -> "min_stop_words")."""
    return detail.str.extract(r"^([A-Za-z0-9_]+)", 1)


class DocFilter(ABC):
    """A quality filter. Subclasses set ``name``, ``order``, ``Config`` and optionally ``profiles``.

    ``Config`` is a frozen dataclass with an ``enabled: bool = True`` field and the prose defaults; it is
    the spec section ``curation.<name>`` (and ``curation.domains.<d>.<name>`` for a domain's overrides).
    ``profiles`` maps a profile name to the fields it changes, e.g. ``{"code": {"enabled": False}}``.
    """

    name: ClassVar[str]
    order: ClassVar[int]  # position in the chain: a document's reject reason is the first filter that fails it
    Config: ClassVar[type]
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in FILTERS and FILTERS[cls.name] is not cls:
                raise ValueError(f"two quality filters are named {cls.name!r}")
            FILTERS[cls.name] = cls

    def __init__(self, config):
        self.config = config

    @abstractmethod
    def rules(self, batch: Batch) -> tuple[pl.DataFrame, list[Rule]]:
        """Per-document statistics (an ``idx`` column and what the rules read) and the enabled rules."""

    def evaluate(self, batch: Batch) -> pl.DataFrame:
        """(idx, detail) for every document of ``batch``; detail null = keep."""
        stats, rules = self.rules(batch)
        return first_failure(stats, rules)

    def rule_verdicts(self, batch: Batch) -> pl.DataFrame:
        """(idx, one column per rule): each rule judged alone, its detail where it fails, else null."""
        stats, rules = self.rules(batch)
        return stats.select("idx", *[pl.when(r.fails.fill_null(False)).then(r.detail).cast(pl.String).alias(r.name)
                                     for r in rules])


def registered() -> list[type[DocFilter]]:
    """Every registered filter, in chain order."""
    return sorted(FILTERS.values(), key=lambda f: (f.order, f.name))


def filters_for(domain) -> list[DocFilter]:
    """The enabled filters of a domain (``DomainFilters``), in the order they are checked."""
    return [FILTERS[name](cfg) for name, cfg in domain.sections.items() if cfg.enabled]


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
