"""The embedded example keeps a useful share of every domain under curation's default filters (issue 17
item 14: its encyclopedia domain used to lose 77 of 100 documents as redirect stubs)."""

from pipeline.curation.filters import apply_filters, filters_for
from pipeline.spec import load_spec
from pipeline.staging import stage_domain
from pipeline.store import DataRoot
from tests.conftest import EXAMPLE_SPEC

MIN_DOCUMENTS = 40
MIN_KEPT_FRACTION = 0.75

def test_every_domain_keeps_a_useful_share_under_the_default_filters(data_root):
    spec = load_spec(EXAMPLE_SPEC)
    root = DataRoot(data_root)
    kept = {}
    for domain in spec.domains:
        stage_domain(spec, domain, root=root)
        texts = root.scan("documents", [domain]).select("text").collect()["text"]
        verdict = apply_filters(texts, filters_for(spec.curation.for_domain(domain)))
        kept[domain] = (int(verdict["reason"].is_null().sum()), texts.len())
    small = {d: k for d, k in kept.items() if k[0] < MIN_DOCUMENTS or k[0] < MIN_KEPT_FRACTION * k[1]}
    assert not small, f"(kept, staged) documents per domain below a useful share: {small}"
