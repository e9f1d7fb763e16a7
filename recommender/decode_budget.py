"""What decoding an untrusted photo will cost, read from its structure before any pixel is decoded.

Two budgets, both checked before the decoder runs, so a refusal costs milliseconds:

* CPU: Pillow parses file structure in Python, one step per marker, chunk, block or junk byte, and
  its BMP RLE decoder is pure Python. The walks here count those steps at C speed (``bytes.find``,
  ``re``) or stop at a cap, and refuse a file whose structure would take Pillow seconds to walk.
  Pixel decoding itself (libjpeg, zlib, libwebp, libtiff) is bounded by the pixel and byte limits.
* Memory, in bytes rather than pixels: width x height x bytes per stored pixel (after JPEG draft
  scaling), times what the format's decoder allocates beside the image (libwebp decodes into a
  canvas of its own and hands over a copy; a progressive JPEG keeps every DCT coefficient of the
  full-size image). Conversion and shrinking happen afterwards in bands (images.py), so the decoded
  image is the peak.

Pure functions over bytes and an opened (not loaded) PIL image; no state.
"""

from __future__ import annotations

import re
import struct

from PIL import Image

from .errors import BadImage, ImageTooLarge

MAX_JPEG_SKIPPED = 64 * 1024  # junk / fill bytes before the first scan, which Pillow skips one at a time
MAX_JPEG_SEGMENTS = 4096  # markers before the first scan (real photos: under 40; ICC/XMP split in pieces: a few hundred)
MAX_JPEG_SCANS = 100  # progressive scans (encoders write about 10); each one is a pass over every coefficient
MAX_PNG_CHUNKS = 32_768  # Pillow reads chunks in Python (about 8 µs each); a 20 MB photo in 8 KB IDATs is 2,560
MAX_GIF_BLOCKS = 65_536  # extension blocks and sub-blocks before the first frame, read in Python
MAX_TIFF_TAG_BYTES = 1 << 20  # numeric tag values in the first directory (Pillow makes a Python int of each)
TIFF_COMPRESSIONS = {1: "none", 5: "LZW", 7: "JPEG", 8: "Deflate", 32773: "PackBits", 32946: "Deflate"}
BMP_RLE = {1: "RLE8", 2: "RLE4"}

_DAMAGED = "The {} file is damaged and cannot be decoded."
_FILL = re.compile(rb"\xff+")
_GIF_STRAY = re.compile(rb"[^!,;]*")
_SOF_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, 0xD9}


def check_structure(data: bytes, fmt: str) -> None:
    """Raise BadImage when walking ``data``'s structure would cost Pillow more than the CPU budget,
    or when it is a variant that is not accepted (BMP RLE, BigTIFF, rare TIFF codecs)."""
    check = _CHECKS.get(fmt)
    if check is not None:
        check(data)


def _jpeg(data: bytes) -> None:
    """Walk the markers before the first scan as Pillow's JpegImageFile._open does, counting the
    bytes it would skip one at a time (non-0xFF junk, 0xFF fill, 0xFF00) and the segments."""
    pos, skipped, segments, n = 2, 0, 0, len(data)
    while True:
        if skipped > MAX_JPEG_SKIPPED:
            raise BadImage(f"The JPEG file is damaged: more than {MAX_JPEG_SKIPPED // 1024} KB of junk before its pixels.")
        if segments > MAX_JPEG_SEGMENTS:
            raise BadImage(f"The JPEG file is damaged: more than {MAX_JPEG_SEGMENTS:,} markers before its pixels.")
        if pos >= n:
            return
        if data[pos] != 0xFF:
            nxt = data.find(b"\xff", pos)
            nxt = n if nxt < 0 else nxt
            skipped, pos = skipped + nxt - pos, nxt
            continue
        run = _FILL.match(data, pos).end()  # type: ignore[union-attr]
        skipped, pos = skipped + run - pos - 1, run - 1  # all but the last 0xFF are fill
        if pos + 1 >= n:
            pos = n
            continue
        marker = data[pos + 1]
        if marker == 0x00:
            skipped, pos = skipped + 2, pos + 2
        elif marker in _STANDALONE:
            segments, pos = segments + 1, pos + 2
        elif marker == 0xDA:  # start of scan: libjpeg takes over, in C
            return
        else:
            segments, pos = segments + 1, pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")


def _png(data: bytes) -> None:
    pos, chunks, n = 8, 0, len(data)
    while pos + 8 <= n:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise BadImage(f"The PNG file is damaged: it has more than {MAX_PNG_CHUNKS:,} chunks.")
        (length,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + length


def _gif(data: bytes) -> None:
    """Count what Pillow reads in Python before the first frame's pixels: extension blocks and
    their sub-blocks, and stray bytes between blocks (skipped one at a time)."""
    if len(data) < 13:
        return
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # after the global colour table
    steps, n = 0, len(data)
    while pos < n:
        stray = _GIF_STRAY.match(data, pos).end()  # type: ignore[union-attr]
        steps, pos = steps + stray - pos, stray
        if steps > MAX_GIF_BLOCKS:
            raise BadImage(f"The GIF file is damaged: more than {MAX_GIF_BLOCKS:,} blocks before its first frame.")
        if pos >= n or data[pos] != 0x21:  # an image (",") or the end (";")
            return
        pos += 2  # extension introducer and label, then sub-blocks up to an empty one
        while pos < n:
            steps += 1
            size = data[pos]
            pos += 1 + size
            if size == 0 or steps > MAX_GIF_BLOCKS:
                break


def _bmp(data: bytes) -> None:
    if len(data) >= 34 and int.from_bytes(data[14:18], "little") >= 40:
        kind = BMP_RLE.get(int.from_bytes(data[30:34], "little"))
        if kind:
            raise BadImage(f"{kind}-compressed BMP images are not accepted; please send the photo as JPEG or PNG.")


def _tiff(data: bytes) -> None:
    """Walk the first directory (Pillow reads only that one before decoding)."""
    if data[2:4] in (b"+\x00", b"\x00+"):
        raise BadImage("BigTIFF images are not accepted; please send the photo as JPEG or PNG.")
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
    except struct.error:
        return  # Pillow will word it
    numeric = 0
    for at in range(ifd + 2, min(ifd + 2 + 12 * count, len(data) - 11), 12):
        tag, kind, items = struct.unpack_from(order + "HHI", data, at)
        if tag == 259:
            (value,) = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, at + 8)
            if value not in TIFF_COMPRESSIONS:
                raise BadImage(
                    f"TIFF images compressed with scheme {value} are not accepted; please send the photo as JPEG or PNG."
                )
        if kind not in (2, 7):  # ASCII and UNDEFINED stay bytes; the rest become Python numbers
            numeric += items
    if numeric > MAX_TIFF_TAG_BYTES:
        raise BadImage(_DAMAGED.format("TIFF"))


_CHECKS = {"JPEG": _jpeg, "PNG": _png, "GIF": _gif, "BMP": _bmp, "TIFF": _tiff}


def _stored_bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow uses for one pixel of ``mode`` (multi-band modes are stored 4 bytes wide)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def decode_bytes(im: Image.Image, fmt: str, full_size: tuple[int, int]) -> int:
    """Bytes the decoder will hold at its peak for the opened (not yet loaded) image ``im``;
    ``full_size`` is its size before JPEG draft scaling."""
    width, height = im.size
    stored = width * height * _stored_bytes_per_pixel(im.mode)
    if fmt == "WEBP":  # libwebp's own buffers, its RGBA canvas, the copy it hands over, the image: measured 18-20
        return width * height * 20
    if fmt == "TIFF":  # libtiff reads a whole strip or tile beside the image; a tile may be far larger than the
        tags = getattr(im, "tag_v2", {})  # image (a 16x16 image of one 16,384-pixel-square tile), and it is filled
        tile = int(tags.get(322, 0) or 0) * int(tags.get(323, 0) or 0) * 8  # up to 4 samples of 16 bits
        return stored + max(stored, tile)
    if fmt == "JPEG" and im.info.get("progressive"):
        full_w, full_h = full_size
        layers = getattr(im, "layer", []) or [(0, 1, 1, 0)]
        h_max = max(layer[1] for layer in layers) or 1
        v_max = max(layer[2] for layer in layers) or 1
        blocks = sum(-(-full_w * lh // h_max // 8) * -(-full_h * lv // v_max // 8) for _, lh, lv, _ in layers)
        return stored + blocks * 128  # 64 coefficients of 2 bytes for every block of every component
    return stored


def check_memory(im: Image.Image, fmt: str, full_size: tuple[int, int], max_bytes: int) -> None:
    """Raise ImageTooLarge, in words, when decoding ``im`` needs more than ``max_bytes``."""
    need = decode_bytes(im, fmt, full_size)
    if need > max_bytes:
        width, height = full_size
        raise ImageTooLarge(
            f"The image is {width}×{height} pixels and would need {_mb(need)} of memory to decode; the limit is {_mb(max_bytes)}."
        )


def check_scans(data: bytes, im: Image.Image) -> None:
    """A progressive JPEG re-reads every coefficient once per scan: cap the number of scans."""
    if im.info.get("progressive") and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise BadImage(f"The JPEG file is damaged: it has more than {MAX_JPEG_SCANS} progressive scans.")


def _mb(n: int) -> str:
    mb = n / (1 << 20)
    return f"{mb:.1f} MB" if mb < 10 else f"{-(-n // (1 << 20)):,} MB"
