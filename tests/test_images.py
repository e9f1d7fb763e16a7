"""Tests for recommender.images, on real photos and on bad/unusual files made from them."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

from recommender.errors import BadImage, ImageTooLarge
from recommender.images import (
    ImageLimits,
    content_hash,
    decode_image,
    load_image,
    make_thumbnail,
    read_source,
    sniff_format,
)

DEMO = Path(__file__).resolve().parent / "data" / "clothing-demo" / "images"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WOMEN = SHARED / "women-fashion" / "images"
PRODUCTS = SHARED / "fashion-products" / "images"
TRUNCATED = "The image file is truncated or incomplete."
UNSUPPORTED = "This file is not a supported image format (JPEG, PNG, WebP, GIF, BMP, TIFF)."
FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]

needs_women = pytest.mark.skipif(not WOMEN.is_dir(), reason=f"shared data not present at {WOMEN}")
needs_products = pytest.mark.skipif(not PRODUCTS.is_dir(), reason=f"shared data not present at {PRODUCTS}")


@pytest.fixture(scope="module")
def photo_path() -> Path:
    paths = sorted(DEMO.glob("*/*.jpg"))
    assert paths, f"demo photos missing under {DEMO}"
    return paths[0]


@pytest.fixture(scope="module")
def photo(photo_path: Path) -> Image.Image:
    with Image.open(photo_path) as im:
        return im.convert("RGB")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    assert a.size == b.size
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of the given size, all black, compressed to almost nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row_block = bytes((1 + (width + 7) // 8) * 1000)
    idat = b"".join(z.compress(row_block) for _ in range(height // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ---- formats and modes -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_rgb_and_is_sniffed(photo: Image.Image, fmt: str) -> None:
    data = encode(photo, fmt)
    assert sniff_format(data) == fmt
    out = decode_image(data)
    assert out.mode == "RGB" and out.size == photo.size
    assert diff(out, photo) < 12  # lossy JPEG/WebP and GIF's 256 colours stay close


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("L", "PNG"),
        ("L", "JPEG"),
        ("1", "PNG"),
        ("1", "TIFF"),
        ("P", "PNG"),
        ("LA", "PNG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("RGBA", "BMP"),
        ("YCbCr", "TIFF"),
    ],
)
def test_modes_become_rgb(photo: Image.Image, mode: str, fmt: str) -> None:
    src = photo.convert(mode)
    out = decode_image(encode(src, fmt))
    assert out.mode == "RGB" and out.size == photo.size
    assert diff(out, src.convert("RGB")) < 8


def test_adobe_inverted_cmyk_jpeg(photo: Image.Image) -> None:
    data = encode(photo.convert("CMYK"), "JPEG")
    assert b"Adobe" in data  # Pillow writes Photoshop-style inverted CMYK
    assert diff(decode_image(data), photo) < 6


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_transparent_background_becomes_white(photo: Image.Image, fmt: str, kw: dict) -> None:
    w, h = photo.size
    rgba = Image.new("RGBA", (w, h), (0, 0, 0, 0))  # transparent black: must not show as black
    rgba.paste(photo.crop((40, 40, w - 40, h - 40)), (40, 40))
    out = decode_image(encode(rgba, fmt, **kw))
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((w - 5, h - 5)) == (255, 255, 255)
    assert diff(out.crop((40, 40, w - 40, h - 40)), photo.crop((40, 40, w - 40, h - 40))) < 1


def test_half_transparent_pixels_blend_with_white() -> None:
    out = decode_image(encode(Image.new("RGBA", (8, 8), (0, 0, 0, 128)), "PNG"))
    assert all(abs(c - 127) <= 2 for c in out.getpixel((4, 4)))


def test_palette_png_with_transparency(photo: Image.Image) -> None:
    pal = photo.quantize(64)
    w, h = pal.size
    pal.paste(0, (0, 0, w, 30))  # top band uses index 0, made transparent
    data = encode(pal, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode_image(data)
    assert out.getpixel((w // 2, 10)) == (255, 255, 255)
    assert out.getpixel((w // 2, h // 2)) != (255, 255, 255)


@pytest.mark.parametrize("mode", ["1", "P"])
def test_palette_and_bilevel_images_shrink_smoothly(mode: str) -> None:
    checker = (np.indices((2048, 2048)).sum(axis=0) % 2 * 255).astype(np.uint8)
    src = Image.fromarray(checker).convert(mode)
    out = np.asarray(decode_image(encode(src, "PNG")))
    assert out.shape == (1024, 1024, 3)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 10  # averaged to grey, not nearest-neighbour


def test_la_png_transparent_is_white() -> None:
    la = Image.new("LA", (20, 20), (0, 0))
    la.paste((30, 255), (5, 5, 15, 15))
    out = decode_image(encode(la, "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((10, 10)) == (30, 30, 30)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    r, g, b = decode_image(data).getpixel((32, 24))
    assert r > 150 and g < 80 and b < 80


def test_gif_transparency_is_white() -> None:
    im = Image.new("P", (32, 32), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 16, 32))
    out = decode_image(encode(im, "GIF", transparency=0))
    assert out.getpixel((2, 2)) == (255, 255, 255) and out.getpixel((30, 2)) == (255, 0, 0)


@pytest.mark.parametrize("fmt, mode", [("TIFF", "I;16"), ("PNG", "I;16"), ("TIFF", "I"), ("TIFF", "F")])
def test_deep_greyscale_is_scaled_not_clipped(fmt: str, mode: str) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256), (64, 1))
    if mode == "F":
        ramp = ramp / 65535  # float images in 0..1
    arr = ramp.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
    src = Image.fromarray(arr, mode) if mode != "I;16" else Image.fromarray(arr)
    data = encode(src, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    out = np.asarray(decode_image(data))[:, :, 0].astype(int)
    assert out[:, 0].max() <= 2 and out[:, -1].min() >= 253  # black to white
    assert 110 < out[:, 128].mean() < 145  # mid-grey in the middle, not clipped to white
    assert np.all(np.diff(out[0]) >= 0)


# ---- orientation, size limits, draft ----------------------------------------------------


def test_exif_orientation_is_applied(photo: Image.Image) -> None:
    img = photo.copy()
    w, h = img.size
    img.paste((255, 0, 0), (0, 0, 40, 40))  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (h, w)
    r, g, b = out.getpixel((h - 10, 10))  # top-left went to the top-right
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_imageops(photo: Image.Image, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(photo, "JPEG", exif=exif.tobytes(), quality=95)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert decode_image(data).tobytes() == expected.tobytes()


def test_exif_orientation_survives_draft_mode(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    big = photo.resize((3000, 2000))  # stored landscape, shown portrait
    out = decode_image(encode(big, "JPEG", exif=exif.tobytes()))
    assert out.size == (683, 1024)


def test_max_side_and_never_upscale(photo: Image.Image) -> None:
    data = encode(photo, "PNG")
    assert max(decode_image(data, ImageLimits(max_side=100)).size) == 100
    assert decode_image(data, ImageLimits(max_side=5000)).size == photo.size


def test_decompression_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bomb_png(30000, 30000)
    assert len(data) < 200_000

    def no_decoding(self, *a, **k):  # decoding 900 megapixels must never start
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageTooLarge) as e:
        decode_image(data)
    assert str(e.value) == "The image is 30000×30000 pixels; the limit is 64 megapixels."
    with pytest.raises(ImageTooLarge, match="^The image is 9000×9000 pixels"):  # below Pillow's limit
        decode_image(bomb_png(9000, 9000))
    with pytest.raises(ImageTooLarge) as e:  # Pillow's own error, typed and worded
        decode_image(data, ImageLimits(max_pixels=10**12))
    assert str(e.value) == "The image is 30000×30000 pixels; the limit is 89.5 megapixels."


def test_pillow_bomb_warning_becomes_error_without_leaking() -> None:
    data = bomb_png(10000, 10000)  # 100 MP: above Pillow's warning threshold, below its error
    max_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLarge, match="10000×10000 pixels"):
            decode_image(data, ImageLimits(max_pixels=10**10))
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == max_before and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_byte_limit_for_every_kind_of_source(photo: Image.Image, tmp_path: Path) -> None:
    data = encode(photo, "PNG")
    path = tmp_path / "p.png"
    path.write_bytes(data)
    limits = ImageLimits(max_bytes=1000)
    for source in (data, bytearray(data), memoryview(data), path, str(path), io.BytesIO(data)):
        with pytest.raises(ImageTooLarge, match="the limit is 1000 bytes"):
            read_source(source, limits)
    with pytest.raises(ImageTooLarge):
        decode_image(data, limits)
    with pytest.raises(ImageTooLarge) as e:
        read_source(b"\0" * (35 * 1024 * 1024))
    assert str(e.value) == "The image is 35 MB; the limit is 20 MB."


def test_stream_reads_at_most_limit_plus_one() -> None:
    class Pipe:  # not seekable, endless
        def __init__(self) -> None:
            self.served = 0

        def read(self, n: int = -1) -> bytes:
            self.served += n
            return b"\xff" * n

    pipe = Pipe()
    with pytest.raises(ImageTooLarge, match="more than 1000 bytes"):
        read_source(pipe, ImageLimits(max_bytes=1000))
    assert pipe.served == 1001


@needs_women
def test_huge_jpeg_uses_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((mode, size, result))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    (path,) = WOMEN.glob("burnt orange long-sleeve top*beret.jpeg")
    assert Image.open(path).size == (4000, 6000)
    img, digest = load_image(path)
    assert img.mode == "RGB" and img.size == (683, 1024)
    assert calls[0][:2] == ("RGB", (1024, 1024)) and calls[0][2] is not None  # reduced by libjpeg
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


# ---- real data ----------------------------------------------------------------------------


@needs_women
def test_all_women_fashion_images_load() -> None:
    paths = sorted(p for p in WOMEN.iterdir() if p.is_file())
    assert len(paths) == 96
    for p in paths:
        img, digest = load_image(p)
        assert img.mode == "RGB" and 1 <= max(img.size) <= 1024, p.name
        assert len(digest) == 64


@needs_women
def test_webp_named_jpg_is_read_by_content() -> None:
    (path,) = WOMEN.glob("green dress with a floral pattern, paired with matching green trousers.jpg")
    assert sniff_format(path.read_bytes()) == "WEBP"
    assert load_image(path)[0].size == (300, 451)


@needs_products
def test_small_product_photos_keep_size() -> None:
    paths = sorted(PRODUCTS.glob("*.jpg"))[:300]
    modes = set()
    for p in paths:
        with Image.open(p) as raw:
            modes.add(raw.mode)
            size = raw.size
        img, _ = load_image(p)
        assert img.mode == "RGB" and img.size == size
    assert "L" in modes  # some are greyscale


def test_demo_photos_load() -> None:
    for p in sorted(DEMO.glob("*/*.jpg"))[::10]:
        assert load_image(p)[0].mode == "RGB"


# ---- sources ------------------------------------------------------------------------------


def test_sources_agree(photo_path: Path) -> None:
    data = photo_path.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    with open(photo_path, "rb") as f:
        sources = [photo_path, str(photo_path), data, bytearray(data), memoryview(data), io.BytesIO(data), f]
        results = [load_image(s) for s in sources]
    assert content_hash(data) == expected
    assert {digest for _, digest in results} == {expected}
    assert len({img.tobytes() for img, _ in results}) == 1


@pytest.mark.parametrize("fmt, name", [("WEBP", "x.jpg"), ("PNG", "x.gif"), ("JPEG", "x.png"), ("GIF", "x")])
def test_misnamed_files(photo: Image.Image, tmp_path: Path, fmt: str, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(encode(photo, fmt))
    assert load_image(path)[0].size == photo.size


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="File not found: .*nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(BadImage, match="is a folder"):
        read_source(tmp_path)
    with pytest.raises(BadImage, match="web address"):
        read_source("https://example.com/a.jpg")


def test_empty_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for source in (empty, b"", io.BytesIO()):
        with pytest.raises(BadImage) as e:
            load_image(source)
        assert str(e.value) == "The file is empty." and not isinstance(e.value, ImageTooLarge)
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"")


def test_text_mode_file_object(photo_path: Path) -> None:
    with open(photo_path, encoding="latin-1") as f, pytest.raises(BadImage, match="binary mode"):
        read_source(f)


# ---- bad files ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(photo: Image.Image, fmt: str) -> None:
    data = encode(photo, fmt)
    with pytest.raises(BadImage) as e:
        decode_image(data[: len(data) // 2])
    assert str(e.value) == TRUNCATED


def test_non_images_are_named(photo_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.write(photo_path, "photo.jpg")
    cases = {
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj": "PDF",
        b"\n<!DOCTYPE html>\n<html><head><title>404</title>": "HTML",
        archive.getvalue(): "ZIP",
        b"name,price\nred dress,10\n": "text",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>': "SVG",
    }
    for data, what in cases.items():
        assert sniff_format(data) is None
        with pytest.raises(BadImage, match=rf"^This file is not an image \(it looks like .*{what}"):
            decode_image(data)
    with pytest.raises(BadImage, match="HEIC"):
        decode_image(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")


def test_random_bytes_and_other_formats(photo: Image.Image) -> None:
    noise = random.Random(1).randbytes(5000)
    for data in (noise, encode(photo, "PPM"), encode(photo, "ICO"), b"BM" + noise):
        with pytest.raises(BadImage) as e:
            decode_image(data)
        assert str(e.value) == UNSUPPORTED


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on broken TIFF tags
@pytest.mark.parametrize("fmt", FORMATS)
def test_mangled_files_only_raise_bad_image(photo: Image.Image, fmt: str) -> None:
    data = encode(photo.resize((48, 64)), fmt)
    rng = random.Random(fmt)
    failures = 0
    for _ in range(60):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b) if rng.random() < 0.5 else min(len(b), 200))] = rng.randrange(256)
        if rng.random() < 0.3:
            del b[rng.randrange(1, len(b)) :]
        try:
            img = decode_image(bytes(b))
            assert img.mode == "RGB" and max(img.size) <= 1024
        except BadImage as e:  # anything else escaping fails the test
            failures += 1
            assert str(e).endswith(".") and "PIL" not in str(e) and "<" not in str(e)
    assert failures > 0


def test_decoding_is_thread_safe(photo: Image.Image) -> None:
    inputs = [encode(photo, f) for f in FORMATS] * 4 + [bomb_png(10000, 10000), b"%PDF-1.4"]
    filters_before = list(warnings.filters)

    def run(data: bytes) -> str:
        try:
            return hashlib.sha256(decode_image(data).tobytes()).hexdigest()
        except BadImage as e:
            return type(e).__name__

    expected = [run(d) for d in inputs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(run, inputs)) == expected
    assert expected[-2:] == ["ImageTooLarge", "BadImage"]
    assert warnings.filters == filters_before


# ---- thumbnails and small API -------------------------------------------------------------


def test_make_thumbnail(photo: Image.Image) -> None:
    thumb = make_thumbnail(photo, size=100)
    assert sniff_format(thumb) == "JPEG"
    with Image.open(io.BytesIO(thumb)) as t:
        assert max(t.size) == 100 and t.mode == "RGB"
    small = make_thumbnail(photo.resize((30, 40)), size=256)
    assert Image.open(io.BytesIO(small)).size == (30, 40)  # never upscaled
    assert len(make_thumbnail(photo, quality=20)) < len(make_thumbnail(photo, quality=95))
    clear = make_thumbnail(Image.new("RGBA", (50, 50), (0, 0, 0, 0)))
    assert Image.open(io.BytesIO(clear)).getpixel((25, 25)) == (255, 255, 255)
    assert Image.open(io.BytesIO(make_thumbnail(photo.quantize(16)))).mode == "RGB"
    with pytest.raises(ValueError):
        make_thumbnail(photo, size=0)


def test_limits_and_hash_and_sniff() -> None:
    with pytest.raises(ValueError):
        ImageLimits(max_side=0)
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert sniff_format(b"") is None and sniff_format(b"\xff\xd8") is None
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
