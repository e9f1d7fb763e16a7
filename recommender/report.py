"""The evaluation report as pictures (PNG) and a self-contained HTML page.

Drawn with Pillow only (``ImageFont.load_default(size=...)``: no font files, no matplotlib).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from recommender.errors import BadOption
from recommender.evaluate import ClassificationReport

log = logging.getLogger(__name__)

THUMB = 112
WHITE = (255, 255, 255)
BLACK = (20, 20, 20)
GREY = (110, 110, 110)
GREEN = (30, 150, 50)
RED = (205, 40, 40)
DARK = (8, 48, 107)  # darkest heatmap colour


@dataclass
class QueryExample:
    query_image: bytes  # JPEG thumbnail bytes
    query_label: str
    results: list[tuple[bytes, str, float]] = field(default_factory=list)  # (thumbnail, label, similarity)
    right: list[bool] | None = None  # which results are right (None: those whose label is the query's)


# --------------------------------------------------------------------------- drawing helpers


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_size(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - min(left, 0)), int(bottom - min(top, 0))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _rotated_text(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> Image.Image:
    w, h = _text_size(font, text)
    img = Image.new("RGB", (max(w, 1) + 2, max(h, 1) + 2), WHITE)
    ImageDraw.Draw(img).text((1, 1), text, fill=BLACK, font=font)
    return img.rotate(90, expand=True)


def _message(text: str, width: int = 480, height: int = 60) -> Image.Image:
    img = Image.new("RGB", (width, height), WHITE)
    ImageDraw.Draw(img).text((10, height // 2 - 8), text, fill=GREY, font=_font(16))
    return img


def _heat(frac: float) -> tuple[int, int, int]:
    f = min(max(frac, 0.0), 1.0)
    return tuple(int(round(w + (d - w) * f)) for w, d in zip(WHITE, DARK))  # type: ignore[return-value]


def _thumbnail(data: bytes, size: int = THUMB) -> Image.Image:
    """Decode and fit into ``size x size`` (letterboxed); a grey box with '?' if unreadable."""
    canvas = Image.new("RGB", (size, size), (235, 235, 235))
    try:
        with Image.open(io.BytesIO(data)) as src:
            src.draft("RGB", (size, size))
            im = ImageOps.contain(src.convert("RGB"), (size, size))
            canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        log.warning("unreadable thumbnail in report: %s", e)
        ImageDraw.Draw(canvas).text((size // 2 - 6, size // 2 - 12), "?", fill=GREY, font=_font(24))
    return canvas


# --------------------------------------------------------------------------- confusion matrix


def _select_classes(cm: np.ndarray, max_labels: int) -> np.ndarray:
    """Indices of the ``max_labels`` classes with the most true items, in their original order."""
    support = cm.sum(axis=1)
    order = np.argsort(-support, kind="stable")[:max_labels]
    return np.sort(order)


def render_confusion_matrix(cm: np.ndarray, labels: list[str], *, max_labels: int = 40) -> Image.Image:
    """Heatmap of a confusion matrix (rows = true, columns = predicted), coloured by row share.

    ``cm`` is ``(L, L)`` or ``(L, L + 1)``, the extra column counting "not sure" predictions.
    With more than ``max_labels`` classes only the most frequent ones are drawn (the title says
    so) and predictions of the others are summed in an "other" column, so every row's colours
    still add up to its whole. Counts are printed where the cells are big enough.
    """
    cm = np.asarray(cm)
    L = len(labels)
    if cm.ndim != 2 or cm.shape[0] != L or cm.shape[1] not in (L, L + 1):
        raise BadOption(f"confusion matrix of shape {cm.shape} does not match {L} labels")
    if max_labels < 1:
        raise BadOption(f"max_labels must be at least 1, got {max_labels}")
    if L == 0 or cm.sum() == 0:
        return _message("confusion matrix: nothing to show")
    has_unsure = cm.shape[1] == L + 1
    title = f"Confusion matrix ({L} classes, {int(cm.sum())} items; colour = share of the true row)"
    keep = np.arange(L)
    if L > max_labels:
        keep = _select_classes(cm, max_labels)
        title = f"Confusion matrix: the {len(keep)} most frequent of {L} classes (colour = share of the true row)"
    rows = cm[keep].astype(np.int64)
    cols = [rows[:, keep]]
    col_names = [_short(labels[i], 22) for i in keep]
    if len(keep) < L:
        other = np.setdiff1d(np.arange(L), keep)
        cols.append(rows[:, other].sum(axis=1, keepdims=True))
        col_names.append("(other)")
    if has_unsure:
        cols.append(rows[:, L : L + 1])
        col_names.append("(not sure)")
    grid = np.concatenate(cols, axis=1)
    totals = rows.sum(axis=1)
    frac = grid / np.maximum(totals, 1)[:, None]
    row_names = [_short(labels[i], 22) for i in keep]

    n_rows, n_cols = grid.shape
    cell = int(np.clip(720 // max(n_cols, 1), 14, 44))
    label_font, count_font, title_font = _font(12), _font(max(9, min(13, cell // 3))), _font(15)
    row_w = max(_text_size(label_font, t)[0] for t in row_names) + 12
    col_imgs = [_rotated_text(t, label_font) for t in col_names]
    col_h = max(im.height for im in col_imgs) + 6
    title_h = 30
    width = max(row_w + n_cols * cell + 60, _text_size(title_font, title)[0] + 20)
    height = title_h + col_h + n_rows * cell + 30
    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((10, 7), title, fill=BLACK, font=title_font)
    x0, y0 = row_w, title_h + col_h
    for j, im in enumerate(col_imgs):
        img.paste(im, (x0 + j * cell + (cell - im.width) // 2, y0 - im.height - 3))
    for i, name in enumerate(row_names):
        tw, th = _text_size(label_font, name)
        draw.text((row_w - tw - 6, y0 + i * cell + (cell - th) // 2), name, fill=BLACK, font=label_font)
        for j in range(n_cols):
            x, y = x0 + j * cell, y0 + i * cell
            colour = _heat(float(frac[i, j]))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(225, 225, 225))
            count = int(grid[i, j])
            if count and cell >= 16:
                text = str(count)
                tw, th = _text_size(count_font, text)
                if tw <= cell - 3:
                    ink = WHITE if frac[i, j] > 0.5 else BLACK
                    draw.text((x + (cell - tw) // 2, y + (cell - th) // 2), text, fill=ink, font=count_font)
        if i < len(keep) and i < n_cols:  # outline the diagonal (correct) cell
            x, y = x0 + i * cell, y0 + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline=GREEN)
    draw.text((10, height - 22), "rows: true category   columns: predicted", fill=GREY, font=label_font)
    return img


# --------------------------------------------------------------------------- query grid


def render_query_grid(examples: list[QueryExample]) -> Image.Image:
    """One row per query: the query thumbnail, then its results captioned with label and score;
    results with the query's label are framed green, others red."""
    if not examples:
        return _message("no query examples")
    font, small = _font(13), _font(12)
    pad, frame, caption = 10, 4, 36
    cell_w = THUMB + 2 * frame + pad
    n_cols = 1 + max(len(e.results) for e in examples)
    row_h = THUMB + 2 * frame + caption + pad
    gap = 16  # between the query column and the results
    img = Image.new("RGB", (pad + n_cols * cell_w + gap, pad + len(examples) * row_h), WHITE)
    draw = ImageDraw.Draw(img)

    def put(data: bytes, x: int, y: int, colour: tuple[int, int, int], line1: str, line2: str) -> None:
        draw.rectangle([x, y, x + THUMB + 2 * frame - 1, y + THUMB + 2 * frame - 1], fill=colour)
        img.paste(_thumbnail(data), (x + frame, y + frame))
        ty = y + THUMB + 2 * frame + 2
        draw.text((x, ty), _short(line1, 17), fill=BLACK, font=font)
        draw.text((x, ty + 16), line2, fill=GREY, font=small)

    for r, ex in enumerate(examples):
        y = pad + r * row_h
        put(ex.query_image, pad, y, (60, 60, 60), ex.query_label, "query")
        for c, (data, label, score) in enumerate(ex.results):
            x = pad + gap + (c + 1) * cell_w
            colour = GREEN if (ex.right[c] if ex.right is not None else label == ex.query_label) else RED
            put(data, x, y, colour, label, f"{score:.3f}")
    draw.line([pad + cell_w + gap // 2 - 4, pad, pad + cell_w + gap // 2 - 4, img.height - pad], fill=GREY, width=1)
    return img


# --------------------------------------------------------------------------- the report


def _fmt(value: float | int | str) -> str:
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) > 1 else f"{v:.4f}"


def _summary(metrics: dict[str, float | str], classification: ClassificationReport | None) -> list[str]:
    lines = [f"{k}: {_fmt(v)}" for k, v in metrics.items()]
    if classification is not None:
        c = classification
        lines.append(
            f"classification: accuracy {_fmt(c.accuracy)}, macro-F1 {_fmt(c.macro_f1)}, "
            f"coverage {_fmt(c.coverage)}, accuracy when sure {_fmt(c.sure_accuracy)} ({c.n} items)"
        )
    return lines


def _header(title: str, lines: list[str], width: int) -> Image.Image:
    big, font = _font(22), _font(15)
    width = max(width, _text_size(big, title)[0] + 20, *(_text_size(font, t)[0] + 20 for t in lines))
    img = Image.new("RGB", (width, 46 + 21 * len(lines) + 10), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title, fill=BLACK, font=big)
    for i, line in enumerate(lines):
        draw.text((10, 46 + 21 * i), line, fill=BLACK, font=font)
    return img


def _stack(parts: list[Image.Image]) -> Image.Image:
    width = max(p.width for p in parts)
    out = Image.new("RGB", (width, sum(p.height for p in parts) + 12 * (len(parts) - 1)), WHITE)
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + 12
    return out


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html(
    title: str,
    metrics: dict[str, float | str],
    classification: ClassificationReport | None,
    images: dict[str, Image.Image],
) -> str:
    e = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}</style>",
        f"</head><body><h1>{e(title)}</h1>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>",
    ]
    out += [f'<tr><td>{e(str(k))}</td><td class="n">{e(_fmt(v))}</td></tr>' for k, v in metrics.items()]
    out.append("</table>")
    if classification is not None:
        c = classification
        out.append("<h2>Category classifier</h2><table><tr><th>metric</th><th>value</th></tr>")
        summary = {
            "accuracy": c.accuracy,
            "macro-F1": c.macro_f1,
            "coverage (sure)": c.coverage,
            "accuracy when sure": c.sure_accuracy,
            "items": c.n,
        }
        out += [f'<tr><td>{e(k)}</td><td class="n">{e(_fmt(v))}</td></tr>' for k, v in summary.items()]
        out.append("</table><h3>Per category</h3><table>")
        out.append("<tr><th>category</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>")
        for m in sorted(c.per_class.values(), key=lambda m: (-m.support, m.label)):
            out.append(
                f'<tr><td>{e(m.label)}</td><td class="n">{m.precision:.4f}</td><td class="n">{m.recall:.4f}</td>'
                f'<td class="n">{m.f1:.4f}</td><td class="n">{m.support}</td></tr>'
            )
        out.append("</table>")
    for name, img in images.items():
        out.append(f'<h2>{e(name)}</h2><img alt="{e(name)}" src="data:image/png;base64,{_png_b64(img)}">')
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    out_dir: Path,
    *,
    title: str,
    metrics: dict[str, float | str],
    classification: ClassificationReport | None,
    examples: list[QueryExample],
) -> dict[str, Path]:
    """Write ``report.png`` (metrics + confusion matrix + query grid, stacked), ``confusion.png``
    (only with a classification report), ``queries.png`` and a self-contained ``report.html``
    (tables, PNGs embedded as base64). Returns ``{file name: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, Image.Image] = {}
    if classification is not None:
        images["confusion"] = render_confusion_matrix(classification.confusion, classification.labels)
    images["queries"] = render_query_grid(examples)
    width = max(im.width for im in images.values())
    header = _header(title, _summary(metrics, classification), width)
    paths: dict[str, Path] = {}
    _stack([header, *images.values()]).save(out_dir / "report.png", format="PNG", optimize=True)
    paths["report.png"] = out_dir / "report.png"
    for name, img in images.items():
        path = out_dir / f"{name}.png"
        img.save(path, format="PNG", optimize=True)
        paths[path.name] = path
    page = out_dir / "report.html"
    page.write_text(_html(title, metrics, classification, images), encoding="utf-8")
    paths[page.name] = page
    log.info("report written to %s", out_dir)
    return paths
