"""The learned encoders of pruning: all-MiniLM-L6-v2 (installed offline) and the D4-style proxy embedder.

Shape, unit norm, determinism, no network (HF offline variables set and every socket connect refused in this
process: a guard around the real encoder, nothing replaced), and that the MiniLM files behave as the
published model does (the similarity matrix of the sentence-transformers quickstart).
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from pipeline.pruning.minilm import MiniLMEmbedder

# sbert.net quickstart, all-MiniLM-L6-v2: similarities 0.6660 (weather/sunny), 0.1046 (weather/stadium),
# 0.1411 (sunny/stadium).
QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
PUBLISHED = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
         "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
         "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
         "func main() { fmt.Println(\"hello\") }", "", "Permission is hereby granted, free of charge, " * 60]


@pytest.fixture
def offline(monkeypatch):
    """No network for this test: the Hugging Face offline switches, and any socket connect raises."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network access attempted during an offline test: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


@pytest.fixture(scope="module")
def minilm():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)   # see one_thread
    yield MiniLMEmbedder(device="cpu")
    torch.set_num_threads(before)


def test_minilm_matches_the_published_similarities(minilm):
    x = minilm.transform(QUICKSTART)
    sim = x @ x.T
    for (i, j), published in PUBLISHED.items():
        assert sim[i, j] == pytest.approx(published, abs=0.002), (i, j, sim[i, j])
    # The ordering the model card's example shows: the two weather sentences are by far the closest pair.
    assert sim[0, 1] > sim[1, 2] > sim[0, 2]


def test_minilm_shape_norm_and_determinism(minilm):
    x = minilm.transform(TEXTS)
    assert x.shape == (len(TEXTS), 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x, minilm.transform(TEXTS))
    # Batch composition and padding do not change a text's vector (mean over real tokens only).
    alone = minilm.transform([TEXTS[1]])
    np.testing.assert_allclose(alone[0], x[1], atol=1e-5)
    # Paraphrases are closer than unrelated sentences.
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] and sim[3, 6] > sim[3, 4]


def test_minilm_runs_with_the_network_refused(offline):
    embedder = MiniLMEmbedder(device="cpu")
    x = embedder.transform(QUICKSTART)
    assert x.shape == (3, 384)
    assert offline == []
    # The guard works: a connect in this process would have raised.
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))


def test_minilm_refuses_a_folder_without_the_files(tmp_path):
    from pipeline.pruning.minilm import MiniLMUnavailable

    with pytest.raises(MiniLMUnavailable, match="model.safetensors"):
        MiniLMEmbedder(model_path=str(tmp_path))


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads per process are many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_proxy_embedder_trains_offline_and_is_deterministic(offline, one_thread):
    from proxies.embedding import ProxyEmbedder

    rng = np.random.default_rng(0)
    topics = [["orbit", "rocket", "planet", "moon"], ["flour", "oven", "bake", "dough"]]
    texts = [" ".join(rng.choice(topics[i % 2] + ["the", "a", "and"], size=40)) for i in range(80)]
    first = ProxyEmbedder(fit_steps=12, seed=3, device="cpu").fit(texts)
    x = first.transform(texts)
    assert x.shape == (80, first.dim) and first.dim == 128
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    again = ProxyEmbedder(fit_steps=12, seed=3, device="cpu").fit(texts).transform(texts)
    np.testing.assert_allclose(x, again, atol=1e-6)
    # Documents of the same topic are closer on average than documents of different topics.
    sim = x @ x.T
    same = (np.arange(80)[:, None] % 2) == (np.arange(80)[None, :] % 2)
    assert sim[same].mean() > sim[~same].mean()
    assert offline == []
