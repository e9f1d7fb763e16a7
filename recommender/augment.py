"""Make a product shot look like a member's photo: the training views of the catalogue-tuned head.

Members photograph a garment on a bed, a floor, a hanger or a chair, in room light, slightly blurred, not
centred; a catalogue shows it cut out on white. :func:`member_view` takes a product shot and

1. cuts the product out of its (near-)white background (:func:`product_mask`; a shot without a white
   background is kept whole),
2. pastes it, scaled to 45-95 % of the frame, shifted and slightly rotated, on a procedural background
   (:func:`background`: plain or gradient walls, floor planks, fabric-like noise, blotchy textures, in random
   colours; nothing is downloaded and no photo is needed),
3. changes light and colour (brightness, contrast, saturation, a warm or cold cast), blurs, and sometimes crops
   in so the garment fills or leaves the frame.

:func:`background_view` is a background alone (nothing to find): the negatives the open-set decision is fitted
with. Everything is seeded by the ``random.Random`` passed in, pure, and safe in a thread pool.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

SIDE = 224  # the views are square; backbones resize them anyway
WHITE_TOLERANCE = 28  # max(255 - channel) below this: background of a product shot


def product_mask(img: Image.Image) -> Image.Image | None:
    """An 8-bit mask of the product in a white-background shot (255 = product), or None when the picture's
    border is not mostly white (a shot with a scene behind it: there is nothing to cut out)."""
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    dark = (255 - a).max(axis=2) > WHITE_TOLERANCE
    border = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    if border.mean() > 0.3 or dark.mean() < 0.02:
        return None
    mask = Image.fromarray((dark * 255).astype(np.uint8))
    # close small holes (white prints on the garment), then soften the edge
    mask = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))
    return mask.filter(ImageFilter.GaussianBlur(1.0))


def _colour(rng: random.Random, light: bool | None = None) -> tuple[int, int, int]:
    base = rng.uniform(0.55, 0.95) if light or (light is None and rng.random() < 0.6) else rng.uniform(0.08, 0.5)
    tint = [rng.uniform(-0.18, 0.18) for _ in range(3)]
    return tuple(int(255 * min(1.0, max(0.0, base + t))) for t in tint)  # type: ignore[return-value]


def _smooth_noise(rng: random.Random, side: int, cells: int, channels: int = 1) -> np.ndarray:
    """Values in [0, 1] varying over about ``side / cells`` pixels (upsampled random grid)."""
    grid = np.random.default_rng(rng.getrandbits(32)).random((cells, cells, channels)) * 255
    img = Image.fromarray(grid.astype(np.uint8).squeeze(), "L" if channels == 1 else "RGB")
    up = np.asarray(img.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    return up[..., None] if channels == 1 else up


def background(rng: random.Random, side: int = SIDE) -> Image.Image:
    """A procedural scene behind the garment: wall, gradient, planks, fabric or blotches, randomly coloured."""
    kind = rng.choice(("plain", "gradient", "planks", "fabric", "blotches"))
    c1, c2 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    yy = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    arr: np.ndarray
    if kind == "plain":
        arr = c1 + np.zeros((side, side, 3), np.float32)
    elif kind == "gradient":
        arr = c1 * (1 - yy) + c2 * yy
    elif kind == "planks":
        n = rng.randint(3, 9)
        tone = np.random.default_rng(rng.getrandbits(32)).uniform(0.8, 1.15, n)
        rows = tone[(np.arange(side) * n // side)][:, None, None]
        grain = _smooth_noise(rng, side, rng.randint(20, 60)) * 0.25 + 0.875
        arr = c1 * rows * grain
        if rng.random() < 0.5:
            arr = arr.transpose(1, 0, 2)
    elif kind == "fabric":
        folds = _smooth_noise(rng, side, rng.randint(2, 5)) * 0.5 + 0.6
        weave = _smooth_noise(rng, side, side // rng.randint(2, 4)) * 0.15 + 0.925
        arr = c1 * folds * weave
    else:
        mix = _smooth_noise(rng, side, rng.randint(3, 8))
        arr = c1 * mix + c2 * (1 - mix)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(1, 8), (side, side, 1))
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), "RGB")


def _light(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.65, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.2))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.2))
    if rng.random() < 0.6:  # a warm (lamp) or cold (window) cast
        warm = rng.uniform(-0.12, 0.12)
        a = np.asarray(img, dtype=np.float32) * np.array([1 + warm, 1.0, 1 - warm], np.float32)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.7:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6)))
    return img


def member_view(img: Image.Image, rng: random.Random, side: int = SIDE) -> Image.Image:
    """One member-photo-like view of a product shot (see the module docstring)."""
    return member_view_and_mask(img, rng, side)[0]


def member_view_and_mask(img: Image.Image, rng: random.Random, side: int = SIDE) -> tuple[Image.Image, Image.Image]:
    """:func:`member_view` (the same view from the same ``rng``) and where its garment is: an 8-bit mask of the
    view, 255 on the pasted product (bench/garments.py learns from it which cells of a photo show the garment)."""
    img = img.convert("RGB")
    canvas = background(rng, side)
    mask = product_mask(img)
    if mask is None:  # not a cut-out shot: keep it whole, but framed and lit differently
        mask = Image.new("L", img.size, 255)
    box = mask.point(lambda v: 255 if v > 64 else 0).getbbox() or (0, 0, *img.size)
    prod, mask = img.crop(box), mask.crop(box)
    scale = rng.uniform(0.45, 0.95) * side / max(prod.size)
    size = (max(8, int(prod.width * scale)), max(8, int(prod.height * scale)))
    prod, mask = prod.resize(size, Image.Resampling.BICUBIC), mask.resize(size, Image.Resampling.BILINEAR)
    angle = rng.uniform(-15, 15)
    prod = prod.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    x = rng.randint(min(0, side - prod.width), max(0, side - prod.width))
    y = rng.randint(min(0, side - prod.height), max(0, side - prod.height))
    canvas.paste(prod, (x, y), mask)
    where = Image.new("L", (side, side), 0)
    where.paste(mask, (x, y))
    if rng.random() < 0.3:  # zoom in: the garment fills the frame, parts of it leave it
        c = rng.uniform(0.6, 0.9) * side
        x0, y0 = rng.uniform(0, side - c), rng.uniform(0, side - c)
        canvas, where = (
            im.resize((side, side), Image.Resampling.BILINEAR, box=(x0, y0, x0 + c, y0 + c)) for im in (canvas, where)
        )
    if rng.random() < 0.5:
        canvas, where = (im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in (canvas, where))
    return _light(canvas, rng), where


def background_view(rng: random.Random, side: int = SIDE) -> Image.Image:
    """A background with nothing on it, lit like :func:`member_view`."""
    return _light(background(rng, side), rng)


def view_plan(categories: list[str], *, max_views: int = 4000, per_item: int = 2, seed: int = 0) -> list[int]:
    """Which items to make views of, one entry per view (an item index, repeated ``per_item`` times): every
    item when ``len(categories) * per_item <= max_views``, else the same number of items from each category
    (seeded), so a big catalogue still trains in minutes and a rare category still gets its views."""
    if per_item < 1 or max_views < 1:
        raise ValueError("per_item and max_views must be at least 1")
    n = len(categories)
    if n * per_item <= max_views:
        return [i for i in range(n) for _ in range(per_item)]
    by_cat: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        by_cat.setdefault(c, []).append(i)
    rng = random.Random(seed)
    quota = max(1, max_views // (per_item * len(by_cat)))
    chosen = sorted(i for members in by_cat.values() for i in rng.sample(members, min(quota, len(members))))
    return [i for i in chosen for _ in range(per_item)]


def member_views(images: list[Image.Image], owners: list[int], *, seed: int = 0) -> list[Image.Image]:
    """``member_view(images[o])`` for each ``o`` in ``owners`` (see :func:`view_plan`), from one seeded stream."""
    rng = random.Random(seed)
    return [member_view(images[o], rng) for o in owners]
