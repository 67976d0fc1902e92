"""Spec section `curation` (owned by the curation stage).

Order of the stage: exact dedup (global) -> heuristic quality filters (per domain) -> MinHash-LSH
near-duplicate removal (global, over the documents the filters kept). Every threshold below is a
field; ``None`` switches a single rule off, ``enabled: false`` a whole filter.

Filter settings are resolved per domain: the top-level ``gopher_quality`` / ``gopher_repetition`` /
``c4`` sections are the *prose* defaults; a domain is curated with a *profile* (``prose``, ``code``,
``math``, ``dialogue``) whose built-in adjustments are applied on top (``PROFILE_OVERRIDES``), then the
domain's own overrides from ``domains.<name>``. A domain named in ``DOMAIN_PROFILES`` (``code``,
``math``, ``dialogue``, ``encyclopedia``, ``techdocs``, ...) gets that profile unless it names another
one, so the embedded spec's domains are not judged by prose rules that count symbols and formulas as
words or take wiki templates for JavaScript.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config.typed import ConfigError, build

Profile = Literal["prose", "code", "math", "dialogue", "markup"]


@dataclass(frozen=True)
class ExactDedupConfig:
    """Exact duplicates: documents whose normalized text is identical (MD5 of the normalized text)."""

    enabled: bool = True
    # Normalization before hashing: Unicode NFC always; then optionally lower-case and collapse every
    # whitespace run to one space (leading/trailing whitespace always ignored).
    lowercase: bool = True
    collapse_whitespace: bool = True


@dataclass(frozen=True)
class MinHashConfig:
    """Near duplicates: MinHash signatures, LSH banding, verified candidate pairs, union-find clusters.

    Defaults: word 3-grams, 20 bands x 5 rows (100 permutations; LSH S-curve midpoint ~0.55), and every
    candidate pair verified against ``threshold`` on the signature-estimated Jaccard similarity. The low
    banding threshold gives recall; the verification keeps the precision a single 0.7 cut-off promises.
    """

    enabled: bool = True
    shingle: Literal["word", "char"] = "word"
    ngram: int = 3
    num_perm: int = 100
    bands: int = 20
    rows: int = 5
    # Jaccard similarity at or above which two documents are duplicates.
    threshold: float = 0.7
    # Check each candidate pair's estimated Jaccard (fraction of equal signature entries) against the
    # threshold; off means any shared band bucket makes a pair (DataTrove's behaviour).
    verify: bool = True
    # Text normalization before shingling (as DataTrove's simplify_text): lower case, strip accents,
    # numbers -> "0", punctuation -> space.
    lowercase: bool = True
    strip_accents: bool = True
    normalize_numbers: bool = True

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.num_perm < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError("ngram, num_perm, bands and rows must be positive")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")


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


@dataclass(frozen=True)
class C4Config:
    """C4 rules (Raffel et al., 2020, section 2.2), applied as a document filter.

    A line "survives" if it ends in terminal punctuation, has at least ``min_words_per_line`` words and
    mentions neither "javascript" nor a cookie/terms-of-use phrase. A document is dropped if it contains
    "lorem ipsum", if a surviving line holds a curly bracket, or if the surviving lines hold fewer than
    ``min_num_sentences`` sentences. Unlike C4 (and DataTrove), we never rewrite the kept text: the stage
    keeps documents byte-identical to staging so ``doc_id`` stays the hash of what is kept.
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


FILTER_SECTIONS: dict[str, type] = {
    "gopher_quality": GopherQualityConfig,
    "gopher_repetition": GopherRepetitionConfig,
    "c4": C4Config,
}

# Built-in adjustments per profile, applied over the top-level (prose) filter sections.
PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "prose": {},
    # Source code: word-shape rules (stop words, alphabetic words, word length, terminal punctuation,
    # curly brackets) describe English prose, not programs. Keep the repetition rules, but only for
    # substantial lines (closing braces and blank-ish lines repeat in every healthy file) and with the
    # n-gram rules loosened, since identifiers and call patterns legitimately recur.
    "code": {
        "gopher_quality": {"enabled": False},
        "c4": {"enabled": False},
        "gopher_repetition": {
            "min_line_chars": 12, "dup_line_frac": 0.5, "dup_line_char_frac": 0.5, "dup_para_frac": 0.5,
            "dup_para_char_frac": 0.5, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.6},
        },
    },
    # Maths: formulas and LaTeX are words of digits and symbols; problems are short. Keep a minimal
    # length and the repetition rules for boilerplate; drop the prose-shape rules.
    "math": {
        "gopher_quality": {
            "min_doc_words": 10, "max_doc_words": None, "min_avg_word_length": None, "max_avg_word_length": None,
            "min_alpha_words_ratio": None, "min_stop_words": None, "max_symbol_word_ratio": None,
            "max_bullet_lines_ratio": None,
        },
        "c4": {"enabled": False},
        "gopher_repetition": {
            "min_line_chars": 12, "dup_line_frac": 0.5, "dup_line_char_frac": 0.5, "dup_para_frac": 0.5,
            "dup_para_char_frac": 0.5, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.5},
        },
    },
    # Dialogue: many short turns ("USER: yes.") that end without punctuation, repeat politeness
    # formulas, and speaker tags that dominate the top n-grams.
    "dialogue": {
        "gopher_quality": {"min_doc_words": 10, "min_stop_words": 1, "max_avg_word_length": 12.0},
        "c4": {"enabled": False},
        "gopher_repetition": {
            "dup_line_frac": 0.5, "dup_line_char_frac": 0.4, "dup_para_frac": None, "dup_para_char_frac": None,
            "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.4},
        },
    },
    # Marked-up reference text (wikitext, reStructuredText, Markdown docs): prose inside templates,
    # tables and directives. Curly brackets, headings without punctuation, "====" underlines and
    # repeated directive lines are the format, not low quality.
    "markup": {
        "gopher_quality": {"min_doc_words": 20, "min_alpha_words_ratio": 0.6, "max_symbol_word_ratio": 0.3,
                           "max_avg_word_length": 12.0},
        "c4": {"enabled": False},
        "gopher_repetition": {
            "min_line_chars": 12, "dup_line_frac": 0.4, "dup_line_char_frac": 0.3, "dup_para_frac": 0.4,
            "dup_para_char_frac": 0.3, "top_ngram_char_frac": {}, "dup_ngram_char_frac": {10: 0.3},
        },
    },
}

# Domain names that pick a profile without saying so (any other name: "prose").
DOMAIN_PROFILES: dict[str, str] = {
    "code": "code", "math": "math", "dialogue": "dialogue",
    "encyclopedia": "markup", "reference": "markup", "techdocs": "markup", "docs": "markup", "law": "markup",
}


@dataclass(frozen=True)
class DomainCurationConfig:
    """Per-domain settings: a profile and partial overrides of the filter sections."""

    profile: Profile | None = None
    # Take part in near-duplicate removal (documents of a domain that opts out are never removed as
    # near copies, and never make other documents near copies either).
    near_dedup: bool | None = None
    gopher_quality: dict[str, Any] | None = None
    gopher_repetition: dict[str, Any] | None = None
    c4: dict[str, Any] | None = None


@dataclass(frozen=True)
class DomainFilters:
    """The resolved filter settings of one domain."""

    profile: str
    near_dedup: bool
    gopher_quality: GopherQualityConfig
    gopher_repetition: GopherRepetitionConfig
    c4: C4Config


@dataclass(frozen=True)
class CurationConfig:
    enabled: bool = True
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: MinHashConfig = field(default_factory=MinHashConfig)
    filters_enabled: bool = True
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    domains: dict[str, DomainCurationConfig] = field(default_factory=dict)
    # Text per batch (filters and shingling work on one batch at a time, vectorized): bounds the
    # stage's memory; larger batches are barely faster.
    batch_bytes: int = 2_000_000
    excerpt_chars: int = 200

    def __post_init__(self) -> None:
        for name in self.domains:  # validate every override now, so a bad key fails at load time
            try:
                self.for_domain(name)
            except ConfigError as exc:
                raise ConfigError(f"domains.{name}.{exc.path}", exc.message) from None

    def profile_of(self, domain: str) -> str:
        own = self.domains.get(domain)
        if own is not None and own.profile is not None:
            return own.profile
        return DOMAIN_PROFILES.get(domain, "prose")

    def for_domain(self, domain: str) -> DomainFilters:
        """Top-level section <- profile adjustments <- the domain's overrides."""
        own = self.domains.get(domain) or DomainCurationConfig()
        profile = self.profile_of(domain)
        resolved = {}
        for section, cls in FILTER_SECTIONS.items():
            base = dataclasses.asdict(getattr(self, section))
            base.update(PROFILE_OVERRIDES[profile].get(section, {}))
            base.update(getattr(own, section) or {})
            resolved[section] = build(cls, base, section)
        near = own.near_dedup if own.near_dedup is not None else True
        return DomainFilters(profile=profile, near_dedup=near, **resolved)
