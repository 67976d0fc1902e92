"""Per-domain defaults on the real code, math and dialogue corpora keep >= 90% of the documents."""

from __future__ import annotations

import random

import polars as pl
import pytest

from pipeline.config.curation import CurationConfig
from pipeline.config.staging import SourceConfig
from pipeline.curation.filters import apply_filters, filters_for
from pipeline.readers import read_source_file
from tests.conftest import CORPORA

CASES = [
    # (file, domain profile, source settings)
    ("code_go_stdlib.parquet", "code", {"text_field": "content"}),
    ("math_gsm8k_train.jsonl", "math", {"template": "Question: {question}\nAnswer: {answer}"}),
    ("math_openlogic.jsonl.zst", "math", {}),
    ("math_stacks_project.jsonl.zst", "math", {}),
    ("dialogue_sgd.jsonl.gz", "dialogue", {}),
]
SAMPLE = 600
BUDGET = 3_000_000


def _sample(name: str, settings: dict) -> list[str]:
    path = CORPORA / name
    source = SourceConfig(name="s", path=str(path), domain="d", **settings)
    texts = list(dict.fromkeys(r.text for r in read_source_file(source, path, batch_rows=4096) if r.text))
    random.Random(0).shuffle(texts)  # distinct texts: the non-duplicates
    picked, size = [], 0
    for text in texts[:SAMPLE]:  # at most SAMPLE documents and about BUDGET characters, to stay fast
        if picked and size + len(text) > BUDGET:
            break
        picked.append(text)
        size += len(text)
    return picked


@pytest.mark.needs_shared
@pytest.mark.parametrize("name,domain,settings", CASES, ids=[c[0].split(".")[0] for c in CASES])
def test_domain_defaults_keep_90_percent(name, domain, settings):
    config = CurationConfig()
    texts = _sample(name, settings)
    kept = apply_filters(pl.Series(texts), filters_for(config.for_domain(domain)))["reason"].is_null().mean()
    assert kept >= 0.90, f"{name}: the {domain} defaults keep only {kept:.1%}"
    # and the prose rules would have destroyed it (the reason the profiles exist)
    if domain in ("code", "math"):
        prose = apply_filters(pl.Series(texts), filters_for(config.for_domain("prose")))["reason"].is_null().mean()
        assert prose < 0.5
