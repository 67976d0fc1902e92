"""Issue 17 item 1: the `tokenizer` asset's folder loads in transformers and Megatron-Core with its EOS known."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets.context import BuildContext
from assets.proxies import build_stage
from assets.resources import CuramixResource
from pipeline.spec import load_spec
from pipeline.store import DataRoot
from tests.test_proxies import write_stage
from tests.test_proxies_assets import SPEC

TEXTS = {
    "math": [f"Question: what is {i} plus {i}?\nAnswer: {2 * i}. Therefore the sum is {2 * i}." for i in range(80)],
    "web": [f"review {i}: the film was {'good' if i % 2 else 'bad'} and the actors were fine. " * 3 for i in range(40)],
    "wiki": [f"Article {i}. Anarchism is a political philosophy; café № {i} — 🤖 東京." for i in range(30)],
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(SPEC + "output: {sequence_length: 512}\n")
    spec = load_spec(spec_path, data_root=tmp / "data")
    write_stage(DataRoot(spec.data_root), "curated", TEXTS)
    parts = build_stage(BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains)))
    defs = dg.Definitions(assets=parts.assets,
                          resources={"curamix": CuramixResource(spec_path=str(spec_path), data_root=str(tmp / "data"))})
    result = dg.materialize([a for a in parts.assets if a.key == dg.AssetKey("tokenizer")],
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral(), selection=["tokenizer"])
    assert result.success
    return spec.data_root / "tokenizer"


def test_transformers_autotokenizer_knows_the_eos(tokenizer_dir):
    transformers = pytest.importorskip("transformers", reason="the `test` extra installs transformers")
    meta = json.loads((tokenizer_dir / "meta.json").read_text())
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == meta["eot_id"]
    assert tok.pad_token_id == tok.bos_token_id == meta["eot_id"]
    assert tok.model_max_length == 512  # output.sequence_length
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    for text in ["Question: what is 7 plus 7?", "café № 3 — 🤖 東京", "  two  spaces\tand a tab\n"]:
        ids = tok.encode(text)
        assert ids == raw.encode(text, add_special_tokens=False).ids  # nothing added: documents carry their own EOS
        assert tok.decode(ids) == text
    assert tok.decode(tok.encode("the end") + [tok.eos_token_id]) == "the end<|endoftext|>"


def test_megatron_core_tokenizer_knows_the_eod(tokenizer_dir):
    try:
        from megatron.core.tokenizers import MegatronTokenizer
    except ImportError as exc:  # pragma: no cover - the `test` extra installs megatron-core
        pytest.skip(f"megatron-core is not importable here: {exc}")
    meta = json.loads((tokenizer_dir / "meta.json").read_text())
    tok = MegatronTokenizer.from_pretrained(str(tokenizer_dir))
    assert tok.eod == meta["eot_id"]
    assert tok.detokenize(tok.tokenize("café 東京")) == "café 東京"
