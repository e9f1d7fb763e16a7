"""Names as data: file names, archive member names and manifest ids, made into item ids and into text
that is safe to show.

A name comes from whoever made the folder, the archive or the manifest. It may not be valid UTF-8
(a str from the file system then holds surrogate escapes), may climb out of its folder (`../`),
may hold control characters, NUL bytes or terminal escape sequences. Nothing here raises on such
a name: `shown` gives a readable escaped form, `path_id` a normalised item id plus the reasons it
differs from the name, and `UniqueIds` turns a second use of an id into a reported conflict.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import ItemFields

MAX_ID = 100
"""Longest item id (the column's width)."""

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _lenient(text: str) -> str:
    """Surrogate escapes (bytes that were not UTF-8) as \\xNN, other lone surrogates as \\uNNNN."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":  # os.fsdecode / surrogateescape: the byte 0x80-0xff
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif "\ud800" <= c <= "\udfff":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def shown(text: str, limit: int | None = None) -> str:
    """`text` as one line that is safe to print on a terminal or in a log: bytes that were not UTF-8
    become \\xNN, control and format characters (newlines, ESC, NUL, bidi overrides) \\n, \\x1b, \\u202e.
    Printable text, spaces included, is left alone. Cut to `limit` characters (with …) if given."""
    text = _lenient(str(text))
    if not text.isprintable():
        text = "".join(
            c
            if c.isprintable() or c == " "
            else _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
            for c in text
        )
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def is_clean(text: str) -> bool:
    """True when `text` has no control/format characters and no undecodable bytes (safe as an id)."""
    return text.isprintable() and not any("\ud800" <= c <= "\udfff" for c in text)


def _percent_escape(text: str) -> str:
    """Undecodable bytes (surrogate escapes) as %XX, other lone surrogates as %uXXXX: readable and unique."""
    return "".join(
        f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else f"%u{ord(c):04X}" if "\ud800" <= c <= "\udfff" else c
        for c in text
    )


_DRIVE = re.compile(r"^[A-Za-z]:$")


@dataclass(frozen=True)
class PathName:
    """An archive member or file name made safe: its clean parts and why they differ from the name."""

    parts: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "/".join(self.parts)


def clean_path(name: str) -> PathName:
    """Split a relative path from a folder or an archive into clean parts: backslashes are separators,
    a drive letter, a leading '/', '.' and '..' are dropped, bytes that are not UTF-8 become %XX,
    control characters become '_'. The notes say which of these happened (empty: nothing changed)."""
    notes: list[str] = []
    if any("\ud800" <= c <= "\udfff" for c in name):
        notes.append("the name is not valid UTF-8")
        name = _percent_escape(name)
    if "\\" in name:
        notes.append("backslashes became '/'")
        name = name.replace("\\", "/")
    raw = name.split("/")
    if raw and _DRIVE.match(raw[0]):
        notes.append("the drive letter was dropped")
        raw = raw[1:]
    if name.startswith("/"):
        notes.append("the leading '/' was dropped")
    if ".." in raw:
        notes.append("'..' was dropped")
    parts = []
    controls = False
    for part in raw:
        if part in ("", ".", ".."):
            continue
        part = unicodedata.normalize("NFC", part)
        if not part.isprintable():
            controls = True
            part = "".join(c if c.isprintable() or c == " " else "_" for c in part)
        parts.append(part)
    if controls:
        notes.append("control characters became '_'")
    return PathName(tuple(parts), tuple(notes))


def fit_id(item_id: str, limit: int = MAX_ID) -> tuple[str, str | None]:
    """`item_id` cut to `limit` characters with a short hash of the whole, so that two long ids that
    share a beginning stay apart. Returns (id, note) where note says it was shortened (or None)."""
    if len(item_id) <= limit:
        return item_id, None
    digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{item_id[: limit - 9].rstrip()}~{digest}", f"shortened to {limit} characters"


def manifest_id_problem(item_id: str) -> str | None:
    """Why a manifest's id cannot be used as it is (None: it can). Manifest ids are the operator's
    own: they are refused, never silently changed."""
    if "\0" in item_id:
        return f"the id '{shown(item_id, 60)}' contains a NUL byte"
    if not is_clean(item_id):
        return f"the id '{shown(item_id, 60)}' contains control characters or bytes that are not UTF-8"
    if len(item_id) > MAX_ID:
        return f"the id is longer than {MAX_ID} characters"
    return None


def fields_nul_problem(fields: ItemFields, image: str | None) -> str | None:
    """Which of what an import stores of an item (and its image's path or address) holds a NUL byte, in the
    words used for ids (None: none does). PostgreSQL refuses NUL in text and SQLite stores it: a row with one
    fails alone, on every database. Attribute values that are lists or dicts are searched too."""
    attrs = fields.attributes or {}
    cells = {"name": fields.name, "category": fields.category, "url": fields.url, "description": fields.description,
             "image link": image, "column name": list(attrs), **{f"'{shown(k, 40)}' value": v for k, v in attrs.items()}}  # fmt: skip
    for what, value in cells.items():
        for text in _texts(value):
            if "\0" in text:
                return f"the {what} '{shown(text, 60)}' contains a NUL byte"
    return None


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _texts(k)
            yield from _texts(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _texts(v)


class UniqueIds:
    """Ids given out by one import: a second record with the same id is a conflict, reported, never a
    silent overwrite of the first."""

    def __init__(self) -> None:
        self._where: dict[str, str] = {}

    def conflict(self, item_id: str, where: str) -> str | None:
        """None and claims the id if it is new; else the reason this record fails (a ZIP's directory may
        name one file twice: the same place is a second record too)."""
        first = self._where.get(item_id)
        if first is None:
            self._where[item_id] = where
            return None
        other = "another entry named " if first == where else ""
        return f"the id '{shown(item_id, 60)}' is already used by {other}{shown(first, 80)} in this import"
