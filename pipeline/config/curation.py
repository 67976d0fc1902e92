"""Spec section `curation` (owned by the curation stage).

Order of the stage: exact dedup (global) -> heuristic quality filters (per domain) -> MinHash-LSH
near-duplicate removal (global, over the documents the filters kept). Every threshold below is a
field; ``None`` switches a single rule off, ``enabled: false`` a whole filter.

The quality filters come from the registry in ``pipeline/curation/filters`` (one module per filter);
each contributes a section ``curation.<filter>`` holding its *prose* defaults. A domain is curated
with a *profile* (``PROFILES``): each filter says what the profile changes in its section, then the
domain's own overrides from ``domains.<name>`` apply. A domain states its profile in
``domains.<name>.profile``; without one the profile is guessed from the domain's name
(``guess_profile``), and ``curamix validate`` prints which profile each domain gets and why.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pipeline.config.typed import ConfigError, build
from pipeline.curation.filters import C4Config, GopherQualityConfig, GopherRepetitionConfig, registered

Profile = Literal["prose", "code", "math", "dialogue", "markup", "reference", "none"]


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


# Each filter's spec section (its prose defaults), in chain order; from the filter registry.
FILTER_SECTIONS: dict[str, type] = {f.name: f.Config for f in registered()}

# The profiles a domain can be curated with; what each changes is data on each filter (its ``profiles``).
PROFILES: dict[str, str] = {
    "prose": "web text, books, articles, speeches: every filter at its published defaults",
    "code": "source code: no prose-shape rules; repetition only on substantial lines",
    "math": "maths problems, proofs, LaTeX: formulas are not words; short texts allowed",
    "dialogue": "chat and dialogue turns: short unpunctuated turns, repeated formulas",
    "markup": "documentation and marked-up text (reST, Markdown, POD, man pages, wikitext): no C4 "
              "line/bracket rules, looser symbol and repetition limits",
    "reference": "reference entries (glossaries, dictionaries): short and identically formatted",
    "none": "no quality filter (deduplication still applies)",
}
assert set(get_args(Profile)) == set(PROFILES)


def profile_overrides(profile: str) -> dict[str, dict[str, Any]]:
    """What ``profile`` changes in each filter's section (``none`` switches every filter off)."""
    if profile == "none":
        return {name: {"enabled": False} for name in FILTER_SECTIONS}
    return {f.name: dict(f.profiles[profile]) for f in registered() if profile in f.profiles}


PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {p: profile_overrides(p) for p in PROFILES}

# The default guess: words of a domain's name that suggest a profile (any other name: "prose").
NAME_WORDS: dict[str, str] = {
    **dict.fromkeys(["code", "src", "source", "sources", "programs", "programming", "scripts"], "code"),
    **dict.fromkeys(["math", "maths", "mathematics", "arithmetic", "proofs"], "math"),
    **dict.fromkeys(["dialogue", "dialogues", "dialog", "chat", "chats", "conversation", "conversations"],
                    "dialogue"),
    **dict.fromkeys(["docs", "doc", "documentation", "techdocs", "manual", "manuals", "man", "manpages", "rst",
                     "markdown", "pod", "readme", "wiki", "wikipedia", "encyclopedia", "reference", "law", "legal"], "markup"),
    **dict.fromkeys(["glossary", "glossaries", "dictionary", "dictionaries", "lexicon", "thesaurus", "gloss",
                     "glosses", "definitions"], "reference"),
}


def guess_profile(domain: str) -> tuple[str, str | None]:
    """(profile, the word of the name it was guessed from); the last matching word wins ("perl_docs": docs)."""
    for word in reversed(re.split(r"[^a-z0-9]+", domain.lower())):
        if word in NAME_WORDS:
            return NAME_WORDS[word], word
    return "prose", None


@dataclass(frozen=True)
class GuardConfig:
    """Warn loudly when the stage drops more than ``max_drop_fraction`` of a domain (documents or bytes).

    The warning goes to the console, the asset's metadata and ``stats.json`` with the top reasons;
    ``check: block`` adds a blocking asset check (nothing downstream runs), ``warn`` a non-blocking one.
    """

    max_drop_fraction: float | None = 0.5
    check: Literal["off", "warn", "block"] = "off"

    def __post_init__(self) -> None:
        if self.max_drop_fraction is not None and not 0.0 <= self.max_drop_fraction <= 1.0:
            raise ConfigError("max_drop_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class DomainSettings:
    """Per-domain settings: a profile, near-dedup participation, and (added below) one partial override
    per filter section, e.g. ``domains: {web: {gopher_quality: {min_doc_words: 20}}}``."""

    profile: Profile | None = None
    # Take part in near-duplicate removal (documents of a domain that opts out are never removed as
    # near copies, and never make other documents near copies either).
    near_dedup: bool | None = None


DomainCurationConfig = dataclasses.make_dataclass(
    "DomainCurationConfig", [(name, dict[str, Any] | None, None) for name in FILTER_SECTIONS],
    bases=(DomainSettings,), frozen=True, namespace={"__doc__": DomainSettings.__doc__, "__module__": __name__})


@dataclass(frozen=True)
class DomainFilters:
    """The resolved filter settings of one domain: ``sections`` maps each filter to its config, in chain
    order (also readable as attributes: ``resolved.c4``)."""

    profile: str
    near_dedup: bool
    sections: dict[str, Any]

    def __getattr__(self, name: str):
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)


@dataclass(frozen=True)
class CurationSettings:
    """The section's own settings; each registered filter adds its section below (``CurationConfig``)."""

    enabled: bool = True
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: MinHashConfig = field(default_factory=MinHashConfig)
    filters_enabled: bool = True
    # Per domain: ``profile`` (see PROFILES; guessed from the name when unset), ``near_dedup`` and
    # overrides of the filter sections. Every key must be one of the spec's domains.
    domains: dict[str, DomainCurationConfig] = field(default_factory=dict)
    guard: GuardConfig = field(default_factory=GuardConfig)
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
        return self.profile_choice(domain)[0]

    def profile_choice(self, domain: str) -> tuple[str, str]:
        """(profile, why): set in the spec, or guessed from the domain's name."""
        own = self.domains.get(domain)
        if own is not None and own.profile is not None:
            return own.profile, f"set in curation.domains.{domain}.profile"
        profile, word = guess_profile(domain)
        source = f"guessed from the word {word!r} of the name" if word else "guessed from the name"
        return profile, f"{source}; set curation.domains.{domain}.profile"

    def for_domain(self, domain: str) -> DomainFilters:
        """Top-level section <- profile adjustments <- the domain's overrides."""
        own = self.domains.get(domain) or DomainCurationConfig()
        profile = self.profile_of(domain)
        adjust = PROFILE_OVERRIDES[profile]
        sections = {}
        for name, cls in FILTER_SECTIONS.items():
            base = dataclasses.asdict(getattr(self, name))
            base.update(adjust.get(name, {}))
            base.update(getattr(own, name) or {})
            sections[name] = build(cls, base, name)
        near = own.near_dedup if own.near_dedup is not None else True
        return DomainFilters(profile=profile, near_dedup=near, sections=sections)


CurationConfig = dataclasses.make_dataclass(
    "CurationConfig", [(name, cls, field(default_factory=cls)) for name, cls in FILTER_SECTIONS.items()],
    bases=(CurationSettings,), frozen=True, namespace={"__doc__": CurationSettings.__doc__, "__module__": __name__})


def check_domains(config: CurationSettings, domains: list[str]) -> None:
    """Refuse ``curation.domains`` keys that name no domain of the spec (a typo would be ignored)."""
    unknown = sorted(set(config.domains) - set(domains))
    if unknown:
        raise ConfigError(f"curation.domains.{unknown[0]}",
                          f"unknown domain (the spec's domains: {', '.join(domains)})")


__all__ = ["C4Config", "CurationConfig", "DomainCurationConfig", "DomainFilters", "ExactDedupConfig",
           "FILTER_SECTIONS", "GopherQualityConfig", "GopherRepetitionConfig", "GuardConfig", "MinHashConfig",
           "PROFILES", "check_domains", "guess_profile"]
