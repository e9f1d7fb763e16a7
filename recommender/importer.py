"""Import sources: a folder (sub-folder name = category), a CSV/Parquet manifest, or a ZIP of either.

Each source is a generator of `ImportRecord`s (streamed, never one big list). A row that cannot
become an item is yielded as a record with `error` set, so the summary can say why it failed.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BadManifest
from .store import ItemFields

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
KAGGLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")

ImageSource = Path | bytes | str | Callable[[], bytes]
"""A file path, the bytes themselves, an http(s) URL (fetched by the caller's fetcher), or a zero-arg reader."""


@dataclass(frozen=True)
class ImportRecord:
    item_id: str
    where: str  # "styles.csv line 12", for messages
    fields: ItemFields | None = None
    image: ImageSource | None = None
    error: str | None = None


@dataclass(frozen=True)
class Columns:
    """Manifest column names (configurable with --id-column, --category-column, ...)."""

    id: str = "id"
    path: str = "path"
    name: str = "name"
    category: str = "category"
    price: str = "price"
    url: str = "url"
    description: str = "description"
    image_url: str = "image_url"
    extra: tuple[str, ...] = field(default=())  # empty: every other column becomes an attribute

    def mapped(self) -> set[str]:
        return {self.id, self.path, self.name, self.category, self.price, self.url, self.description, self.image_url}


_UUIDISH = re.compile(r"^[0-9a-f]{8}(-?[0-9a-f]{4}){3}-?[0-9a-f]{12}$|^\d+$", re.I)


def _display_name(stem: str, category: str) -> str:
    if _UUIDISH.match(stem):
        return f"{category.replace('-', ' ').title()} {stem[:8]}"
    return re.sub(r"[_\s]+", " ", stem).strip()[:256]


def count_records(source: Path) -> int | None:
    """A cheap total for the progress bar (None when unknown)."""
    if source.is_dir():
        return sum(1 for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p, source))
    try:
        if source.suffix.lower() == ".csv":
            with open(source, newline="", encoding="utf-8-sig") as f:
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
        if source.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(source).metadata.num_rows
    except Exception:  # unreadable: the import itself reports why
        return None
    return None


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(root).parts)


def records_from_folder(root: Path) -> Iterator[ImportRecord]:
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file() or _hidden(p, root):
            continue
        rel = p.relative_to(root)
        item_id = rel.with_suffix("").as_posix()
        if len(rel.parts) < 2:
            yield ImportRecord(item_id, str(rel), error="images must sit in a sub-folder named after their category")
            continue
        if len(item_id) > 100:
            yield ImportRecord(item_id[:100], str(rel), error="the path is longer than 100 characters (it is the item's id)")
            continue
        category = rel.parts[0]
        yield ImportRecord(item_id, str(rel), ItemFields(item_id, _display_name(p.stem, category), category), p)


def _rows_csv(text_stream: io.TextIOBase) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(text_stream)
    if not reader.fieldnames:
        raise BadManifest("The CSV file is empty (no header row).")
    yield from reader


def _rows_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise BadManifest(f"{path.name} is not a readable Parquet file: {e}") from None
    for batch in pf.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _jsonable(v: Any) -> Any:
    """Attribute values are stored as JSON: dates, decimals and the like become text."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool)) else str(v)


def _cell(row: Mapping[str, Any], col: str) -> str | None:
    v = row.get(col)
    if v is None:
        return None
    v = str(v).strip()
    return v or None


def records_from_rows(
    rows: Iterator[dict[str, Any]],
    cols: Columns,
    label: str,
    resolve: Callable[[str | None, str], ImageSource | None],
) -> Iterator[ImportRecord]:
    """Rows (dicts) -> records. `resolve(path_cell, item_id)` finds the image."""
    first = True
    for line, row in enumerate(rows, start=2):
        if first:
            missing = [c for c in (cols.id, cols.category) if c not in row]
            if missing:
                raise BadManifest(
                    f"{label} has no column {' or '.join(repr(m) for m in missing)} "
                    f"(columns: {', '.join(list(row)[:20])}). Name yours with --id-column / --category-column."
                )
            first = False
        where = f"{label} line {line}"
        if None in row:  # csv.DictReader's restkey: more cells than header names
            yield ImportRecord(
                _cell(row, cols.id) or "",
                where,
                error=f"the row has {len(row) - 1 + len(row[None])} cells "
                f"but the header has {len(row) - 1}: quote values that contain commas",
            )
            continue
        item_id = _cell(row, cols.id)
        if not item_id:
            yield ImportRecord("", where, error="the id is empty")
            continue
        if len(item_id) > 100:
            yield ImportRecord(item_id[:100], where, error="the id is longer than 100 characters")
            continue
        category = _cell(row, cols.category)
        if not category:
            yield ImportRecord(item_id, where, error="the category is empty")
            continue
        price = None
        if raw := _cell(row, cols.price):
            try:
                price = float(raw.replace(",", "").lstrip("$€£"))
            except ValueError:
                price = math.nan
            if not math.isfinite(price) or price < 0:
                yield ImportRecord(item_id, where, error=f"price {raw!r} is not a number")
                continue
        extra = cols.extra or tuple(k for k in row if k not in cols.mapped())
        attrs = {k: _jsonable(row[k]) for k in extra if k and k.strip() and k in row and row[k] not in (None, "")}
        fields = ItemFields(
            item_id=item_id,
            name=(_cell(row, cols.name) or item_id)[:256],
            category=category[:100],
            price=price,
            url=_cell(row, cols.url),
            description=_cell(row, cols.description),
            attributes=attrs or None,
        )
        image = resolve(_cell(row, cols.path) or _cell(row, cols.image_url), item_id)
        if image is None:
            yield ImportRecord(item_id, where, error="no image found for this row (no path column and no images/<id>.jpg)")
            continue
        yield ImportRecord(item_id, where, fields, image)


def records_from_manifest(path: Path, cols: Columns = Columns()) -> Iterator[ImportRecord]:
    base = path.parent

    def resolve(cell: str | None, item_id: str) -> ImageSource | None:
        if cell:
            if cell.startswith(("http://", "https://")):
                return cell
            p = Path(cell)
            return p if p.is_absolute() else base / p
        for ext in KAGGLE_EXTENSIONS:  # the Kaggle layout: images/<id>.jpg beside styles.csv
            p = base / "images" / f"{item_id}{ext}"
            if p.exists():
                return p
        return None

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _rows_parquet(path)
    elif suffix in (".csv", ".txt"):
        f = open(path, newline="", encoding="utf-8-sig")
        rows = _rows_csv(f)
    else:
        raise BadManifest(f"{path.name}: a manifest must be .csv or .parquet.")
    try:
        yield from records_from_rows(rows, cols, path.name, resolve)
    except (csv.Error, UnicodeDecodeError) as e:
        raise BadManifest(f"{path.name} cannot be read as CSV: {e}") from None
    finally:
        if suffix != ".parquet":
            f.close()


MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def records_from_zip(data: bytes, cols: Columns = Columns(), max_member_bytes: int = 20 * 1024 * 1024) -> Iterator[ImportRecord]:
    """A ZIP holding a CSV manifest plus images (paths relative to the CSV), or category folders.
    Sizes are checked from the archive's directory before anything is inflated (no zip bombs)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BadManifest("That file is not a valid ZIP archive.") from None
    members = {PurePosixPath(i.filename): i for i in zf.infolist() if not i.is_dir() and "__MACOSX" not in i.filename}

    def reader(info: zipfile.ZipInfo) -> ImageSource:
        if info.file_size > max_member_bytes:
            return lambda: _too_big(info)
        return lambda: zf.read(info)

    csvs = [p for p in members if p.suffix.lower() == ".csv"]
    if csvs:
        manifest = min(csvs, key=lambda p: len(p.parts))
        if members[manifest].file_size > MAX_MANIFEST_BYTES:
            raise BadManifest(
                f"{manifest.name} is {members[manifest].file_size / 1e6:.0f} MB uncompressed; "
                f"a manifest may be at most {MAX_MANIFEST_BYTES // 1_000_000} MB."
            )
        text = zf.read(members[manifest]).decode("utf-8-sig", errors="replace")

        def resolve(cell: str | None, item_id: str) -> ImageSource | None:
            if cell and cell.startswith(("http://", "https://")):
                return cell
            candidates = (
                [manifest.parent / cell] if cell else [manifest.parent / "images" / f"{item_id}{e}" for e in KAGGLE_EXTENSIONS]
            )
            for c in candidates:
                if c in members:
                    return reader(members[c])
            return None

        try:
            yield from records_from_rows(_rows_csv(io.StringIO(text)), cols, manifest.name, resolve)
        except csv.Error as e:
            raise BadManifest(f"{manifest.name} cannot be read as CSV: {e}") from None
        return
    for p in sorted(members):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        item_id = p.with_suffix("").as_posix()
        if len(p.parts) < 2:
            yield ImportRecord(item_id, str(p), error="images must sit in a folder named after their category")
            continue
        category = p.parts[-2]
        yield ImportRecord(item_id, str(p), ItemFields(item_id, _display_name(p.stem, category), category), reader(members[p]))


def _too_big(info: zipfile.ZipInfo) -> bytes:
    from .errors import ImageTooLarge

    raise ImageTooLarge(f"{info.filename} is {info.file_size / 1e6:.0f} MB uncompressed; too large.")


def records_from_source(source: Path, cols: Columns = Columns()) -> Iterator[ImportRecord]:
    if not source.exists():
        raise BadManifest(f"{source} does not exist.")
    if source.is_dir():
        return records_from_folder(source)
    if source.suffix.lower() == ".zip":
        return records_from_zip(source.read_bytes(), cols)
    return records_from_manifest(source, cols)
