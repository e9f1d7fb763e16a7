"""Manifest rows, read as untrusted text: a CSV streamed line by line (no line held past
MAX_LINE_CHARS, a cell past csv's 131,072-character limit or bytes that are not UTF-8 fail their own
row), or a Parquet file in batches. Each row comes with its line number, as the row's cells by
column or as the sentence saying why that line cannot be used.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import BadManifest

MAX_LINE_CHARS = 1 << 20  # a manifest line longer than this fails its row (csv's own limit is 131,072 per cell)
MAX_COLUMNS = 2000  # a header wider than this is refused: each row is padded to the header's width

Row = tuple[int, "dict[str, Any] | str"]  # (line, the row's cells by column, or why the line is unusable)


class Lines:
    """A text stream's lines for csv.reader, none longer than `limit`: a longer line is read past
    (never held whole) and handed on as a blank line whose number is kept in `too_long`."""

    def __init__(self, f: io.TextIOBase, limit: int) -> None:
        self.f, self.limit, self.number = f, limit, 0
        self.too_long: set[int] = set()

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.limit)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) >= self.limit and not line.endswith(("\n", "\r")):
            while (more := self.f.readline(self.limit)) and not more.endswith(("\n", "\r")):
                pass
            self.too_long.add(self.number)
            return "\n"
        return line


def text_stream(binary: BinaryIO, label: str) -> io.TextIOWrapper:
    """The stream as text: its beginning must be UTF-8 (else it is refused whole, as a file in another
    encoding); bytes that are not UTF-8 further down only fail their own row."""
    head = binary.read(1 << 16)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 1 << 16)
    except UnicodeDecodeError:
        raise BadManifest(f"{label} cannot be read as CSV: it is not UTF-8 text; save it as UTF-8 and try again.") from None
    binary.seek(0)
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def rows_csv(binary: BinaryIO, label: str, delimiter: str = ",") -> Iterator[Row]:
    lines = Lines(text_stream(binary, label), MAX_LINE_CHARS)
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if header is None:
                raise BadManifest(f"{label} cannot be read as CSV: {e}") from None
            too_big = "field larger than field limit" in str(e)
            yield (
                reader.line_num,
                (
                    f"a cell is longer than {csv.field_size_limit():,} characters"
                    if too_big
                    else f"the line cannot be read as CSV: {e}"
                ),
            )
            continue
        if not cells:
            if reader.line_num in lines.too_long:
                if header is None:
                    raise BadManifest(f"{label}'s header row is longer than {MAX_LINE_CHARS:,} characters.")
                yield reader.line_num, f"the line is longer than {MAX_LINE_CHARS:,} characters"
            continue
        if header is None:
            if len(cells) > MAX_COLUMNS:
                raise BadManifest(f"{label}'s header has {len(cells):,} columns; at most {MAX_COLUMNS:,} are read.")
            header = cells
            at: dict[str, list[int]] = {}  # name -> its columns (the feeds read names without their spaces)
            for i, c in enumerate(cells, 1):
                at.setdefault(c.strip(), []).append(i)
            if twice := next(((c, cols) for c, cols in at.items() if c and len(cols) > 1), None):
                c, at_c = twice
                raise BadManifest(
                    f"{label}'s header names {len(at_c)} columns {c!r} (columns {', '.join(map(str, at_c))}): rename all but "
                    "one, so that it is clear which to read."
                )
            continue
        if any("\udc80" <= c <= "\udcff" for cell in cells for c in cell):
            yield reader.line_num, "the line is not valid UTF-8 text"
        elif len(cells) > len(header):
            yield (
                reader.line_num,
                (f"the row has {len(cells)} cells but the header has {len(header)}: quote values that contain commas"),
            )
        else:
            yield reader.line_num, dict(zip(header, cells + [""] * (len(header) - len(cells))))
    if header is None:
        raise BadManifest(f"{label} is empty (no header row).")


def rows_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise BadManifest(f"{path.name} is not a readable Parquet file: {e}") from None
    line = 1
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            line += 1
            yield line, row
