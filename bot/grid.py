"""The thumbnail grid: one JPEG of numbered cells, the stored thumbnails of a reply's matches (CPU work:
callers run it in a thread, through render.results_reply)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def thumbnail_grid(thumbs: Sequence[bytes | None], *, cell: int = 160, columns: int = 5, quality: int = 82) -> bytes | None:
    """Numbered cells (1, 2, ...) in rows of `columns`; a grey cell where a thumbnail is missing."""
    if not thumbs:
        return None
    cols = min(columns, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    pad = 4
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + pad) + pad), (47, 49, 54))
    draw = ImageDraw.Draw(sheet)
    font = _font(max(12, cell // 8))
    for i, data in enumerate(thumbs):
        x = pad + (i % cols) * (cell + pad)
        y = pad + (i // cols) * (cell + pad)
        tile = _tile(data, cell)
        sheet.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
        label = str(i + 1)
        box = draw.textbbox((0, 0), label, font=font)
        w, h = box[2] - box[0] + 10, box[3] - box[1] + 8
        draw.rectangle((x, y, x + w, y + h), fill=(88, 101, 242))
        draw.text((x + 5 - box[0], y + 4 - box[1]), label, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _tile(data: bytes | None, cell: int) -> Image.Image:
    if data:
        try:
            with Image.open(io.BytesIO(data)) as opened:
                im = opened.convert("RGB")
                im.thumbnail((cell, cell))
                return im
        except Exception:  # a damaged stored thumbnail must not cost the whole reply
            pass
    return Image.new("RGB", (cell, cell), (79, 84, 92))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
