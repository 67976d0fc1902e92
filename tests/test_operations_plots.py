"""Plot helpers and the image metadata wrapper other stages use."""

import base64
import math

import dagster as dg
import pytest

from assets import ops_metadata
from assets.ops_metadata import image_metadata
from pipeline import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_chart_is_a_deterministic_png(tmp_path):
    charts = {
        "mixture": lambda: plots.mixture_bars({"code": 0.5, "math": 0.3, "web": 0.2}, {"code": 0.2, "math": 0.3, "web": 0.5}),
        "curves": lambda: plots.loss_curves({"natural": [4.0, 3.1, 2.7], "chosen": ([0, 5, 10], [4.1, 3.0, 2.5])}),
        "scatter": lambda: plots.predicted_vs_actual([2.9, 3.1, 3.6], [3.0, 3.2, 3.5]),
        "histogram": lambda: plots.histogram([0.1, 0.5, 0.5, float("nan"), 0.9], bins=4),
        "drops": lambda: plots.drops_by_reason({"code": {"duplicate": 5, "too_short": 2}, "math": {"duplicate": 1}}),
        "drops_flat": lambda: plots.drops_by_reason({"duplicate": 3}),
        "drops_none": lambda: plots.drops_by_reason({}),
    }
    for name, draw in charts.items():
        png = draw()
        assert png.startswith(PNG) and len(png) > 1000, name
        assert draw() == png, f"{name} is not byte-identical across calls"
    path = plots.save_png(charts["mixture"](), tmp_path / "sub" / "mixture.png")
    assert path.read_bytes().startswith(PNG) and not list(path.parent.glob("*.tmp-*"))


def test_spearman_matches_the_definition():
    assert plots.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert plots.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties get average ranks: x ranks 1, 2.5, 2.5, 4 against y ranks 1..4.
    ranks_x, ranks_y = [1, 2.5, 2.5, 4], [1, 2, 3, 4]
    mx = my = 2.5
    expected = sum((a - mx) * (b - my) for a, b in zip(ranks_x, ranks_y)) / math.sqrt(
        sum((a - mx) ** 2 for a in ranks_x) * sum((b - my) ** 2 for b in ranks_y)
    )
    assert plots.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert plots.spearman([1], [1]) is None and plots.spearman([1, 1], [2, 3]) is None
    with pytest.raises(ValueError):
        plots.predicted_vs_actual([1.0], [1.0, 2.0])


def test_image_metadata_inlines_png_and_refuses_other_bytes(tmp_path, monkeypatch):
    png = plots.histogram([1, 2, 3])
    value = image_metadata(png, alt="hist [x]", caption="three values")
    assert isinstance(value, dg.MarkdownMetadataValue)
    text = value.value
    prefix = "![hist (x)](data:image/png;base64,"
    assert text.startswith(prefix)
    encoded = text[len(prefix):text.index(")", len(prefix))]
    assert base64.b64decode(encoded) == png
    assert "three values" in text

    saved = image_metadata(png, save_to=tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes() == png and str(tmp_path / "h.png") in saved.value
    from_file = image_metadata(tmp_path / "h.png")
    assert encoded in from_file.value

    monkeypatch.setattr(ops_metadata, "MAX_INLINE_BYTES", 100)
    big = image_metadata(tmp_path / "h.png", alt="big")
    assert "base64" not in big.value and "too large to inline" in big.value and str(tmp_path / "h.png") in big.value

    with pytest.raises(ValueError, match="PNG"):
        image_metadata(b"GIF89a...")
