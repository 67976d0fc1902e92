"""Issue 17 item 9: folder sources read the extensions the spec names, and say so when nothing matches."""

from __future__ import annotations

import pytest

from pipeline.readers import read_source_file
from pipeline.spec import SpecError, spec_from_dict


@pytest.fixture
def rst_corpus(tmp_path):
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    for i in range(3):
        (docs / "guide" / f"page{i}.rst").write_text(f"Page {i}\n=======\n\n.. note:: reStructuredText {i}\n")
    (docs / "README.TXT").write_text("plain text")
    (docs / "logo.png").write_bytes(b"\x89PNG")
    return tmp_path


def _spec(base, **source):
    return spec_from_dict({"name": "t", "sources": [{"name": "docs", "path": "docs", "domain": "docs", **source}]},
                          path=base / "spec.yaml")


def test_folder_reads_the_extensions_the_spec_names(rst_corpus):
    default = _spec(rst_corpus)
    assert [p.name for p in default.source_files["docs"]] == ["README.TXT"]  # .txt and .md by default
    spec = _spec(rst_corpus, extensions=[".rst", ".txt"])
    files = spec.source_files["docs"]
    assert sorted(p.name for p in files) == ["README.TXT", "page0.rst", "page1.rst", "page2.rst"]
    rows = [r for f in files for r in read_source_file(spec.sources[0], f)]
    assert all(r.reason is None for r in rows) and any("reStructuredText 1" in r.text for r in rows)


def test_a_folder_matching_nothing_names_the_extension_filter(rst_corpus):
    (rst_corpus / "docs" / "README.TXT").unlink()
    with pytest.raises(SpecError) as err:
        _spec(rst_corpus)
    message = str(err.value)
    assert "sources[0].path" in message and ".txt, .md" in message and "sources[0].extensions" in message
    assert ".rst (3)" in message  # what the folder holds instead
    with pytest.raises(SpecError, match="extensions: 'rst' must be a file name ending with its dot"):
        _spec(rst_corpus, extensions=["rst"])


def test_a_glob_of_named_extension_files_reads_as_text(rst_corpus):
    spec = _spec(rst_corpus, path="docs/guide/*.rst", extensions=[".rst"])
    rows = list(read_source_file(spec.sources[0], spec.source_files["docs"][0]))
    assert rows[0].text.startswith("Page 0")
