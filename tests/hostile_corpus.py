"""A generated corpus of hostile imports (issue #11): archives, file names and manifests an attacker or
a careless export would produce, each with good files beside the bad ones.

`write_corpus(dest)` writes every case under `dest` and returns them; tests/test_hostile_imports.py
runs them through `lookalike import` and `/catalog import`, and docs/SECURITY.md measures
them one by one:

    .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \
        from hostile_corpus import write_corpus; write_corpus(Path('/tmp/corpus'))"
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from helpers import demo_photos

MB = 1_000_000


@dataclass
class Entry:
    """One member of a hand-made ZIP: any name bytes, flags, Unix mode, and sizes that may lie."""

    name: bytes
    data: bytes = b""
    flags: int = 0x800  # the name is flagged UTF-8
    mode: int = 0o100644
    declared: int | None = None  # the inflated size the headers claim (None: the truth)
    payload: tuple[bytes, int, int] | None = None  # (raw deflate stream, crc, inflated size), made elsewhere


def deflated(chunks: list[bytes] | bytes, repeat: int = 1) -> tuple[bytes, int, int]:
    """A raw deflate stream of `chunks` repeated `repeat` times, with its CRC and size."""
    chunks = [chunks] if isinstance(chunks, bytes) else chunks
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out, crc, size = [], 0, 0
    for _ in range(repeat):
        for chunk in chunks:
            out.append(c.compress(chunk))
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    out.append(c.flush())
    return b"".join(out), crc, size


def raw_zip(entries: list[Entry]) -> bytes:
    """A ZIP written field by field: zipfile cannot write a lying size, a non-UTF-8 flagged name or a link."""
    out, central = bytearray(), bytearray()
    for e in entries:
        payload, crc, size = e.payload or deflated(e.data)
        declared = size if e.declared is None else e.declared
        offset = len(out)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, e.flags, 8, 0, 0x21, crc, len(payload), declared, len(e.name), 0)
        out += e.name + payload
        central += struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            e.flags,
            8,
            0,
            0x21,
            crc,
            len(payload),
            declared,
            len(e.name),
            0,
            0,
            0,
            0,
            e.mode << 16,
            offset,
        )
        central += e.name
    at = len(out)
    out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), at, 0)
    return bytes(out)


@dataclass
class Case:
    name: str
    source: Path
    good: set[str]  # item ids that must be in the catalogue afterwards
    says: list[str]  # words the CLI's output must hold (the sentence for each bad entry)
    rc: int = 0
    upload: bool = False  # also sent through /catalog import
    bot_says: list[str] = field(default_factory=list)  # what the bot's answer must hold, when it differs


def _photo(i: int = 0) -> bytes:
    return demo_photos("hat")[i].read_bytes()


def _small_png(i: int) -> bytes:
    with Image.open(demo_photos("shoes")[i]) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((64, 64)).save(out, "PNG")
        return out.getvalue()


def _reencoded(fmt: str) -> bytes:
    with Image.open(demo_photos("dress")[0]) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((96, 96)).save(out, fmt)
        return out.getvalue()


def _dense(n: int, seed: int = 0) -> list[bytes]:
    """n bytes that deflate about 58:1: under the bomb ratio, so they are inflated in full."""
    r = random.Random(seed)
    block = bytearray(1 << 20)
    for i in range(0, len(block), 200):
        block[i] = r.randrange(256)
    whole, rest = divmod(n, len(block))
    return [bytes(block)] * whole + [bytes(block[:rest])]


def _csv(rows: list[list[str]], header: str = "id,category,name,path,description") -> bytes:
    import csv

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header.split(","))
    w.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogateescape")


def write_corpus(dest: Path) -> list[Case]:
    dest.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def zipped(name: str, entries: list[Entry], good: set[str], says: list[str], **kw: object) -> None:
        (dest / f"{name}.zip").write_bytes(raw_zip(entries))
        cases.append(Case(name, dest / f"{name}.zip", good, says, upload=True, **kw))  # type: ignore[arg-type]

    good = Entry(b"hat/good.jpg", _photo(0))
    zipped(
        "zip-name-not-utf8",
        [good, Entry(b"hat/caf\xff\xfe.jpg", _photo(1))],
        {"hat/good", "hat/caf%FF%FE"},
        ["flagged UTF-8 but is not"],
    )
    zipped(
        "zip-member-inflates-past-its-header",
        [
            good,
            Entry(b"hat/bomb.jpg", declared=1000, payload=deflated(bytes(1 << 20), 512)),  # 512 MiB of zeros
            Entry(b"hat/bomb2.jpg", declared=1000, payload=deflated(_dense(60 * MB))),
        ],
        {"hat/good"},
        ["refused as a likely zip bomb", "inflates to more than 21 MB (its header says 1,000 bytes)"],
    )
    zeros = deflated(bytes(1 << 20), 19)  # 19.9 MB each: just under the limit
    zipped(
        "zip-many-members-near-the-limit-zeros",
        [Entry(f"hat/z{i:03d}.jpg".encode(), payload=zeros) for i in range(60)] + [Entry(b"shoes/good.jpg", _photo(2))],
        {"shoes/good"},
        ["refused as a likely zip bomb"],
    )
    dense = deflated(_dense(19_900_000))
    zipped(
        "zip-many-members-near-the-limit-dense",
        [Entry(f"hat/d{i:03d}.jpg".encode(), payload=dense) for i in range(40)] + [Entry(b"shoes/good.jpg", _photo(2))],
        {"shoes/good"},
        ["not a supported image format"],
    )
    zipped(
        "zip-path-traversal",
        [
            Entry(b"../../../../x.jpg", _photo(0)),
            Entry(b"/abs/hat/a.jpg", _photo(1)),
            Entry(b"..\\..\\hat\\b.jpg", _photo(2)),
            Entry(b"hat/c.jpg", _photo(3)),
            Entry(b"hat\\c.jpg", _photo(4)),  # the same path once the backslash is a separator
        ],
        {"abs/hat/a", "hat/b", "hat/c"},
        ["'..' was dropped", "the leading '/' was dropped", "backslashes became '/'", "is already used by hat/c.jpg"],
    )
    zipped(
        "zip-symlink-member",
        [good, Entry(b"hat/passwd.jpg", b"/etc/passwd", mode=0o120777)],
        {"hat/good"},
        ["a symbolic link (links are not followed)"],
    )
    inner = raw_zip([Entry(b"hat/inner.jpg", _photo(1))])
    zipped(
        "zip-inside-a-zip",
        [good, Entry(b"hat/inner.zip", inner), Entry(b"hat/sneaky.jpg", inner)],
        {"hat/good"},
        ["an archive inside the archive"],
    )
    zipped(
        "zip-10000-empty-members",
        [Entry(f"hat/e{i:05d}.jpg".encode()) for i in range(10_000)] + [Entry(b"hat/good.jpg", _photo(0))],
        {"hat/good"},
        ["the file is empty"],
        bot_says=["has more than 5,000 rows"],
    )
    whole = raw_zip([Entry(f"hat/t{i}.jpg".encode(), _photo(i)) for i in range(4)])
    (dest / "zip-truncated.zip").write_bytes(whole[: len(whole) * 6 // 10])
    cases.append(Case("zip-truncated", dest / "zip-truncated.zip", {"hat/t0", "hat/t1"}, ["is cut short"], upload=True))
    manifest = _csv(
        [
            ["ok1", "hat", "Ok", "images/a.jpg", ""],
            ["nul\x00id", "hat", "Nul", "images/a.jpg", ""],
            ["big", "hat", "Big", "images/a.jpg", "x" * 200_000],
            ["=cmd|' /C calc'!A0", "hat", '=HYPERLINK("http://evil.example")', "images/b.jpg", "+SUM(1+1)*cmd|' /C calc'!A0"],
            ["ok2", "hat\x1b[31m", "Line one\n0.999\tfake-item\x1b[2J", "images/c.jpg", "@SUM(1) -2+3"],
        ]
    )
    zipped(
        "zip-csv-nul-huge-cell-formulas",
        [Entry(b"catalogue.csv", manifest)] + [Entry(f"images/{c}.jpg".encode(), _photo(i)) for i, c in enumerate("abc")],
        {"ok1", "=cmd|' /C calc'!A0", "ok2"},
        ["contains a NUL byte", "a cell is longer than 131,072 characters"],
    )

    # -- folders ---------------------------------------------------------------------------------
    folder = dest / "folder-name-not-utf8"
    (folder / "hat").mkdir(parents=True, exist_ok=True)
    (folder / "hat" / "good.jpg").write_bytes(_photo(0))
    with open(os.fsencode(folder / "hat") + b"/caf\xff.jpg", "wb") as f:
        f.write(_photo(1))
    cases.append(Case("folder-name-not-utf8", folder, {"hat/good", "hat/caf%FF"}, ["the name is not valid UTF-8"]))

    folder = dest / "folder-same-name-three-formats"
    (folder / "dress").mkdir(parents=True, exist_ok=True)
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif")):
        (folder / "dress" / f"hopper.{ext}").write_bytes(_reencoded(fmt))
    cases.append(
        Case(
            "folder-same-name-three-formats",
            folder,
            {"dress/hopper", "dress/hopper.jpg", "dress/hopper.png"},  # the first in name order keeps the stem
            ["another file has the same name with another extension"],
        )
    )

    folder = dest / "folder-fifo-and-control-characters"
    (folder / "hat").mkdir(parents=True, exist_ok=True)
    (folder / "hat" / "good.jpg").write_bytes(_photo(0))
    os.mkfifo(folder / "hat" / "pipe.jpg")
    (folder / "hat" / "fake\n0.999\tother-item\x1b[31m.jpg").write_bytes(_photo(2))
    cases.append(
        Case(
            "folder-fifo-and-control-characters",
            folder,
            {"hat/good", "hat/fake_0.999_other-item_[31m"},
            ["it is a FIFO, not a regular file; skipped", "control characters became '_'"],
        )
    )

    # -- CSV manifests -----------------------------------------------------------------------------
    folder = dest / "csv-fifo-huge-cell-nul-bad-bytes"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (folder / "images" / f"p{i}.png").write_bytes(_small_png(i))
    os.mkfifo(folder / "images" / "pipe.jpg")
    rows = [[f"r{i:03d}", "shoes", f"Row {i}", f"images/p{i % 3}.png", "pad " * 300] for i in range(80)]
    rows[3] = ["fifo", "shoes", "Fifo", "images/pipe.jpg", ""]
    rows[70] = ["huge", "shoes", "Huge", "images/p0.png", "x" * 200_000]  # past the first batch: the old import stopped here
    rows[72] = ["nul\x00\x00", "shoes", "Nul", "images/p0.png", ""]
    rows[75] = ["latin", "shoes", "Caf\udce9", "images/p0.png", ""]  # a cp1252 byte, 100 KB into the file
    (folder / "items.csv").write_bytes(_csv(rows))
    cases.append(
        Case(
            "csv-fifo-huge-cell-nul-bad-bytes",
            folder / "items.csv",
            {r[0] for i, r in enumerate(rows) if i not in (3, 70, 72, 75)},
            [
                "is a FIFO, not a regular file",
                "a cell is longer than 131,072 characters",
                "contains a NUL byte",
                "the line is not valid UTF-8 text",
            ],
        )
    )
    rows = [["ok", "hat", "Ok", "", ""], ["nul\x00", "hat", "Nul", "", ""], ["big", "hat", "Big", "", "x" * 200_000]]
    rows += [["pad", "hat", "Pad", "", "pad " * 25_000], ["latin", "hat", "Caf\udce9", "", ""]]  # 100 KB in: past the UTF-8 check
    rows += [["local", "hat", "Local", "/etc/passwd", ""]]
    (dest / "upload-nul-huge-cell-bad-bytes.csv").write_bytes(_csv(rows, "id,category,name,image_url,description"))
    cases.append(
        Case(
            "upload-nul-huge-cell-bad-bytes",
            dest / "upload-nul-huge-cell-bad-bytes.csv",
            set(),  # a CSV upload's pictures are web addresses: none here
            ["contains a NUL byte", "a cell is longer than 131,072 characters", "the line is not valid UTF-8 text"],
            upload=True,
            bot_says=[
                "contains a NUL byte",
                "a cell is longer than 131,072 characters",
                "the line is not valid UTF-8 text",
                "is not a web address",
            ],
        )
    )
    return cases
