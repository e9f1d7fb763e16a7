"""Import sources: a folder (sub-folder name = category), a CSV/Parquet manifest, or a ZIP of either;
and the files a moderator uploads to the bot (`records_from_upload`).

Each source is a generator of `ImportRecord`s (streamed, never one big list). Everything in a source
is data from whoever made it: a row or a file that cannot become an item is yielded as a record with
`error` set, so it fails alone and the summary says why; only a source that cannot be read at all
raises BadManifest. Ids made from paths are normalised (names.py) and unique within the import; when
an id differs from its name, `ImportNotes` records why, for the summary.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .archives import Archive, ArchiveLimits
from .errors import BadImage, BadManifest
from .manifests import MAX_LINE_CHARS, Row, rows_csv, rows_parquet
from .names import UniqueIds, clean_path, fields_nul_problem, fit_id, manifest_id_problem, shown
from .offers import parse_price
from .records import ImageSource, ImportNotes, ImportRecord, ItemFields
from .trees import LocalFile, TreeFile, folder_files, visible_members, zip_categories, zip_files
from .urls import check_url, is_web_url  # noqa: F401  (check_url: the importers' link check)

KAGGLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # a CSV inside a ZIP

"""A file path, the bytes themselves, an http(s) URL (fetched by the caller's fetcher), or a zero-arg reader."""


@dataclass(frozen=True)
class ImportLimits:
    max_image_bytes: int = 20 * 1024 * 1024  # one file or archive member
    archive: ArchiveLimits = ArchiveLimits()

    @classmethod
    def for_images(cls, max_image_bytes: int, **archive: Any) -> ImportLimits:
        return cls(max_image_bytes, ArchiveLimits(max_member_bytes=max_image_bytes, **archive))


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


# -- folders and ZIPs of folders ----------------------------------------------------------------


def records_from_tree(files: Iterator[TreeFile], notes: ImportNotes | None = None) -> Iterator[ImportRecord]:
    """Tree files -> records: the id is the clean path without its extension (with it, when a sibling
    with the same stem sorts before it), cut to the id column with a hash; a second file with the same id is
    a conflict."""
    ids = UniqueIds()
    for f in files:
        parts = f.name.parts
        stem = parts[-1] if f.twin else PurePosixPath(parts[-1]).stem or parts[-1]
        item_id, cut = fit_id("/".join((*parts[:-1], stem)))
        if f.problem:
            yield ImportRecord(item_id, f.where, error=f.problem)
            continue
        if f.category is None:
            yield ImportRecord(item_id, f.where, error="images must sit in a sub-folder named after their category")
            continue
        if conflict := ids.conflict(item_id, f.where):
            yield ImportRecord(item_id, f.where, error=conflict)
            continue
        why = [
            *f.name.notes,
            *(["another file has the same name with another extension"] if f.twin else []),
            *([cut] if cut else []),
        ]
        if notes is not None and why:
            notes.rename(f.where, item_id, "; ".join(why))
        category = f.category[:100]
        fields = ItemFields(item_id, _display_name(PurePosixPath(parts[-1]).stem, category), category)
        yield ImportRecord(item_id, f.where, fields, f.read, former_id=fit_id("/".join(parts))[0] if f.has_twin else None)


def records_from_folder(
    root: Path, limits: ImportLimits = ImportLimits(), notes: ImportNotes | None = None
) -> Iterator[ImportRecord]:
    return records_from_tree(folder_files(root, limits.max_image_bytes), notes)


# -- manifests ----------------------------------------------------------------------------------


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


def _price(raw: str) -> float:
    """A price cell as the feeds read one ('12,50' is 12.5, '1.299,00' 1299), after a $, € or £; nan when it is none."""
    try:
        value = parse_price(raw.lstrip("$€£"))[0]
    except ValueError:
        try:
            return float(raw)  # 1e-05, as a Parquet float reads; nan and inf are refused by the caller
        except ValueError:
            return math.nan
    return math.nan if value is None else value


def records_from_rows(
    rows: Iterator[Row], cols: Columns, label: str, resolve: Callable[[str | None, str], ImageSource | None]
) -> Iterator[ImportRecord]:
    """Rows -> records. `resolve(path_cell, item_id)` finds the image. Each row fails alone."""
    first = True
    ids = UniqueIds()
    mapped = cols.mapped()
    for line, row in rows:
        where = f"{label} line {line}"
        if isinstance(row, str):
            yield ImportRecord("", where, error=row)
            continue
        if first:
            missing = [c for c in (cols.id, cols.category) if c not in row]
            if missing:
                raise BadManifest(
                    f"{label} has no column {' or '.join(repr(m) for m in missing)} "
                    f"(columns: {', '.join(shown(c, 40) for c in list(row)[:20])}). Name yours with --id-column / --category-column."
                )
            first = False
        item_id = _cell(row, cols.id)
        if not item_id:
            yield ImportRecord("", where, error="the id is empty")
            continue
        if problem := manifest_id_problem(item_id):
            yield ImportRecord(shown(item_id, 100), where, error=problem)
            continue
        category = _cell(row, cols.category)
        if not category:
            yield ImportRecord(item_id, where, error="the category is empty")
            continue
        price = None
        if raw := _cell(row, cols.price):
            price = _price(raw)
            if not math.isfinite(price) or price < 0:
                yield ImportRecord(item_id, where, error=f"price '{shown(raw, 40)}' is not a number")
                continue
        extra = cols.extra or tuple(k for k in row if k not in mapped)
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
        cell = _cell(row, cols.path) or _cell(row, cols.image_url)
        if problem := fields_nul_problem(fields, cell):
            yield ImportRecord(item_id, where, error=problem)
            continue
        if conflict := ids.conflict(item_id, where):
            yield ImportRecord(item_id, where, error=conflict)
            continue
        image = resolve(cell, item_id)
        if image is None:
            yield ImportRecord(item_id, where, error="no image found for this row (no path column and no images/<id>.jpg)")
            continue
        yield ImportRecord(item_id, where, fields, image)


def records_from_manifest(path: Path, cols: Columns = Columns(), limits: ImportLimits = ImportLimits()) -> Iterator[ImportRecord]:
    base = path.parent

    def resolve(cell: str | None, item_id: str) -> ImageSource | None:
        if cell:
            if is_web_url(cell):
                return cell
            p = Path(cell)
            return LocalFile(p if p.is_absolute() else base / p, limits.max_image_bytes)
        for ext in KAGGLE_EXTENSIONS:  # the Kaggle layout: images/<id>.jpg beside styles.csv
            p = base / "images" / f"{item_id}{ext}"
            if p.exists():
                return LocalFile(p, limits.max_image_bytes)
        return None

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from records_from_rows(rows_parquet(path), cols, path.name, resolve)
    elif suffix in (".csv", ".txt"):
        with open(path, "rb") as f:
            yield from records_from_rows(rows_csv(f, path.name), cols, path.name, resolve)
    else:
        raise BadManifest(f"{path.name}: a manifest must be .csv or .parquet.")


# -- ZIPs -----------------------------------------------------------------------------------------


def records_from_zip(
    archive: Archive | bytes, cols: Columns = Columns(), limits: ImportLimits = ImportLimits(), notes: ImportNotes | None = None
) -> Iterator[ImportRecord]:
    """A ZIP holding a CSV manifest plus images (paths relative to the CSV), or category folders. It is a
    manifest unless it holds two or more category folders of images and its shallowest CSV sits in one of
    them or lacks the id and category columns: such a stray CSV (a size chart, a zipped folder's labels.csv)
    leaves it folders. Members are inflated lazily, each through a counting reader within the archive's limits."""
    if isinstance(archive, (bytes, bytearray)):
        archive = Archive.from_bytes(bytes(archive), "That file", limits.archive)
    if archive.damage and notes is not None:
        notes.warnings.append(archive.damage)
    members = visible_members(archive)
    csvs = [(n, m) for n, m in members if n.parts[-1].lower().endswith(".csv")]
    if not csvs:
        yield from records_from_tree(zip_files(archive, members), notes)
        return
    name, manifest = min(csvs, key=lambda nm: len(nm[0].parts))
    label = shown(name.parts[-1], 80)
    try:
        text = archive.read(manifest, limit=MAX_MANIFEST_BYTES)
    except BadImage as e:
        raise BadManifest(f"The manifest {label} cannot be read: {e}") from None
    depth, categories = zip_categories(members)
    in_a_category = len(name.parts) > depth + 1  # shirt/sizes.csv beside shirt/*.jpg and pants/*.jpg
    if categories >= 2 and (in_a_category or not {cols.id, cols.category} <= _header(text)):
        yield from records_from_tree(zip_files(archive, members), notes)
        return
    by_path = {n.parts: m for n, m in members}
    folder = name.parts[:-1]

    def resolve(cell: str | None, item_id: str) -> ImageSource | None:
        if cell and is_web_url(cell):
            return cell
        wanted = (
            [clean_path("/".join((*folder, cell))).parts]
            if cell
            else [(*folder, "images", f"{item_id}{e}") for e in KAGGLE_EXTENSIONS]
        )
        for parts in wanted:
            if (m := by_path.get(parts)) is not None:
                return lambda m=m: archive.read(m)
        return None

    yield from records_from_rows(rows_csv(io.BytesIO(text), label), cols, label, resolve)


def _header(text: bytes) -> set[str]:
    """The cells of a CSV's first row (empty when it cannot be read as CSV)."""
    lines = io.StringIO(text[:MAX_LINE_CHARS].decode("utf-8-sig", "replace"), newline="")
    try:
        return set(next((cells for cells in csv.reader(lines) if cells), []))
    except csv.Error:
        return set()


# -- dispatch -------------------------------------------------------------------------------------


def records_from_source(
    source: Path, cols: Columns = Columns(), limits: ImportLimits = ImportLimits(), notes: ImportNotes | None = None
) -> Iterator[ImportRecord]:
    if not source.exists():
        raise BadManifest(f"{shown(str(source), 200)} does not exist.")
    if source.is_dir():
        return records_from_folder(source, limits, notes)
    if source.suffix.lower() == ".zip":
        return records_from_zip(Archive.from_path(source, limits.archive), cols, limits, notes)
    return records_from_manifest(source, cols, limits)


def check_upload_name(filename: str) -> str:
    """The upload's kind ('.csv' or '.zip') from its name, or BadManifest in words."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix not in (".csv", ".zip"):
        raise BadManifest("Upload a .csv file (with image URLs) or a .zip file (images plus a CSV, or one folder per category).")
    return suffix


def records_from_upload(
    data: bytes, filename: str, limits: ImportLimits = ImportLimits(), notes: ImportNotes | None = None, cols: Columns = Columns()
) -> Iterator[ImportRecord]:
    """A file a moderator uploads: a .csv whose pictures are http(s) URLs, or a .zip (images plus a
    CSV, or one folder per category)."""
    label = shown(filename, 80)
    if check_upload_name(filename) == ".zip":
        return records_from_zip(Archive.from_bytes(data, label, limits.archive), cols, limits, notes)

    def resolve(cell: str | None, item_id: str) -> ImageSource | None:
        if cell and is_web_url(cell):
            return cell
        if cell:
            return _refuse(f"'{shown(cell, 80)}' is not a web address; upload a ZIP to send image files with the CSV")
        return None

    return records_from_rows(rows_csv(io.BytesIO(data), label), cols, label, resolve)


def _refuse(reason: str) -> Callable[[], bytes]:
    def refuse() -> bytes:
        raise BadImage(reason)

    return refuse


def count_records(source: Path) -> int | None:
    """A cheap total for the progress bar (None when unknown)."""
    try:
        if source.is_dir():
            return sum(1 for _ in folder_files(source, 0))
        if source.suffix.lower() == ".csv":  # rows, not lines: a quoted cell may span lines, blank lines are no rows
            with open(source, "rb") as f:
                return sum(1 for _ in rows_csv(f, source.name))
        if source.suffix.lower() == ".zip":  # reads the directory and a manifest, never an image
            return sum(1 for _ in records_from_zip(Archive.from_path(source)))
        if source.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(source).metadata.num_rows
    except Exception:  # unreadable: the import itself reports why
        return None
    return None
