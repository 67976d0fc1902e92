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
import re
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
    lines = [_inline_png(data, alt)]
    if caption:
        lines.append("")
        lines.append(caption)
    if path is not None:
        lines.append("")
        lines.append(f"`{path}`")
    return dg.MetadataValue.md("\n".join(lines))


def _inline_png(data: bytes, alt: str) -> str:
    safe_alt = alt.replace("]", ")").replace("[", "(")
    if len(data) > MAX_INLINE_BYTES:
        return f"_{safe_alt}: {len(data):,} bytes, too large to inline_"
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


# ![alt](name.png) with a relative target: what a report written next to its pictures links.
_RELATIVE_IMAGE = re.compile(r"!\[([^\]]*)\]\((?![a-z][a-z0-9+.-]*:|/)([^)\s]+\.png)\)", re.IGNORECASE)


def markdown_with_inline_images(markdown: str, folder: str | os.PathLike) -> dg.MetadataValue:
    """A Markdown report (written next to its PNGs, linking them by relative name) as a metadata value whose
    pictures show in the UI: each relative PNG link becomes the picture inlined (the UI cannot fetch files
    from the data root), with the file's path under it; a missing file is named instead of a broken image."""
    folder = Path(folder)

    def inline(match: re.Match) -> str:
        path = folder / match.group(2)
        if not path.is_file():
            return f"_{match.group(1)}: {path} is missing_"
        return f"{_inline_png(path.read_bytes(), match.group(1))}\n\n`{path}`"

    return dg.MetadataValue.md(_RELATIVE_IMAGE.sub(inline, markdown))


__all__ = ["MAX_INLINE_BYTES", "image_metadata", "markdown_with_inline_images"]
