"""The one Dagster adapter and the stage-side outcome builders it serves (issue 12 item 3): an asset body is
load spec -> run the stage -> ``yield from materialize(outcome)``; the rules live with the stage."""

from __future__ import annotations

import json

import dagster as dg

from assets.adapter import materialize, metadata_value
from mixers.choose import write_outcome
from mixers.outcome import mixture_outcome, mixture_version
from pipeline.engine.outcome import CheckOutcome, Image, Markdown, StageOutcome, Table


class Log:
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


def _png() -> bytes:
    from pipeline import plots

    return plots.drops_by_reason({"s": {"too_short": 3}}, title="t")


def test_materialize_logs_the_outcomes_warnings_and_yields_its_checks():
    outcome = StageOutcome(metadata={"n": 3}, data_version="abc", warnings=["domain x is small"],
                           checks=[CheckOutcome("c", passed=False, metadata={"why": "bad"})])
    log = Log()
    events = list(materialize(outcome, log=log))
    assert log.warnings == ["domain x is small"]
    assert isinstance(events[0], dg.MaterializeResult) and events[0].data_version == dg.DataVersion("abc")
    assert events[1].check_name == "c" and not events[1].passed
    assert events[1].severity == dg.AssetCheckSeverity.ERROR


def test_metadata_values_for_images_reports_and_tables(tmp_path):
    (tmp_path / "fit.png").write_bytes(_png())
    image = metadata_value(Image(tmp_path / "fit.png", alt="fit", caption="held-out runs")).value
    assert image.startswith("![fit](data:image/png;base64,") and "held-out runs" in image
    assert f"`{tmp_path / 'fit.png'}`" in image
    report = metadata_value(Markdown("# r\n\n![fit](fit.png)\n", images_in=tmp_path)).value
    assert "](fit.png)" not in report and "![fit](data:image/png;base64," in report
    assert metadata_value(Markdown("![fit](fit.png)")).value == "![fit](fit.png)"  # no folder: as written
    table = metadata_value(Table([{"text": "x" * 200}], text_chars=160)).value
    assert "x" * 160 + "…" in table and "x" * 161 not in table


def test_mixture_outcome_fails_its_check_off_the_simplex(tmp_path):
    from mixers.choose import MixingInputs, MixtureOutcome

    inputs = MixingInputs(["a", "b"], {"a": 100.0, "b": 100.0}, 100.0, 4.0, {"a": 1.0, "b": 0.3})
    payload = write_outcome(tmp_path, MixtureOutcome("uniform", {"a": 0.5, "b": 0.5}, inputs, {}))
    outcome = mixture_outcome(tmp_path, payload)
    (check,) = outcome.checks
    assert check.name == "on_simplex_within_caps" and not check.passed and "b" in check.metadata["problems"]
    assert outcome.data_version == mixture_version({"a": 0.5, "b": 0.5})
    assert outcome.metadata["path"] == tmp_path / "mixture" / "mixture.json"
    assert json.loads(outcome.metadata["path"].read_text())["proportions"] == {"a": 0.5, "b": 0.5}
    assert {"plot_proportions", "report", "proportions"} <= set(outcome.metadata)
