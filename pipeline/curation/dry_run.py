"""A dry run of the quality filters: what each rule would drop from a sample of every domain.

``curamix validate SPEC --sample N`` reads up to N documents per domain straight from the raw files
(as staging would: spread over the domain's files, rows without text left out), runs the domain's
filter chain on them, and reports per domain the share the chain would drop and, per rule judged
alone, the share it would drop with two example documents. Deduplication and pruning need the whole
corpus and are not part of it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import polars as pl

from pipeline.curation.filters import Batch, apply_filters, filters_for
from pipeline.readers import BadFileError, read_source_file
from pipeline.spec import Spec

EXAMPLES = 2


@dataclass
class RuleDrop:
    rule: str  # "<filter>.<rule>"
    fraction: float
    examples: list[tuple[str, str, str]]  # (file#row, the rule's detail, the text's start) of documents it drops


@dataclass
class DomainPreview:
    domain: str
    profile: str
    why: str
    documents: int
    dropped: int = 0
    rules: list[RuleDrop] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that staging would fail on or quarantine
    filters: list[str] = field(default_factory=list)  # the domain's chain


def sample_domain(spec: Spec, domain: str, n: int) -> tuple[pl.DataFrame, list[str]]:
    """Up to ``n`` documents of ``domain`` (where, text), a few from each file in a seeded order."""
    files = [(source, path) for source in spec.sources_for(domain) for path in spec.source_files[source.name]]
    random.Random(spec.seed_for(f"dry_run/{domain}")).shuffle(files)
    per_file = max(1, math.ceil(n / max(len(files), 1)))
    where, texts, problems = [], [], []
    for source, path in files:
        if len(texts) >= n:
            break
        taken = 0
        try:
            for row in read_source_file(source, path, batch_rows=256):
                if row.text and not row.text.isspace():
                    where.append(f"{path.name}#{row.row}")
                    texts.append(row.text)
                    taken += 1
                if taken >= per_file or len(texts) >= n:
                    break
        except BadFileError as exc:
            problems.append(f"{path.name}: {exc.reason}: {exc.detail}")
    return pl.DataFrame({"where": where, "text": texts}, schema={"where": pl.String, "text": pl.String}), problems


def preview_domain(spec: Spec, domain: str, n: int) -> DomainPreview:
    config = spec.curation
    profile, why = config.profile_choice(domain)
    sample, problems = sample_domain(spec, domain, n)
    preview = DomainPreview(domain, profile, why, sample.height, problems=problems)
    chain = filters_for(config.for_domain(domain)) if config.enabled and config.filters_enabled else []
    preview.filters = [f.name for f in chain]
    if not chain or sample.height == 0:
        return preview
    preview.dropped = int(apply_filters(sample["text"], chain)["reason"].is_not_null().sum())
    batch = Batch(sample["text"])
    for f in chain:
        verdicts = f.rule_verdicts(batch).sort("idx")
        for rule in verdicts.columns[1:]:
            failing = verdicts.with_columns(sample["where"], sample["text"]).filter(pl.col(rule).is_not_null())
            if failing.height:
                head = failing.head(EXAMPLES)
                examples = list(zip(head["where"], head[rule], head["text"].map_elements(_excerpt, pl.String)))
                preview.rules.append(RuleDrop(f"{f.name}.{rule}", failing.height / sample.height, examples))
    preview.rules.sort(key=lambda r: -r.fraction)
    return preview


def _excerpt(text: str, chars: int = 70) -> str:
    flat = " ".join(text.split())
    return repr(flat[:chars] + ("…" if len(flat) > chars else ""))


def format_preview(preview: DomainPreview) -> list[str]:
    """The lines ``curamix validate --sample`` prints for one domain."""
    share = preview.dropped / preview.documents if preview.documents else 0.0
    lines = [f"{preview.domain}: profile {preview.profile}: the filters would drop {preview.dropped} of "
             f"{preview.documents} sampled documents ({share:.0%})"]
    lines += [f"  problem: {p}" for p in preview.problems]
    for r in preview.rules:
        lines.append(f"  {r.rule} would drop {r.fraction:.0%} of {preview.domain}")
        lines += [f"      e.g. {where} ({detail}): {excerpt}" for where, detail, excerpt in r.examples]
    if not preview.filters:
        lines.append("  no quality filter runs on this domain (profile none, or filters switched off)")
    elif preview.documents and not preview.rules:
        lines.append("  no rule drops any sampled document")
    return lines
