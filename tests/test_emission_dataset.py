"""The training-job reader: fixed-length sequences over the shards, and the documented loop runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.config.output import OutputConfig
from pipeline.emission.dataset import TokenSequenceDataset
from pipeline.emission.megatron import open_tokens, read_index
from pipeline.emission.writer import EmissionInputs, emit_training_set
from tests.test_emission_support import small_inputs


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds")
    files, tok, _ = small_inputs(tmp)
    config = OutputConfig(total_tokens=20_000, shard_tokens=3_000, sequence_length=64, max_epochs=10.0)
    inputs = EmissionInputs(domain_files=files, tokenizer_path=tok, seed=5,
                            mixture={"proportions": {"code": 1, "law": 1, "math": 1, "intl": 1}, "method": "uniform"})
    manifest = emit_training_set(inputs, config=config, out_dir=tmp / "set")
    return tmp / "set", manifest


def test_sequences_cover_the_stream_across_shards(training_set):
    out, manifest = training_set
    ds = TokenSequenceDataset.from_manifest(out)
    shards = manifest["sets"]["mixed"]["shards"]
    assert len(shards) > 3
    stream = np.concatenate([
        np.asarray(open_tokens(out / s["files"]["bin"]["path"], read_index(out / s["files"]["idx"]["path"]).dtype))
        for s in shards
    ]).astype(np.int64)
    assert len(stream) == 20_000 and ds.total_tokens == 20_000
    assert len(ds) == (20_000 - 1) // 64
    for i in [0, 1, len(ds) // 2, len(ds) - 1]:
        seq = ds[i]
        assert seq.dtype == torch.int64 and seq.shape == (65,)
        assert np.array_equal(seq.numpy(), stream[i * 64: i * 64 + 65])
    with pytest.raises(IndexError):
        ds[len(ds)]
    code = TokenSequenceDataset.from_manifest(out, set_name="domains/code", seq_length=32)
    assert code.total_tokens == manifest["domains"]["code"]["tokens"]


def test_documented_training_loop_runs(training_set):
    out, _ = training_set
    torch.manual_seed(0)
    ds = TokenSequenceDataset.from_manifest(out, seq_length=32)
    loader = DataLoader(ds, batch_size=8, shuffle=True, drop_last=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.nn.Sequential(torch.nn.Embedding(ds.vocab_size, 32), torch.nn.Linear(32, ds.vocab_size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step, batch in enumerate(loader):
        batch = batch.to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 12:
            break
    assert losses[-1] < losses[0]
