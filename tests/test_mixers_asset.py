"""The `mixture` asset on a synthetic data root: token bins' meta + a proxy-run table -> mixture.json + report."""

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from tests.conftest import EXAMPLE_SPEC
from mixers import sample_mixtures
from mixers.choose import check_mixture
from mixers.proxy_table import proxy_runs_from_table
from mixers.stage import MixingInputError, available_tokens, run_mixing
from pipeline.spec import load_spec

TOKENS = {"math": 400_000, "code": 900_000, "dialogue": 300_000, "law": 60_000, "encyclopedia": 500_000,
          "science": 200_000, "web": 250_000, "techdocs": 350_000}


def _spec(tmp_path, mixing: dict):
    body = yaml.safe_load(EXAMPLE_SPEC.read_text())
    for s in body["sources"]:
        s["path"] = str(EXAMPLE_SPEC.parent / s["path"])
    body["mixing"] = mixing
    body["output"] = {"total_tokens": 2_000_000, "max_epochs": 4.0}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _write_inputs(root, n_runs=48, seed=0):
    domains = list(TOKENS)
    meta = {"domains": {d: {"train_tokens": int(n * 0.9), "val_tokens": int(n * 0.1), "train_docs": 90,
                            "val_docs": 10, "train_docs_over_cap": 0} for d, n in TOKENS.items()}}
    (root / "token_bins").mkdir(parents=True)
    (root / "token_bins" / "meta.json").write_text(json.dumps(meta))
    prior = np.array(list(TOKENS.values()), float)
    W = sample_mixtures(prior, n_runs, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for i, w in enumerate(W):
        for step in (10, 20):
            row = {"run_id": f"m{i}", "member": i, "seed": 0, "step": step}
            row |= {f"w_{d}": float(x) for d, x in zip(domains, w)}
            # Every domain's loss falls with its own share; "law" also with "math".
            row |= {f"loss_{d}": float(4.0 - 0.6 * np.log(w[j] + 0.3 * w[0] * (d == "law") + 0.01)
                                       + rng.normal(0, 0.01) + (1.0 if step == 10 else 0.0))
                    for j, d in enumerate(domains)}
            row["loss_target_gsm8k"] = float(4.0 - np.log(w[0] + 0.01))
            rows.append(row)
    (root / "proxy_runs" / "sweep0").mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(root / "proxy_runs" / "sweep0" / "results.parquet")
    return domains


def test_proxy_table_reader_takes_the_last_checkpoint(data_root):
    domains = _write_inputs(data_root, n_runs=12)
    table = pl.read_parquet(data_root / "proxy_runs" / "sweep0" / "results.parquet")
    runs = proxy_runs_from_table(table, domains)
    assert len(runs.run_ids) == 12 and set(runs.losses) == set(domains) | {"target:gsm8k"}
    assert np.allclose(runs.weights.sum(axis=1), 1.0)
    # Step-10 rows carry +1.0: only step-20 values may be read.
    last = table.filter(pl.col("step") == 20).sort("run_id")
    assert np.allclose(runs.losses["math"], last["loss_math"].to_numpy())
    assert runs.run_ids == last["run_id"].to_list()


def test_run_mixing_regmix_writes_mixture_report_and_plots(data_root, tmp_path):
    spec = load_spec(_spec(tmp_path, {"method": "regmix", "target_weights": {"law": 1.0, "target:gsm8k": 1.0},
                                      "regmix": {"regressor": "ridge", "num_samples": 20000, "top_k": 50},
                                      "validation": {"enabled": False}}))
    domains = _write_inputs(data_root)
    # A sweep no longer in the spec leaves its folder behind: its runs must not be read.
    (data_root / "proxy_runs" / "old").mkdir()
    stale = pl.read_parquet(data_root / "proxy_runs" / "sweep0" / "results.parquet")
    stale.with_columns(pl.col("run_id") + "_old").write_parquet(data_root / "proxy_runs" / "old" / "results.parquet")
    payload = run_mixing(spec)
    out = data_root / "mixture"
    saved = json.loads((out / "mixture.json").read_text())
    assert saved["method"] == "regmix" and saved["domains"] == domains
    assert not check_mixture(saved["proportions"], saved["inputs"]["caps"]) and not saved["problems"]
    # The targets reward math (gsm8k, and law through math): RegMix must raise math above natural.
    assert saved["proportions"]["math"] > saved["baselines"]["natural"]["math"]
    assert saved["predicted"]["regmix"] < min(saved["predicted"]["natural"], saved["predicted"]["uniform"])
    assert len(saved["inputs"]["proxy_run_ids"]) == 48 and len(saved["inputs"]["regressor_hash"]) == 64
    assert saved["fit_quality"]["combined"]["spearman"] > 0.5
    for png in ("proportions.png", "fit.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "Fit quality" in (out / "report.md").read_text()
    from assets.ops_metadata import markdown_with_inline_images

    shown = markdown_with_inline_images((out / "report.md").read_text(), out).value  # the asset's `report`
    assert shown.count("](data:image/png;base64,") == 2 and ".png)" not in shown
    # Caps: at most 4 epochs of 2M tokens -> law (60k tokens) at most 0.12.
    assert saved["proportions"]["law"] <= 4 * 60_000 / 2_000_000 + 1e-9
    assert payload["proportions"] == saved["proportions"]


def test_run_mixing_auto_reports_each_candidate_and_the_choice_per_target(data_root, tmp_path):
    spec = load_spec(_spec(tmp_path, {"method": "regmix", "target_weights": {"law": 1.0, "target:gsm8k": 1.0},
                                      "regmix": {"num_samples": 20000, "top_k": 50, "num_boost_round": 50},
                                      "validation": {"enabled": False}}))
    assert spec.mixing.regmix.regressor == "auto"  # the default
    _write_inputs(data_root, n_runs=30)
    saved = run_mixing(spec)
    choice = saved["inputs"]["regressor_choice"]
    assert set(choice) == {"law", "target:gsm8k"} and saved["inputs"]["regressor"] == "auto"
    for c in choice.values():
        assert set(c["cv_spearman"]) == {"ridge", "ridge_log", "mixing_law", "lightgbm", "law_lightgbm"}
        assert c["cv_spearman"][c["chosen"]] >= max(c["cv_spearman"].values()) - 0.002
    # Both targets are log-shaped in the shares: the log-linear ridge is the right form.
    assert choice["target:gsm8k"]["chosen"] == "ridge_log"
    report = (data_root / "mixture" / "report.md").read_text()
    assert "## Regressor choice" in report and "| target:gsm8k |" in report
    assert saved["fit_quality"]["combined"]["n_heldout"] == 30


def test_auto_warns_when_the_choice_does_not_beat_the_own_weight():
    from mixers.choose import auto_notes

    choices = {"a": {"chosen": "ridge", "cv_spearman": {"ridge": 0.6, "mixing_law": 0.5}},
               "b": {"chosen": "ridge", "cv_spearman": {"ridge": 0.9}}}
    quality = {"a": {"weight_only_spearman": 0.7}, "b": {"weight_only_spearman": 0.7}}
    notes = auto_notes(choices, quality)
    assert len(notes) == 1 and "target a" in notes[0] and "own weight (0.70)" in notes[0]


def test_missing_upstream_is_named(data_root, tmp_path):
    spec = load_spec(_spec(tmp_path, {"method": "regmix", "validation": {"enabled": False}}))
    with pytest.raises(MixingInputError, match="token_bins"):
        run_mixing(spec)


def test_available_tokens_scales_for_capped_bins():
    meta = {"domains": {"a": {"train_tokens": 900, "val_tokens": 100, "train_docs": 9, "val_docs": 1,
                              "train_docs_over_cap": 10}}}
    assert available_tokens(meta)["a"] == pytest.approx(2000.0)


def test_mixture_asset_materializes_with_its_check(data_root, tmp_path):
    from assets.context import BuildContext
    from assets.mixing import build_stage
    from assets.resources import CuramixResource

    spec_path = _spec(tmp_path, {"method": "temperature", "temperature": 3.0, "validation": {"enabled": False}})
    _write_inputs(data_root, n_runs=8)
    spec = load_spec(spec_path)
    stage = build_stage(BuildContext(spec=spec, domain_partitions=dg.StaticPartitionsDefinition(spec.domains)))
    result = dg.materialize(stage.assets, resources={"curamix": CuramixResource(spec_path=str(spec_path))})
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    mat = result.asset_materializations_for_node("mixture")[0]
    assert mat.metadata["method"].value == "temperature"
    # The report's pictures show in the UI: inlined, no link by relative name left (issue 17 item 5).
    report = mat.metadata["report"].value
    assert "](proportions.png)" not in report and "![proportions](data:image/png;base64," in report
    assert "(fit.png)" not in report
    saved = json.loads((data_root / "mixture" / "mixture.json").read_text())
    w = np.array(list(TOKENS.values()), float) ** (1 / 3)
    assert [saved["proportions"][d] for d in TOKENS] == pytest.approx(list(w / w.sum()))
    assert saved["domains"] == list(TOKENS)


def test_aioli_schedule_plot_and_report(tmp_path):
    import dataclasses

    from mixers.aioli import AioliParams, run_aioli
    from mixers.report import plot_schedule, report_markdown
    from tests.test_mixers_aioli import A_TRUE, LinearLawTrainer

    res = run_aioli(LinearLawTrainer(A_TRUE), 3, AioliParams(total_steps=100, update_steps=50, lp_rounds=1,
                                                              lp_steps=2))
    png = plot_schedule(tmp_path / "schedule.png", ["a", "b", "c"], [dataclasses.asdict(s) for s in res.schedule])
    assert png.read_bytes()[:4] == b"\x89PNG"
    md = report_markdown(method="aioli", domains=["a", "b", "c"], chosen={"a": 0.5, "b": 0.3, "c": 0.2},
                         baselines={"uniform": {d: 1 / 3 for d in "abc"}}, caps={d: 1.0 for d in "abc"},
                         epochs={d: 0.1 for d in "abc"},
                         validation={"aioli": {"losses": {"a": 1.0}, "average": 1.0},
                                     "uniform": {"losses": {"a": 1.1}, "average": 1.1}})
    assert "| **average** | 1.0000 | 1.1000 |" in md


def test_mixture_vectors_follow_the_bins_domain_order():
    """meta.json's mappings are key-sorted, the bins (and so every trainer) use the spec's order: a
    mixture turned into a vector must follow the latter, or weights land on the wrong domains."""
    from mixers.stage import available_tokens

    meta = {"domain_order": ["math", "code", "web"],
            "domains": {d: {"train_tokens": t, "val_tokens": 0, "train_docs": 1, "val_docs": 0}
                        for d, t in (("code", 20.0), ("math", 10.0), ("web", 30.0))}}
    available = available_tokens(meta)
    assert list(available) == ["math", "code", "web"]
    assert available == {"math": 10.0, "code": 20.0, "web": 30.0}


def test_report_pairs_validation_seeds():
    from mixers.report import paired_differences, report_markdown

    validation = {"regmix": {"losses": {"a": 5.0}, "average": 5.0, "per_seed_average": [5.0, 5.2, 4.9]},
                  "uniform": {"losses": {"a": 5.1}, "average": 5.1, "per_seed_average": [5.1, 5.1, 5.1]},
                  "natural": {"losses": {"a": 5.0}, "average": 5.0, "per_seed_average": [5.05, 5.0]}}
    assert paired_differences(validation, "regmix", "uniform") == pytest.approx([-0.1, 0.1, -0.2])
    assert paired_differences(validation, "regmix", "natural") is None  # seeds do not line up: no pairing
    md = report_markdown(method="regmix", domains=["a"], chosen={"a": 1.0}, baselines={}, caps={"a": 1.0},
                         epochs={"a": 1.0}, validation=validation)
    assert "| regmix - uniform | -0.0667 |" in md and "| 2/3 |" in md
    assert "regmix - natural" not in md
