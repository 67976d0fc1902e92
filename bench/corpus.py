"""The shared corpora as benchmarks stage them: one spec source per raw file, README's suggested domains."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAW = REPO.parent / "shared" / "corpora" / "raw"
GSM8K_TEMPLATE = "Question: {question}\nAnswer: {answer}"

# file -> (domain, source name); the domains are ../shared/corpora/README.md's "suggested domain".
CORPUS: dict[str, tuple[str, str]] = {
    "books_gutenberg.jsonl.zst": ("books", "gutenberg"),
    "code_go_stdlib.parquet": ("code", "go_stdlib"),
    "dialogue_sgd.jsonl.gz": ("dialogue", "sgd"),
    "law_uslm_usgov.jsonl.zst": ("law", "uslm_usgov"),
    "law_spdx_license_texts.jsonl.zst": ("law", "spdx_licenses"),
    "math_gsm8k_train.jsonl": ("math", "gsm8k"),
    "math_stacks_project.jsonl.zst": ("math", "stacks_project"),
    "math_openlogic.jsonl.zst": ("math", "openlogic"),
    "ref_cia_factbook.jsonl.zst": ("encyclopedia", "cia_factbook"),
    "ref_wikipedia_gensim_sample.jsonl.zst": ("encyclopedia", "wikipedia"),
    "ref_foldoc.jsonl.zst": ("encyclopedia", "foldoc"),
    "science_scitldr_abstracts.jsonl.zst": ("science", "scitldr"),
    "science_lightandmatter_physics.jsonl.zst": ("science", "lightandmatter"),
    "techdocs_python311_rst.jsonl.zst": ("techdocs", "python311_docs"),
    "web_movie_reviews.jsonl.zst": ("web_ugc", "movie_reviews"),
    "web_us_speeches.jsonl.zst": ("speeches", "us_speeches"),
}


def source_entries(files: list[str] | None = None, *, raw: Path = RAW) -> list[dict]:
    """Spec `sources` entries for ``files`` (default: all of them, in name order)."""
    entries = []
    for name in files or sorted(CORPUS):
        domain, source = CORPUS[name]
        entry = {"name": source, "path": str(raw / name), "domain": domain}
        if name.endswith(".parquet"):
            entry["text_field"] = "content"
        if name == "math_gsm8k_train.jsonl":
            entry["template"] = GSM8K_TEMPLATE
        entries.append(entry)
    return entries


def write_spec(folder: Path, name: str, files: list[str] | None = None, *, raw: Path = RAW, **sections) -> Path:
    """A spec over the shared corpora in ``folder`` (data root ``folder/data``); returns its path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "seed": 0, "data_root": str(folder / "data"), "sources": source_entries(files, raw=raw),
            **sections}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
