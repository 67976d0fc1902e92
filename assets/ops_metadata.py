"""Metadata helpers any stage can import to show a picture in the Dagster UI.

``image_metadata(png)`` turns PNG bytes (from ``pipeline.plots``) or a PNG file into a Markdown
metadata value with the image inlined as a base64 data URI: the UI lists it in the materialization's
metadata as *[Show Markdown]*, which opens the picture (the UI's Markdown sanitizer allows ``data:``
image sources); no file server or IO manager is needed. Images above
``MAX_INLINE_BYTES`` are not inlined (the event log is a database); the metadata then links the file.

    from assets.ops_metadata import image_metadata
    from pipeline import plots
    yield dg.MaterializeResult(metadata={
        "mixture": image_metadata(plots.mixture_bars(chosen, natural), alt="mixture vs natural"),
    })
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dagster as dg

MAX_INLINE_BYTES = 400_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_metadata(
    png: bytes | str | os.PathLike,
    *,
    alt: str = "plot",
    caption: str | None = None,
    save_to: str | os.PathLike | None = None,
) -> dg.MetadataValue:
    """A Markdown metadata value showing the PNG inline (bytes, or the path of a PNG file).

    ``save_to`` also writes the bytes there (atomically), for people who want the file next to the
    asset's data; the Markdown then names the path under the image.
    """
    path: Path | None = None
    if isinstance(png, (str, os.PathLike)):
        path = Path(png)
        data = path.read_bytes()
    else:
        data = bytes(png)
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("image_metadata expects PNG bytes (see pipeline.plots)")
    if save_to is not None:
        from pipeline.plots import save_png

        path = save_png(data, save_to)
    safe_alt = alt.replace("]", ")").replace("[", "(")
    lines = []
    if len(data) <= MAX_INLINE_BYTES:
        lines.append(f"![{safe_alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})")
    else:
        lines.append(f"_{safe_alt}: {len(data):,} bytes, too large to inline_")
    if caption:
        lines.append("")
        lines.append(caption)
    if path is not None:
        lines.append("")
        lines.append(f"`{path}`")
    return dg.MetadataValue.md("\n".join(lines))


__all__ = ["MAX_INLINE_BYTES", "image_metadata"]
