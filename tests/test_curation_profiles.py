"""Issue 18: profiles that are explicit and visible, a dry run, rules that hold on documentation, the
drop guard, and the filter registry (a filter is one class in one module)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from assets.cli import main as cli_main
from pipeline.config.curation import PROFILES, CurationConfig, DomainCurationConfig
from pipeline.config.typed import build
from pipeline.curation.dry_run import format_preview, preview_domain
from pipeline.curation.filters import FILTERS, C4Config, C4Filter, apply_filters, filters_for, registered
from pipeline.curation.run import curate
from pipeline.spec import SpecError, spec_from_dict
from pipeline.staging import stage_domain
from pipeline.store import DataRoot
from tests.conftest import REPO
from tests.test_curation import _prose, _verdict

# Hard-wrapped prose: 17 sentences, wrapped at 60 columns, so most lines end mid-sentence.
SENTENCES = [f"The endpoint controller number {i} configures the bus and then reports the state of the link."
             for i in range(17)]
WRAPPED = "\n".join(textwrap.wrap(" ".join(SENTENCES), 60))

# Perl POD: braces inside the prose (C<$h{key}>), =head lines without punctuation, an indented sample.
POD = """=head1 NAME

Hash::Walker - visit every key of a nested hash

=head1 SYNOPSIS

    use Hash::Walker;
    walk(\\%config, sub { my ($path, $value) = @_; print "$path\\n" });

=head1 DESCRIPTION

This module walks a nested hash and calls the callback for each leaf. Use C<$h{key}> to read one
value and C<@{$h{list}}> to read a list of them. The walk is depth first and the order of the keys is
the order that C<sort> gives, so that two runs on the same data visit the keys in the same order.
A callback that returns false stops the walk at once.

=head1 AUTHOR

Written by the maintainers of the module, who keep it small on purpose.

=cut
"""


def _spec(tmp_path, domains: dict[str, list[str]], curation: dict | None = None):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    sources = []
    for domain, texts in domains.items():
        (raw / f"{domain}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        sources.append({"name": domain, "path": f"raw/{domain}.jsonl", "domain": domain})
    data = {"name": "t", "seed": 1, "sources": sources, **({"curation": curation} if curation else {})}
    (tmp_path / "spec.yaml").write_text(json.dumps(data))
    return spec_from_dict(data, path=tmp_path / "spec.yaml")


# ---------------------------------------------------------------- 1. profiles explicit and visible


def test_name_guess_is_a_visible_default_and_a_set_profile_wins(tmp_path, capsys):
    _spec(tmp_path, {"zorblax": [WRAPPED], "kernel_docs": [WRAPPED], "entries": [WRAPPED]},
          {"domains": {"entries": {"profile": "reference"}}})
    assert cli_main(["validate", str(tmp_path / "spec.yaml")]) == 0
    out = capsys.readouterr().out
    # a name unlike any built-in profile: prose, and the user is told how to change it
    assert "zorblax: profile prose (guessed from the name; set curation.domains.zorblax.profile)" in out
    assert "kernel_docs: profile markup (guessed from the word 'docs' of the name; " \
           "set curation.domains.kernel_docs.profile)" in out
    assert "entries: profile reference (set in curation.domains.entries.profile)" in out


def test_unknown_domain_under_curation_domains_is_refused_with_the_list(tmp_path):
    with pytest.raises(SpecError, match=r"curation\.domains\.perl_doc: unknown domain "
                                        r"\(the spec's domains: perl_docs, web\)"):
        _spec(tmp_path, {"perl_docs": [POD], "web": [WRAPPED]}, {"domains": {"perl_doc": {"profile": "markup"}}})


def test_defaults_list_every_profile(capsys):
    assert cli_main(["defaults"]) == 0
    out = capsys.readouterr().out
    for profile in ("prose", "code", "math", "dialogue", "markup", "reference", "none"):
        assert f"#   {profile}: " in out
    assert "#       c4: {'enabled': False}" in out  # what markup changes, shown


def test_profile_none_switches_every_filter_off():
    config = build(CurationConfig, {"domains": {"raw": {"profile": "none"}}})
    assert filters_for(config.for_domain("raw")) == []
    assert set(PROFILES) == {"prose", "code", "math", "dialogue", "markup", "reference", "none"}


# ---------------------------------------------------------------- 2. the dry run


def test_dry_run_shows_per_rule_drops_with_examples(tmp_path, capsys):
    pods = [POD.replace("Hash::Walker", f"Hash::Walker{i}") for i in range(6)]
    good = [_prose(random.Random(i), 150) for i in range(4)]
    _spec(tmp_path, {"pod_as_prose": pods + good, "perl_docs": pods},
          {"domains": {"pod_as_prose": {"profile": "prose"}}})
    assert cli_main(["validate", str(tmp_path / "spec.yaml"), "--sample", "20"]) == 0
    out = capsys.readouterr().out
    assert "pod_as_prose: profile prose: the filters would drop 6 of 10 sampled documents (60%)" in out
    assert "c4.curly_bracket would drop 60% of pod_as_prose" in out
    block = out.split("c4.curly_bracket would drop 60% of pod_as_prose")[1].splitlines()
    assert block[1].strip().startswith("e.g. pod_as_prose.jsonl#") and block[2].strip().startswith("e.g. ")
    assert "perl_docs: profile markup: the filters would drop 0 of 6 sampled documents (0%)" in out


# ---------------------------------------------------------------- 3. rules that hold on technical text


def test_hard_wrapped_prose_counts_sentences_not_lines():
    f = C4Filter(C4Config())
    assert _verdict(f, [WRAPPED]) == [None]
    stats, _ = f.rules(__import__("pipeline.curation.filters", fromlist=["Batch"]).Batch(pl.Series([WRAPPED])))
    assert stats["sentences"].to_list() == [17]
    # web boilerplate is still judged line by line: navigation lines without punctuation count no
    # sentence, and a page of two real sentences is still too short
    page = "Home\nAbout us\nContact\nLogin\nWe sell shoes in the city centre. Come and see us soon.\nPrivacy"
    (detail,) = _verdict(f, [page])
    assert detail.startswith("min_num_sentences: 2")


def test_pod_with_braces_is_kept_by_the_documentation_profile():
    config = CurationConfig()
    as_docs = filters_for(config.for_domain("perl_docs"))  # guessed: markup
    assert config.profile_of("perl_docs") == "markup" and "c4" not in [f.name for f in as_docs]
    assert apply_filters(pl.Series([POD]), as_docs)["reason"].to_list() == [None]
    # the prose profile's C4 bracket rule is what destroyed it
    verdict = apply_filters(pl.Series([POD]), filters_for(config.for_domain("zorblax")))
    assert verdict["reason"].to_list() == ["c4"] and verdict["detail"][0].startswith("curly_bracket")


# ---------------------------------------------------------------- 4. the guard


def test_guard_warns_with_top_reasons_in_stats_and_closing_lines(tmp_path, data_root, caplog):
    from pipeline.curation.closing import closing_lines

    short = [f"Entry {i}: a short gloss of the word." for i in range(8)]
    spec = _spec(tmp_path, {"zorblax": short + [_prose(random.Random(1), 150)],
                            "web": [_prose(random.Random(i), 150) for i in range(2, 5)]})
    for domain in spec.domains:
        stage_domain(spec, domain)
    said = []
    reports = curate(spec, progress=said.append)
    guard = reports["zorblax"].guard
    assert guard["rows_dropped_fraction"] == pytest.approx(8 / 9, abs=1e-3) and guard["limit"] == 0.5
    assert list(guard["top_reasons"]) == ["gopher_quality.min_doc_words"]
    assert reports["web"].guard is None
    assert any(s.startswith("WARNING: curation dropped 89% of zorblax's documents") for s in said)
    root = DataRoot(spec.data_root)
    assert root.read_stats("curated", "zorblax")["guard"]["top_reasons"] == {"gopher_quality.min_doc_words": 8}
    lines = closing_lines(root, spec.domains)
    assert "  zorblax: staging rejected 0 of 9 rows (0 rows in 0 quarantined files); curation (prose) dropped 8 of 9 " \
           "(89%)" in lines
    assert lines[-1].startswith("WARNING: curation dropped 89% of zorblax")
    # the limit is configurable, and null switches the guard off
    spec = spec_from_dict({**json.loads((tmp_path / "spec.yaml").read_text()),
                           "curation": {"guard": {"max_drop_fraction": None}}}, path=tmp_path / "spec.yaml")
    assert curate(spec)["zorblax"].guard is None


def test_guard_check_blocks_when_asked():
    import dagster as dg

    from assets.context import BuildContext
    from assets.curation import build_stage, guard_check
    from pipeline.curation.run import DomainReport

    spec = spec_from_dict({"name": "t", "sources": [{"name": "a", "path": str(REPO / "examples/default/spec.yaml"),
                                                     "domain": "web", "format": "text"}],
                           "curation": {"guard": {"check": "block"}}}, path=REPO / "spec.yaml")
    asset = build_stage(BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(["web"]))).assets[0]
    specs = {s.name: s.blocking for s in asset.check_specs}
    assert specs == {"accounting": True, "drop_guard": True}
    over = DomainReport("web", "prose", rows_in=10, rows_kept=2, guard={"message": "dropped 80%", "top_reasons": {"x": 8}})
    result = guard_check({"web": over}, blocking=True)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR


# ---------------------------------------------------------------- the registry (issue 12, item 4)


def test_registry_holds_the_builtin_filters_in_chain_order():
    assert [f.name for f in registered()] == ["gopher_quality", "gopher_repetition", "c4"]
    for f in registered():
        assert f.Config().enabled is True
        assert set(f.profiles) <= set(PROFILES)
        assert f.name in {x.name for x in __import__("dataclasses").fields(CurationConfig)}
        assert f.name in {x.name for x in __import__("dataclasses").fields(DomainCurationConfig)}
    assert FILTERS["c4"] is C4Filter


NEW_FILTER = '''
import dataclasses, json, sys
import polars as pl
from pipeline.curation.filters.base import DocFilter, Rule

@dataclasses.dataclass(frozen=True)
class ShoutConfig:
    enabled: bool = True
    max_upper_ratio: float = 0.5

class ShoutFilter(DocFilter):
    """Too many upper-case letters: the one class a newcomer writes."""
    name = "shout"
    order = 40
    Config = ShoutConfig
    profiles = {"code": {"enabled": False}}

    def rules(self, batch):
        stats = batch.docs.select("idx", (pl.col("text").str.count_matches("[A-Z]")
                                          / pl.col("text").str.len_chars()).alias("upper"))
        fails = pl.col("upper") > self.config.max_upper_ratio
        return stats, [Rule("max_upper_ratio", fails, pl.format("max_upper_ratio: {}", pl.col("upper").round(2)))]

from pipeline.config.typed import build
from pipeline.config.curation import CurationConfig
from pipeline.curation.filters import apply_filters, filters_for
config = build(CurationConfig, {"shout": {"max_upper_ratio": 0.4}, "domains": {"web": {"profile": "none", "shout": {"enabled": True}}}})
texts = pl.Series(["BUY NOW " * 40, "quiet words " * 40])
web = apply_filters(texts, filters_for(config.for_domain("web")))
code = [f.name for f in filters_for(config.for_domain("code"))]
print(json.dumps({"web": web["reason"].to_list(), "detail": web["detail"][0], "code": code}))
'''


def test_a_new_filter_is_one_class_registered_by_name(tmp_path):
    """A filter defined in one place (here a script; in the package, one module) gets its spec section,
    its per-domain overrides, its profile adjustments and its place in the chain, with no other edit."""
    out = subprocess.run([sys.executable, "-c", NEW_FILTER], cwd=REPO, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["web"] == ["shout", None] and got["detail"].startswith("max_upper_ratio: 0.")
    assert got["code"] == ["gopher_repetition"]  # the new filter's own profile data switched it off for code
