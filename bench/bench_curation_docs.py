"""Curation on documentation the filters were never tuned on: kept fraction per profile.

Corpora, built on the spot from what this machine ships (no download), each document one file:

- ``man``: man pages (``/usr/share/man/man1``, a seeded sample), rendered to plain text by groff
  (``-Tutf8``, no overstrike), hard-wrapped at 80 columns;
- ``pod``: the POD of Perl's own modules (``/usr/share/perl/<version>``, ``.pod`` files and the POD
  blocks of ``.pm`` files), with ``C<$h{key}>``-style braces in its prose;
- ``python_docs``: reStructuredText/Markdown from the installed Python packages (``*.rst``, ``*.md``
  and the README long descriptions in ``*.dist-info/METADATA``);
- ``debian_readme``: ``/usr/share/doc/*/README*`` plain-text files;
- the shared corpora's ``techdocs_python311_rst`` (reST) and ``ref_foldoc`` (dictionary entries).

Every document is legitimate documentation, so the kept fraction is the figure of merit (goal >= 90%
for the documentation profiles). Each corpus is filtered under every profile (the chain a domain with
that profile runs; dedup is not involved), plus the profile a domain named like the issue's gets by
the name guess. The prose rows show what the prose rules (now with the hard-wrap-aware sentence count)
do to documentation; the web-text rows (shared corpora) show that the prose profile is unchanged there.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from bench.corpus import RAW, REPO

PROFILES = ("prose", "markup", "reference")
MIN_BYTES = 400  # smaller files are stubs ("see the HTML docs"), not documentation
MAX_BYTES = 400_000


def _keep(text: str | None) -> bool:
    return bool(text) and MIN_BYTES <= len(text.encode("utf-8", "replace")) <= MAX_BYTES


def man_pages(n: int, rng: random.Random) -> list[str]:
    pages = sorted(Path("/usr/share/man/man1").glob("*.1*"))
    out = []
    for path in rng.sample(pages, min(len(pages), n * 2)):
        if len(out) >= n:
            break
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=80n"], input=raw, capture_output=True,
                                  timeout=20, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired, gzip.BadGzipFile):
            continue
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if _keep(text):
            out.append(text)
    return out


def perl_pod(n: int, rng: random.Random) -> list[str]:
    roots = sorted(p for p in Path("/usr/share/perl").glob("5.*") if p.is_dir() and not p.is_symlink())
    files = sorted(f for root in roots for f in list(root.rglob("*.pod")) + list(root.rglob("*.pm")))
    out = []
    for path in rng.sample(files, len(files)):
        if len(out) >= n:
            break
        text = path.read_text(encoding="utf-8", errors="replace")
        blocks = re.findall(r"^=[a-zA-Z].*?(?:^=cut\b.*?$|\Z)", text, flags=re.M | re.S)
        pod = "\n\n".join(b.strip() for b in blocks)
        if _keep(pod):
            out.append(pod)
    return out


def python_docs(n: int, rng: random.Random) -> list[str]:
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    texts = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".rst", ".md") and path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        elif path.name == "METADATA" and path.parent.name.endswith(".dist-info"):
            body = path.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)
            texts.append(body[1] if len(body) == 2 else "")
    texts = [t for t in texts if _keep(t)]
    return rng.sample(texts, min(n, len(texts)))


def debian_readmes(n: int, rng: random.Random) -> list[str]:
    out = []
    paths = sorted(Path("/usr/share/doc").glob("*/README*"))
    for path in rng.sample(paths, len(paths)):
        if len(out) >= n:
            break
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except (OSError, gzip.BadGzipFile):
            continue
        text = raw.decode("utf-8", "replace")
        if _keep(text):
            out.append(text)
    return out


def shared(name: str, n: int, rng: random.Random) -> list[str]:
    from pipeline.config.staging import SourceConfig
    from pipeline.readers import read_source_file

    path = RAW / name
    if not path.exists():
        return []
    source = SourceConfig(name="s", path=str(path), domain="d")
    texts = [r.text for r in read_source_file(source, path) if _keep(r.text)]
    return rng.sample(texts, min(n, len(texts)))


def kept_fraction(texts: list[str], profile: str) -> tuple[float, dict[str, int]]:
    """Share of ``texts`` the chain of ``profile`` keeps, and the drops by first failing rule."""
    from pipeline.config.curation import CurationConfig
    from pipeline.config.typed import build
    from pipeline.curation.filters import apply_filters, filters_for, rule_of

    config = build(CurationConfig, {"domains": {"d": {"profile": profile}}})
    verdict = apply_filters(pl.Series(texts, dtype=pl.String), filters_for(config.for_domain("d")))
    dropped = verdict.filter(pl.col("reason").is_not_null())
    rules = dropped.select((pl.col("reason") + "." + rule_of(pl.col("detail"))).alias("rule"))["rule"].value_counts(sort=True)
    return round(1 - dropped.height / len(texts), 4), dict(rules.head(3).iter_rows())


def run(quick: bool = False) -> dict:
    from pipeline.config.curation import guess_profile

    n = 60 if quick else 300
    rng = random.Random(18)
    started = time.perf_counter()
    corpora = {
        "man": (man_pages(n, rng), "man_pages"),
        "pod": (perl_pod(n, rng), "perl_docs"),
        "python_docs": (python_docs(n, rng), "python_docs"),
        "debian_readme": (debian_readmes(n, rng), "debian_readme"),
        "techdocs_python311_rst": (shared("techdocs_python311_rst.jsonl.zst", n, rng), "kernel_docs"),
        "ref_foldoc": (shared("ref_foldoc.jsonl.zst", n, rng), "glossary"),
        # web-like prose from the shared corpora: the prose profile's own territory
        "web_us_speeches": (shared("web_us_speeches.jsonl.zst", n, rng), "speeches"),
        "science_scitldr": (shared("science_scitldr_abstracts.jsonl.zst", n, rng), "science"),
        "books_gutenberg": (shared("books_gutenberg.jsonl.zst", n, rng), "books"),
    }
    build_s = time.perf_counter() - started
    table = {}
    for corpus, (texts, domain_name) in corpora.items():
        if not texts:
            continue
        guessed = guess_profile(domain_name)[0]
        row = {"documents": len(texts), "domain_named": domain_name, "guessed_profile": guessed}
        for profile in PROFILES:
            kept, top = kept_fraction(texts, profile)
            row[profile] = kept
            row[f"{profile}_top_drops"] = top
        row["kept_with_guess"] = row[guessed] if guessed in PROFILES else kept_fraction(texts, guessed)[0]
        table[corpus] = row
    return {"corpora": table, "corpus_build_s": round(build_s, 1),
            "note": "each document is one legitimate file; kept = share passing the profile's filter chain"}


def summarize(f: dict) -> str:
    lines = ["| corpus | docs | prose | markup | reference | domain named | guessed profile: kept |",
             "|---|---|---|---|---|---|---|"]
    for corpus, r in f["corpora"].items():
        lines.append(f"| {corpus} | {r['documents']} | {r['prose']:.1%} | {r['markup']:.1%} | {r['reference']:.1%} | "
                     f"`{r['domain_named']}` | {r['guessed_profile']}: {r['kept_with_guess']:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    print(json.dumps(figures, indent=1))
    print(summarize(figures))
