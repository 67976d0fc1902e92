"""The spec: typed validation with file-and-key-path errors, format detection, derived seeds."""

import textwrap

import pytest

from assets.cli import main as cli_main
from pipeline.spec import SpecError, detect_format, load_spec, spec_from_dict
from tests.conftest import EXAMPLE_SPEC


def write_spec(tmp_path, body: str, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def raw(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "raw" / "b.parquet").write_bytes(b"")
    return tmp_path / "raw"


def test_example_spec_is_valid():
    spec = load_spec(EXAMPLE_SPEC)
    assert len(spec.domains) >= 6
    assert all(files for files in spec.source_files.values())
    assert spec.spec_hash == load_spec(EXAMPLE_SPEC).spec_hash


def test_glob_without_match_names_file_and_key_path(tmp_path, raw):
    path = write_spec(tmp_path, """
        name: t
        sources:
          - {name: a, path: raw/a.jsonl, domain: web}
          - {name: b, path: "raw/*.jsonl", domain: web}
          - {name: c, path: "raw/b.parquet", domain: web}
          - {name: d, path: "raw/missing/*.jsonl", domain: web}
    """)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == "spec.yaml: sources[3].path: no file matches 'raw/missing/*.jsonl'"


@pytest.mark.parametrize(
    "extra, message",
    [
        ("staging: {on_bad_file: ignore}", "spec.yaml: staging.on_bad_file: must be one of 'fail', 'quarantine', got 'ignore'"),
        ("staging: {max_doc_bytes: big}", "spec.yaml: staging.max_doc_bytes: must be an integer, got 'big'"),
        ("staging: {colour: blue}", "spec.yaml: staging.colour: unknown key"),
        ("seed: 1.5", "spec.yaml: seed: must be an integer, got 1.5"),
        ("tokenizer: {vocab_size: true}", "spec.yaml: tokenizer.vocab_size: must be an integer, got True"),
    ],
)
def test_wrong_types_and_unknown_keys_are_refused(tmp_path, raw, extra, message):
    path = write_spec(tmp_path, f"""
        name: t
        sources:
          - {{name: a, path: raw/a.jsonl, domain: web}}
        {extra}
    """)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(message)


def test_source_level_errors(tmp_path, raw):
    with pytest.raises(SpecError, match=r"sources\[0\]\.domain: unknown key|sources\[0\]\.domain: is required"):
        spec_from_dict({"name": "t", "sources": [{"name": "a", "path": "raw/a.jsonl"}]}, path=tmp_path / "s.yaml")
    with pytest.raises(SpecError, match=r"sources\[1\]\.name: 'a' is already used by sources\[0\]"):
        spec_from_dict({"name": "t", "sources": [{"name": "a", "path": "raw/a.jsonl", "domain": "x"}] * 2},
                       path=tmp_path / "s.yaml")
    with pytest.raises(SpecError, match=r"sources\[0\]: domain 'Web Text' must be lower-case"):
        spec_from_dict({"name": "t", "sources": [{"name": "a", "path": "raw/a.jsonl", "domain": "Web Text"}]},
                       path=tmp_path / "s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml: sources\[0\]: unknown key|s.yaml: sources\[0\]\.colour: unknown key"):
        spec_from_dict({"name": "t", "sources": [{"name": "a", "path": "raw/a.jsonl", "domain": "x", "colour": 1}]},
                       path=tmp_path / "s.yaml")


def test_yaml_syntax_error_names_line(tmp_path):
    path = write_spec(tmp_path, "name: t\nsources: [\n")
    with pytest.raises(SpecError, match=r"spec.yaml: line \d+, column \d+: not valid YAML"):
        load_spec(path)


def test_format_detection(tmp_path):
    assert detect_format(tmp_path / "x.jsonl") == "jsonl"
    assert detect_format(tmp_path / "x.JSONL.GZ") == "jsonl.gz"
    assert detect_format(tmp_path / "x.jsonl.zst") == "jsonl.zst"
    assert detect_format(tmp_path / "x.parquet") == "parquet"
    assert detect_format(tmp_path / "notes.md") == "text"
    assert detect_format(tmp_path) == "text"
    assert detect_format(tmp_path / "x.csv") is None


def test_unknown_format_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(SpecError, match=r"sources\[0\]\.path: cannot tell the format of 'x.csv'"):
        spec_from_dict({"name": "t", "sources": [{"name": "a", "path": "x.csv", "domain": "x"}]}, path=tmp_path / "s.yaml")


def test_data_root_env_override_and_seeds(tmp_path, raw, monkeypatch):
    path = write_spec(tmp_path, """
        name: t
        seed: 7
        data_root: out
        sources:
          - {name: a, path: raw/a.jsonl, domain: web}
    """)
    assert load_spec(path).data_root == tmp_path / "out"
    monkeypatch.setenv("CURAMIX_DATA_ROOT", str(tmp_path / "elsewhere"))
    spec = load_spec(path)
    assert spec.data_root == tmp_path / "elsewhere"
    assert spec.seed_for("curation") == load_spec(path).seed_for("curation")
    assert spec.seed_for("curation") != spec.seed_for("pruning")


def test_cli_validate(tmp_path, raw, capsys):
    good = write_spec(tmp_path, """
        name: t
        sources:
          - {name: a, path: raw/a.jsonl, domain: web}
    """)
    assert cli_main(["validate", str(good)]) == 0
    assert "domains: web" in capsys.readouterr().out
    bad = write_spec(tmp_path, "name: t\nsources:\n  - {name: a, path: raw/none.jsonl, domain: web}\n", "bad.yaml")
    assert cli_main(["validate", str(bad)]) == 2
    assert "bad.yaml: sources[0].path: no file matches 'raw/none.jsonl'" in capsys.readouterr().err
