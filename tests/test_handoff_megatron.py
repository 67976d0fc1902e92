"""Issue 17 items 2-4 and the hand-off end to end: a curamix set read by Megatron-Core's own dataset classes.

`curamix verify --data-path` (absolute and --relative-to) feeds Megatron-Core's BlendedMegatronDatasetBuilder
GPT dataset with a cache path outside the set; each domain's share of the samples matches the manifest and
nothing is written into the set. Megatron's caches inside a set are told apart by verify; small domains
are reported at emission.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from assets.cli import main
from pipeline.config.output import OutputConfig
from pipeline.emission.verify import verify
from pipeline.emission.writer import EmissionError, EmissionInputs, _shard_bounds, emit_training_set
from proxies.tokenizer import write_loader_files
from tests.test_emission_support import small_inputs

PROPS = {"code": 0.45, "law": 0.3, "math": 0.25}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    files, tok, _ = small_inputs(tmp, docs={"code": 120, "law": 90, "math": 100})
    write_loader_files(tok.parent, eos_token="<|endoftext|>", model_max_length=64)
    return files, tok


def _emit(corpus, out: Path, **cfg):
    files, tok = corpus
    config = OutputConfig(**{"total_tokens": 40_000, "shard_tokens": 10_000, "sequence_length": 64, **cfg})
    inputs = EmissionInputs(domain_files=files, tokenizer_path=tok, mixture={"proportions": PROPS, "method": "test"},
                            seed=5)
    return emit_training_set(inputs, config=config, out_dir=out, cache_dir=out.parent / f"{out.name}.cache")


@pytest.fixture(scope="module")
def training_set(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("root") / "training_set"
    return out, _emit(corpus, out, min_documents_per_domain=10)


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _blend(capsys, *args) -> list[tuple[float, str]]:
    capsys.readouterr()
    assert main(["verify", *args]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1].split()
    return [(float(w), p) for w, p in zip(line[::2], line[1::2])]


def test_data_path_absolute_and_relative(training_set, capsys):
    out, manifest = training_set
    absolute = _blend(capsys, str(out), "--data-path")
    assert all(Path(p).is_absolute() and Path(p + ".bin").exists() for _, p in absolute)
    relative = _blend(capsys, str(out), "--relative-to", str(out.parent))
    assert [p for _, p in relative] == [os.path.relpath(p, out.parent) for _, p in absolute]
    assert all(p.startswith("training_set/domains/") for _, p in relative)
    assert [w for w, _ in relative] == [w for w, _ in absolute]


def _megatron_dataset(prefixes_weights, tokenizer_dir: Path, cache: Path | None, samples: int, rendezvous: Path):
    try:
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
        from megatron.core.tokenizers import MegatronTokenizer
    except ImportError as exc:  # pragma: no cover - the `test` extra installs megatron-core
        pytest.skip(f"megatron-core cannot be imported on this machine: {exc}")
    tokenizer = MegatronTokenizer.from_pretrained(str(tokenizer_dir))
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=64, split="100,0,0", path_to_cache=cache and str(cache), tokenizer=tokenizer,
        blend=([p for _, p in prefixes_weights], [w for w, _ in prefixes_weights]),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )
    import torch.distributed as dist

    # As under Megatron-LM: one process group (here one CPU process, gloo, a file rendezvous: no port).
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=0, world_size=1)
    try:
        train, valid, test = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, config).build()
    finally:
        dist.destroy_process_group()
    assert valid is None and test is None
    return train, tokenizer


@pytest.mark.slow
def test_megatron_blended_gpt_dataset_matches_the_manifest(training_set, corpus, tmp_path, capsys):
    out, manifest = training_set
    before = _tree(out)
    blend = _blend(capsys, str(out), "--relative-to", str(out.parent))
    cwd = os.getcwd()
    os.chdir(out.parent)  # relative prefixes: the job runs from the root the user named
    try:
        train, tokenizer = _megatron_dataset(blend, corpus[1].parent, tmp_path / "megatron-cache", samples=4000,
                                             rendezvous=tmp_path / "rendezvous")
        assert tokenizer.eod == manifest["tokenizer"]["eos_id"]
        counts: dict[str, int] = {}
        for i in range(len(train)):
            dataset = train.datasets[int(train.dataset_index[i])]
            domain = Path(dataset.dataset.path_prefix).parent.name
            counts[domain] = counts.get(domain, 0) + 1
        sample = train[0]
        assert len(sample["tokens"]) == 64
    finally:
        os.chdir(cwd)
    assert len(train) >= 4000
    for d, v in manifest["domains"].items():
        assert abs(counts[d] / len(train) - v["achieved_proportion"]) < 0.002, (d, counts)
    assert _tree(out) == before  # nothing written into the set
    assert any((tmp_path / "megatron-cache").iterdir())
    assert verify(out) == []


@pytest.mark.slow
def test_verify_tells_megatron_caches_apart(training_set, corpus, tmp_path, capsys):
    """Megatron run without --data-cache-path writes its caches into the set: verify passes with one note."""
    out, manifest = training_set
    copy = tmp_path / "set"
    shutil.copytree(out, copy)
    blend = _blend(capsys, str(copy), "--data-path")
    _megatron_dataset(blend, corpus[1].parent, None, samples=500, rendezvous=tmp_path / "rendezvous")
    caches = [p for p in copy.rglob("*") if p.is_file() and "/cache/" in p.as_posix()]
    assert len(caches) >= 4 * len(blend)  # description, document/sample/shuffle index per shard
    assert verify(copy) == []
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-cache-path" in err[0] and f"{len(caches)} files" in err[0]
    (copy / "domains" / "code" / "stray.bin").write_bytes(b"y")  # anything else is still a discrepancy
    assert verify(copy) == ["domains/code/stray.bin: not in the manifest"]


def test_small_domain_warns_or_refuses(corpus, tmp_path):
    manifest = _emit(corpus, tmp_path / "warn", min_documents_per_domain=90)
    assert len(manifest["warnings"]) == 1 and "law (82)" in manifest["warnings"][0] and "math" not in manifest["warnings"][0]
    assert "--split 100,0,0" in manifest["warnings"][0]
    with pytest.raises(EmissionError, match=r"min_documents_per_domain=90 .*law \(\d+\)"):
        _emit(corpus, tmp_path / "error", min_documents_per_domain=90, on_small_domain="error")
    assert not (tmp_path / "error").exists()
    assert _emit(corpus, tmp_path / "fine", min_documents_per_domain=5)["warnings"] == []


def test_shards_have_no_small_tail():
    import numpy as np

    take = np.full(101, 100)
    bounds = _shard_bounds(take, 10_000)  # 10,100 tokens: two shards of about 5,000, not 10,000 + 100
    assert [b - a for a, b in bounds] == [50, 51]
    assert _shard_bounds(np.array([30_000, 5]), 10_000) == [(0, 1), (1, 2)]  # one huge document alone
