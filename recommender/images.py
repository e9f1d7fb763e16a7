"""Turn untrusted bytes, paths or file objects into a safe, small RGB PIL image.

Format comes from the content (magic bytes), never from the file name, and only the
six supported decoders are used. Size limits are checked before any pixel is decoded: bytes,
pixels, and a per-photo budget of CPU (the file's structure) and memory (decoded bytes), see
decode_budget.py. Large images are converted and shrunk in bands of rows, never as a whole.
Every failure is raised as :class:`BadImage` (or :class:`ImageTooLarge`) with a message
meant for a person. Pure functions, no global settings touched and no lock: safe in a thread
pool, and one slow photo never makes another one wait.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from . import decode_budget
from .errors import BadImage, ImageTooLarge

Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO
SUPPORTED_FORMATS = "JPEG, PNG, WebP, GIF, BMP, TIFF"
_TRUNCATED = "The image file is truncated or incomplete."
_EMPTY = "The file is empty."
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif")
_T = Image.Transpose  # EXIF orientation -> operation, the table of ImageOps.exif_transpose
_TRANSPOSE = {
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}
_NOT_IMAGES = (  # leading bytes -> what the file looks like
    ((b"%PDF",), "a PDF document"),
    ((b"PK\x03\x04", b"PK\x05\x06"), "a ZIP archive"),
    ((b"\x1f\x8b", b"Rar!", b"7z\xbc\xaf\x27\x1c"), "a compressed archive"),
    ((b"RIFF",), "an audio or video file"),
)
_MAX_EXIF = 64 * 1024  # EXIF read for the orientation (a JPEG's APP1 cannot be larger; a PNG's eXIf can)
_BAND_BYTES = 4 << 20  # rows converted and reduced at a time, in bytes of 4-byte pixels


@dataclass(frozen=True)
class ImageLimits:
    """Limits applied to every image; the defaults suit photos sent to a chat bot."""

    max_bytes: int = 20 * 1024 * 1024  # size of the encoded file
    max_pixels: int = 64_000_000  # width*height from the header, checked before decoding
    max_side: int = 1024  # longest side of the decoded image
    max_decode_bytes: int = 128 * 1024 * 1024  # memory the decoder may use (decode_budget.py)

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side", "max_decode_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, not {value!r}")


def _fmt_bytes(n: int, round_up: bool = False) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            x = (math.ceil if round_up else math.floor)(n / scale * 10) / 10
            return f"{x:g} {unit}"
    return f"{n} bytes"


def _too_many_bytes(size: int | None, limits: ImageLimits) -> ImageTooLarge:
    limit = _fmt_bytes(limits.max_bytes)
    what = f"more than {limit}" if size is None else _fmt_bytes(size, round_up=True)
    return ImageTooLarge(f"The image is {what}; the limit is {limit}.")


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    limit = f"{max_pixels / 1e6:.3g} megapixels"
    return ImageTooLarge(f"The image is {width}×{height} pixels; the limit is {limit}.")


def read_source(source: Source, limits: ImageLimits = ImageLimits()) -> bytes:
    """The encoded bytes of ``source`` (reads at most ``max_bytes + 1``).

    Raises ImageTooLarge above ``limits.max_bytes``, BadImage when empty or unreadable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        if view.nbytes > limits.max_bytes:
            raise _too_many_bytes(view.nbytes, limits)
        data = source if isinstance(source, bytes) else view.tobytes()
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, limits)
    elif hasattr(source, "read"):
        data = _read_stream(source, limits)
    else:
        raise TypeError(f"Expected bytes, a path or a binary file object, not {type(source).__name__}")
    if not data:
        raise BadImage(_EMPTY)
    return data


def _read_path(source: str | os.PathLike, limits: ImageLimits) -> bytes:
    name = os.fsdecode(source)
    if name.startswith(("http://", "https://")):
        raise BadImage(f"'{name}' is a web address, not a file; download the image first.")
    try:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_bytes:
                raise _too_many_bytes(size, limits)
            data = f.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise BadImage(f"File not found: '{name}'.") from None
    except IsADirectoryError:
        raise BadImage(f"'{name}' is a folder, not an image file.") from None
    except (OSError, ValueError) as e:  # permission denied, a NUL byte in the path...
        raise BadImage(f"Cannot read '{name}': {getattr(e, 'strerror', None) or e}.") from None
    if len(data) > limits.max_bytes:  # the file grew, or is a pipe
        raise _too_many_bytes(None, limits)
    return data


def _read_stream(f: BinaryIO, limits: ImageLimits) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= limits.max_bytes:
            chunk = f.read(limits.max_bytes + 1 - total)
            if not chunk:
                break
            if isinstance(chunk, str):
                raise BadImage("The file was opened as text; open it in binary mode ('rb').")
            chunks.append(bytes(chunk))
            total += len(chunk)
    except (OSError, ValueError) as e:
        raise BadImage(f"Cannot read the file: {str(e).rstrip('.')}.") from None
    if total > limits.max_bytes:
        raise _too_many_bytes(None, limits)
    return b"".join(chunks)


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of the encoded bytes (identifies an upload, whatever its name)."""
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """Name of the supported format the magic bytes announce, else None."""
    head = bytes(data[:18])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) == 18 and int.from_bytes(head[14:], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _unsupported(data: bytes) -> BadImage:
    """The error for data that is not one of the supported formats, naming what it looks like."""
    head = bytes(data[:512])
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    what = next((desc for prefixes, desc in _NOT_IMAGES if head.startswith(prefixes)), None)
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIF_BRANDS:
            return BadImage(f"HEIC/AVIF images are not supported; please send one of {SUPPORTED_FORMATS}.")
        what = "a video"
    elif b"<html" in text or b"<body" in text or text.startswith(b"<!doctype html"):
        what = "an HTML web page, perhaps an error page instead of the image"
    elif b"<svg" in text:
        what = "an SVG drawing; vector images are not supported"
    elif text.startswith(b"<?xml"):
        what = "an XML document"
    elif what is None and _is_text(bytes(data[:1024]), more=len(data) > 1024):
        what = "a text file"
    if what:
        return BadImage(f"This file is not an image (it looks like {what}).")
    return BadImage(f"This file is not a supported image format ({SUPPORTED_FORMATS}).")


def _is_text(chunk: bytes, more: bool) -> bool:
    if any(b < 9 or 13 < b < 32 or b == 127 for b in chunk):
        return False
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        return more and e.start >= len(chunk) - 3  # only a character cut at the edge
    return True


def _looks_truncated(data: bytes, fmt: str) -> bool:
    """After a decoding failure: does the file end before its own structure says it should?"""
    if fmt == "WEBP":
        return len(data) < int.from_bytes(data[4:8], "little") + 8
    if fmt == "PNG":
        return b"IEND" not in data[-32:]
    if fmt == "JPEG":
        return b"\xff\xd9" not in data[-64:]
    if fmt == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    if fmt == "TIFF" and len(data) >= 8:
        return int.from_bytes(data[4:8], "little" if data[:2] == b"II" else "big") >= len(data)
    return len(data) < 64


def _decode_error(exc: Exception, data: bytes, fmt: str, max_pixels: int) -> BadImage:
    """Word any decoder exception for a person."""
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        try:  # re-read the header with the plugin alone (no bomb check) to name the size
            with _open(data, fmt) as im:
                return _too_many_pixels(im.width, im.height, max_pixels)
        except Exception:
            pixels = next((int(n) for n in re.findall(r"\d+", str(exc))), 0)
            limit = f"{max_pixels / 1e6:.3g} megapixels"
            return ImageTooLarge(f"The image is {pixels / 1e6:.0f} megapixels; the limit is {limit}.")
    if isinstance(exc, MemoryError):
        return ImageTooLarge("The image is too large to decode.")
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower() or _looks_truncated(data, fmt):
        return BadImage(_TRUNCATED)
    name = "WebP" if fmt == "WEBP" else fmt
    return BadImage(f"The {name} file is damaged and cannot be decoded.")


def _orientation(im: Image.Image) -> int:
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and len(raw) > _MAX_EXIF:  # Pillow would make a Python number of every value
        return 1
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # unreadable EXIF: keep the image as stored
        return 1


def _deep_range(im: Image.Image) -> tuple[float, float]:
    """(min, max) of a 16/32-bit greyscale image, NaN read as 0, computed band by band."""
    lo, hi = np.inf, -np.inf
    for band in _bands(im, 1):
        a = np.nan_to_num(np.asarray(band, dtype=np.float64))
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _deep_to_8bit(im: Image.Image, lo: float, hi: float) -> Image.Image:
    """16/32-bit greyscale ("I;16*", "I", "F") to "L", scaled instead of clipped: "I;16*" maps
    0..65535 linearly; "I"/"F" values within 0..1 (F), 0..255 or 0..65535 are read as that range,
    anything else is stretched from its minimum to its maximum (``lo``, ``hi``: of the whole image)."""
    a = np.nan_to_num(np.asarray(im, dtype=np.float64))
    if im.mode.startswith("I;16") or (lo >= 0 and hi > 255 and hi <= 65535):
        a = a / 257.0
    elif lo >= 0 and hi <= 1 and im.mode == "F":
        a = a * 255.0
    elif lo < 0 or hi > 255:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _to_rgb(im: Image.Image, deep: tuple[float, float] | None = None) -> Image.Image:
    """A new "RGB" image; transparency is composited onto white. ``deep``: the (min, max) of the
    whole image when ``im`` is a band of a 16/32-bit greyscale one."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _deep_to_8bit(im, *(deep or _deep_range(im)))
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return out
    return im.copy() if im.mode == "RGB" else im.convert("RGB")


def _bands(im: Image.Image, multiple: int) -> Iterator[Image.Image]:
    """``im``'s rows in bands of about _BAND_BYTES (a multiple of ``multiple`` rows): copies, or
    ``im`` itself when it fits in one."""
    rows = max(multiple, _BAND_BYTES // (4 * im.width) // multiple * multiple)
    for top in range(0, im.height, rows):
        yield im if rows >= im.height else im.crop((0, top, im.width, min(im.height, top + rows)))


def _shrunk_rgb(im: Image.Image, side: int) -> Image.Image:
    """A new RGB image, longest side <= side (never enlarged); ``im`` is left as it is.

    What Pillow's ``resize(reducing_gap=2.0)`` does (a box reduce by an integer factor, then
    bicubic), but band by band: each band is converted to RGB (a colour key or a palette must not
    be blurred, alpha goes onto white) and reduced, so no full-size RGB(A) copy ever exists."""
    scale = side / max(im.size)
    if scale >= 1:
        return _to_rgb(im)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    fx, fy = max(1, int(im.width / size[0] / 2)), max(1, int(im.height / size[1] / 2))
    deep = _deep_range(im) if im.mode.startswith("I") or im.mode == "F" else None
    reduced = Image.new("RGB", (-(-im.width // fx), -(-im.height // fy)))
    top = 0
    for band in _bands(im, fy):
        rgb = _to_rgb(band, deep)
        reduced.paste(rgb.reduce((fx, fy)) if fx > 1 or fy > 1 else rgb, (0, top // fy))
        top += band.height
    if reduced.size == size:
        return reduced
    return reduced.resize(size, Image.Resampling.BICUBIC, box=(0, 0, im.width / fx, im.height / fy))


def _open(data: bytes, fmt: str) -> ImageFile.ImageFile:
    """The header of ``data`` read by the plugin of ``fmt`` alone: no other decoder is tried, and no
    process-wide warning filter is needed (Pillow's pixel-count warning is Image.open's; the limits
    are checked by the caller instead)."""
    Image.init()  # registers the plugins once
    factory = Image.OPEN[fmt][0]
    return factory(io.BytesIO(data), "")


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode encoded bytes into an "RGB" image whose longest side is <= ``limits.max_side``.

    Pixels are fully decoded here (so truncation shows up here), the first frame of an
    animation is used, EXIF orientation is applied, and alpha is composited onto white.
    Raises ImageTooLarge (bytes; width*height or the memory decoding needs, from the header
    before decoding) or BadImage (damaged, not accepted, or a structure over the CPU budget).
    """
    data = bytes(data)
    if not data:
        raise BadImage(_EMPTY)
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(len(data), limits)
    fmt = sniff_format(data)
    if fmt is None:
        raise _unsupported(data)
    pillow_max = Image.MAX_IMAGE_PIXELS  # read only: Pillow's own limit also applies
    max_pixels = min(limits.max_pixels, pillow_max) if pillow_max else limits.max_pixels
    try:
        decode_budget.check_structure(data, fmt)  # CPU: what Pillow would walk in Python
        with _open(data, fmt) as src:
            width, height = src.size
            if width < 1 or height < 1:
                raise BadImage("The image has no pixels (its width or height is 0).")
            if width * height > max_pixels:
                raise _too_many_pixels(width, height, max_pixels)
            if src.format in ("JPEG", "MPO"):
                decode_budget.check_scans(data, src)
                # Square box: the reduced size is rotation-invariant, so EXIF stays valid.
                src.draft("RGB", (limits.max_side, limits.max_side))
            decode_budget.check_memory(src, fmt, (width, height), limits.max_decode_bytes)
            src.load()
            orientation = _orientation(src)
            im = _shrunk_rgb(src, limits.max_side)
        if orientation in _TRANSPOSE:
            im = im.transpose(_TRANSPOSE[orientation])
        return im
    except BadImage:
        raise
    except Exception as e:  # any decoder error: OSError, ValueError, SyntaxError, struct.error...
        raise _decode_error(e, data, fmt, max_pixels) from e


def load_image(source: Source, limits: ImageLimits = ImageLimits()) -> tuple[Image.Image, str]:
    """``read_source`` + ``decode_image``: return (RGB image, sha256 of the encoded bytes)."""
    data = read_source(source, limits)
    return decode_image(data, limits), content_hash(data)


def make_thumbnail(img: Image.Image, size: int = 256, quality: int = 85) -> bytes:
    """JPEG bytes of ``img`` with its longest side <= ``size`` (never upscaled)."""
    if size < 1 or not 1 <= quality <= 100:
        raise ValueError(f"size must be >= 1 and quality within 1..100 (got {size}, {quality})")
    if img.width < 1 or img.height < 1:
        raise BadImage("The image has no pixels (its width or height is 0).")
    out = io.BytesIO()
    _shrunk_rgb(img, size).save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
