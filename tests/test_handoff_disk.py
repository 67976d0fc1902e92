"""Issue 17 item 15: a full disk is one line (path, bytes needed, bytes free) and leaves nothing partial.

Each test mounts a small tmpfs of its own (we run as root in CI); where mounting is not allowed the tests
are skipped with that reason.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config.output import OutputConfig
from pipeline.diskspace import DiskFullError, disk_full_message, free_bytes
from pipeline.emission.writer import EmissionInputs, emit_training_set
from pipeline.store import DataRoot
from proxies.bins import bins_bytes_at_least, build_bins
from proxies.tokenizer import load_tokenizer
from tests.test_emission_support import small_inputs
from tests.test_proxies import write_stage

MESSAGE = r"^no space left on device: writing .+ needs at least [\d,]+ bytes, [\d,]+ bytes are free"


@pytest.fixture
def small_fs(tmp_path):
    """``mount(bytes) -> folder``: a tmpfs of that size, unmounted afterwards."""
    mounted = []

    def mount(size: int) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}); "
                        "the full-disk tests need root or CAP_SYS_ADMIN")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    files, tok, _ = small_inputs(tmp, docs={"code": 200, "law": 200, "math": 200})
    return files, tok


def _emit(corpus, out: Path, cache: Path):
    files, tok = corpus
    inputs = EmissionInputs(domain_files=files, tokenizer_path=tok,
                            mixture={"proportions": {"code": 0.5, "law": 0.3, "math": 0.2}, "method": "test"}, seed=3)
    config = OutputConfig(total_tokens=60_000, shard_tokens=20_000, min_documents_per_domain=0)
    return emit_training_set(inputs, config=config, out_dir=out, cache_dir=cache)


def test_emission_refuses_a_set_that_does_not_fit(corpus, small_fs, tmp_path):
    fs = small_fs(128 * 1024)  # the .bin/.idx alone need 2 x 60,000 x 2 bytes
    with pytest.raises(DiskFullError, match=MESSAGE) as err:
        _emit(corpus, fs / "set", tmp_path / "cache")
    assert str(fs) in str(err.value) and err.value.needed > 240_000 and err.value.free <= 128 * 1024
    assert list(fs.iterdir()) == []


def test_emission_refuses_a_token_cache_that_does_not_fit(corpus, small_fs):
    fs = small_fs(64 * 1024)  # the cache holds every domain's text
    with pytest.raises(DiskFullError, match=MESSAGE) as err:
        _emit(corpus, fs / "set", fs / "set.cache")
    assert "set.cache" in str(err.value)
    assert list(fs.iterdir()) == []


def _bins_corpus(tmp_path) -> tuple[DataRoot, object]:
    rng = random.Random(0)
    words = "the court shall grant a license pursuant to section theorem proof lemma integral prime".split()
    texts = {d: [" ".join(rng.choice(words) for _ in range(400)) for _ in range(150)] for d in ("law", "math")}
    root = DataRoot(tmp_path / "data")
    write_stage(root, "curated", texts)
    from tests.test_emission_support import train_tokenizer

    tok = load_tokenizer(train_tokenizer([t for v in texts.values() for t in v], tmp_path / "tok.json", vocab_size=300))
    return root, tok


def _build(root, tok, out):
    return build_bins(root, "curated", ["law", "math"], out, tokenizer=tok, tokenizer_sha256="x",
                      validation_fraction=0.1, seed=1)


def test_token_bins_short_write_is_one_line_and_leaves_nothing(tmp_path, small_fs):
    """The issue's case: the estimate passes, numpy's tofile then writes short ("N requested and M written")."""
    root, tok = _bins_corpus(tmp_path)
    _build(root, tok, tmp_path / "bins")
    actual = sum(p.stat().st_size for p in (tmp_path / "bins").rglob("*") if p.is_file())
    bound = bins_bytes_at_least(root, "curated", ["law", "math"], tok, __import__("numpy").dtype("uint16"), None)
    assert bound < actual // 2
    fs = small_fs((bound + actual // 2) // 4096 * 4096)
    assert bound < free_bytes(fs) < actual
    with pytest.raises(DiskFullError, match=r"^no space left on device: writing .+, [\d,]+ bytes are free") as err:
        _build(root, tok, fs / "bins")
    assert str(fs) in str(err.value) and "requested" not in str(err.value)
    assert list(fs.iterdir()) == []
    tiny = small_fs(8192)  # below the bound: refused before anything is written
    with pytest.raises(DiskFullError, match=MESSAGE):
        _build(root, tok, tiny / "bins")
    assert list(tiny.iterdir()) == []


def test_stage_folder_write_on_a_full_disk(tmp_path, small_fs):
    """Any per-domain stage (staging's parts, curation, pruning) writes through DataRoot.write_domain."""
    fs = small_fs(256 * 1024)
    root = DataRoot(fs / "data")
    table = pa.table({"text": [bytes(random.Random(i).randbytes(4096)).hex() for i in range(40)]})
    with pytest.raises(DiskFullError) as err:
        with root.write_domain("documents", "web") as out:
            (out / "data").mkdir()
            for part in range(100):
                pq.write_table(table, out / "data" / f"part-{part}.parquet", compression="none")
    assert str(err.value).startswith("no space left on device: writing ") and str(fs) in str(err.value)
    assert [p.name for p in (fs / "data" / "documents").iterdir()] == []
    # Wrapped by an executor (Dagster raises its own error from the asset's), the one line is still found.
    try:
        raise RuntimeError("Error occurred while executing op") from err.value
    except RuntimeError as wrapped:
        assert disk_full_message(wrapped) == str(err.value)


def test_cli_prints_one_line_for_a_full_disk(monkeypatch, capsys, small_fs):
    """A raw ENOSPC deep in a command (wrapped as an executor would) comes out as one line, no traceback."""
    import assets.cli as cli
    import pipeline.emission.cli as verify_cli

    fs = small_fs(64 * 1024)

    def fill(_args):
        try:
            with open(fs / "x.bin", "wb") as f:
                for _ in range(64):
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as exc:
            raise RuntimeError("step failed") from exc
        raise AssertionError("the tmpfs did not fill")

    monkeypatch.setattr(verify_cli, "cmd_verify", fill)
    assert cli.main(["verify", str(fs)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on device: writing under {fs} (the error named no file)")
    assert err[0].endswith("bytes are free (free space on that file system, or point the data root elsewhere)")
