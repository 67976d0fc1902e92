"""Aioli driving a real (tiny) proxy LM, and validation runs: exact step budgets, disjoint test slices."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mixers.aioli import AioliParams, run_aioli  # noqa: E402
from proxies.online import ProxyMixtureTrainer, validation_runs  # noqa: E402
from pipeline.config.proxies import ModelConfig, ProxiesConfig, TrainConfig  # noqa: E402
from proxies.bins import Bins  # noqa: E402


def _bins(seed=0):
    rng = np.random.default_rng(seed)
    domains = ["a", "b", "c"]
    # Each domain its own token distribution, so mixtures matter.
    def draw(j, n):
        return rng.integers(j * 20, j * 20 + 24, size=n).astype(np.uint16)
    return Bins(vocab_size=64, eot=63, domains=domains,
                train={d: draw(j, 5000) for j, d in enumerate(domains)},
                val={d: draw(j, 600) for j, d in enumerate(domains)})


CFG = ProxiesConfig(model=ModelConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, seq_len=16),
                    train=TrainConfig(steps=20, batch_size=2, lr=1e-2, warmup_steps=2, eval_tokens=128,
                                      device="cpu"))


def test_aioli_on_a_proxy_trains_exactly_the_budget():
    bins = _bins()
    trainer = ProxyMixtureTrainer(bins, CFG, seed=3, total_steps=20, min_test_tokens=128)
    before = trainer.test_losses()
    res = run_aioli(trainer, 3, AioliParams(total_steps=20, update_steps=10, lp_rounds=1, lp_steps=1,
                                            one_hot_factor=0.8, eta=1.0, ema=0.1, seed=1))
    assert trainer.step == 20 == res.steps_trained
    assert trainer.evaluations == 2 * (3 + 1)  # per round: one before the probes, one after each probe
    assert all(trainer.disjoint)
    after = trainer.test_losses()
    assert np.all(np.isfinite(after)) and after.mean() < before.mean()
    assert res.mixture.sum() == pytest.approx(1.0)


def test_validation_runs_share_the_budget_and_score_on_the_test_slice():
    bins = _bins()
    out = validation_runs(bins, CFG, {"uniform": [1 / 3] * 3, "only_a": [1.0, 0.0, 0.0]}, steps=8, seeds=[0],
                          min_test_tokens=128)
    assert out["uniform"]["tokens"] == out["only_a"]["tokens"] == 8 * 2 * 16
    assert set(out["uniform"]["disjoint_test"]) == {"a", "b", "c"}
    # Training only on domain a must help a and hurt c relative to uniform.
    assert out["only_a"]["losses"]["a"] < out["uniform"]["losses"]["a"]
    assert out["only_a"]["losses"]["c"] > out["uniform"]["losses"]["c"]


def test_aioli_online_validation_pairs_with_the_static_runs():
    """Aioli's own runs (one per validation seed) train the same tokens as the static validation runs and
    score on the same test slice; with eta = 0 Aioli's p never leaves uniform, so its online runs differ
    from the static uniform runs only by the probe steps."""
    from mixers.choose import mixing_inputs
    from mixers.stage import aioli_online_validation
    from pipeline.config.mixing import AioliSettings, MixingConfig

    bins = _bins()
    cfg = MixingConfig(method="aioli", aioli=AioliSettings(update_steps=10, lp_rounds=1, lp_steps=1,
                                                           one_hot_factor=0.8, eta=0.0, ema=0.1))
    inputs = mixing_inputs({d: 5000.0 for d in bins.domains}, cfg, budget_tokens=20_000, max_epochs=4.0)
    online = aioli_online_validation(bins, CFG, inputs, cfg, steps=20, seeds=[0, 1])
    static = validation_runs(bins, CFG, {"uniform": [1 / 3] * 3}, steps=20, seeds=[0, 1])
    assert online["tokens"] == static["uniform"]["tokens"] == 20 * 2 * 16
    assert online["seeds"] == [0, 1] and len(online["per_seed_average"]) == 2
    assert all(abs(sum(m.values()) - 1) < 1e-9 for m in online["final_mixtures"])
    assert all(np.allclose(list(m.values()), 1 / 3) for m in online["final_mixtures"])
    # Same seeds, same data stream, same test slice: close to the static uniform runs, not identical (probes).
    for a, b in zip(online["per_seed_average"], static["uniform"]["per_seed_average"]):
        assert a != b and abs(a - b) < 0.1 * b


def test_larger_scale_validation_trains_the_same_mixtures_with_the_larger_model():
    """``validation.model``: the same mixtures and seeds, a model >= 8x the proxies' non-embedding parameters,
    its own token budget; the report states the ratio."""
    from mixers.report import report_markdown
    from mixers.stage import larger_scale_validation
    from pipeline.config.mixing import ValidationSettings
    from proxies.model import non_embedding_params

    bins = _bins()
    big = ModelConfig(n_layers=2, d_model=48, n_heads=2, d_ff=96, seq_len=16)
    v = ValidationSettings(model=big, tokens=10 * 2 * 16)
    out = larger_scale_validation(bins, CFG, {"uniform": [1 / 3] * 3, "only_a": [1.0, 0.0, 0.0]}, v,
                                  seeds=[0], steps=8)
    assert out["ratio_to_proxies"] == non_embedding_params(big) / non_embedding_params(CFG.model) >= 8
    assert out["steps"] == 10
    assert out["runs"]["uniform"]["tokens"] == out["runs"]["only_a"]["tokens"] == 10 * 2 * 16
    assert out["runs"]["only_a"]["losses"]["a"] < out["runs"]["uniform"]["losses"]["a"]
    md = report_markdown(method="only_a", domains=["a", "b", "c"], chosen={"a": 1.0, "b": 0.0, "c": 0.0},
                         baselines={}, caps={d: 1.0 for d in "abc"}, epochs={d: 1.0 for d in "abc"},
                         validation_large=out)
    assert f"{out['ratio_to_proxies']:.1f}x the proxies'" in md and "below the 8x" not in md


def test_larger_scale_validation_scores_the_test_slice_it_is_given():
    """``eval_tokens`` sets the test slice the larger model is scored on, as ``validation_runs`` reads it; the
    trainer's own in-training evaluation (proxies.train.eval_tokens) does not change the scores."""
    import dataclasses

    from mixers.stage import larger_scale_validation
    from pipeline.config.mixing import ValidationSettings

    bins = _bins()
    big = ModelConfig(n_layers=2, d_model=48, n_heads=2, d_ff=96, seq_len=16)
    v = ValidationSettings(model=big, tokens=6 * 2 * 16)
    mixes = {"uniform": [1 / 3] * 3}
    small_eval = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, eval_tokens=32))
    default = larger_scale_validation(bins, CFG, mixes, v, seeds=[0], steps=6)
    given = larger_scale_validation(bins, small_eval, mixes, v, seeds=[0], steps=6,
                                    eval_tokens=CFG.train.eval_tokens)
    other = larger_scale_validation(bins, CFG, mixes, v, seeds=[0], steps=6, eval_tokens=32)
    # Equal up to float rounding: two trainings in one process may round differently (the BLAS's results depend on
    # how its buffers happen to be aligned), far below what another test slice changes.
    assert given["runs"]["uniform"]["losses"] == pytest.approx(default["runs"]["uniform"]["losses"], rel=1e-6)
    assert other["runs"]["uniform"]["losses"] != pytest.approx(default["runs"]["uniform"]["losses"], rel=1e-6)
