"""Import sources: folders, CSV (any column names), the Kaggle styles.csv layout, Parquet and ZIPs,
built in tmp_path from the real demo photos and fashion-products rows. The tests that import into a
catalogue run on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.errors import BadImage, BadManifest, ImageTooLarge
from recommender.images import decode_image, read_source
from recommender.importer import (
    Columns,
    ImportLimits,
    count_records,
    records_from_folder,
    records_from_manifest,
    records_from_source,
    records_from_zip,
)

from helpers import demo_photos, needs_fashion, open_rec, styles_rows, write_kaggle_subset


def image_bytes(rec) -> bytes:
    """Read a record's image the way the engine does (path, or a zero-arg reader)."""
    src = rec.image
    return src() if callable(src) else read_source(src)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_folder_subfolders_are_categories(tmp_path: Path) -> None:
    hat, dress = demo_photos("hat"), demo_photos("dress")
    (tmp_path / "dress").mkdir()
    (tmp_path / "hat" / "winter").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    shutil.copyfile(dress[0], tmp_path / "dress" / dress[0].name)  # a uuid file name
    shutil.copyfile(dress[1], tmp_path / "dress" / "blue_summer  dress.JPG")
    shutil.copyfile(hat[0], tmp_path / "hat" / "winter" / "wool.jpg")
    shutil.copyfile(hat[1], tmp_path / "loose.jpg")  # no category
    shutil.copyfile(hat[2], tmp_path / ".cache" / "thumb.jpg")  # hidden
    (tmp_path / "dress" / "notes.txt").write_text("not a picture")

    recs = list(records_from_folder(tmp_path))
    good = {r.item_id: r for r in recs if r.error is None}
    bad = [r for r in recs if r.error]
    assert set(good) == {f"dress/{dress[0].stem}", "dress/blue_summer  dress", "hat/winter/wool"}
    assert good[f"dress/{dress[0].stem}"].fields.name == f"Dress {dress[0].stem[:8]}"
    assert good["dress/blue_summer  dress"].fields.name == "blue summer dress"
    assert good["hat/winter/wool"].fields.category == "hat"  # the top folder
    assert all(r.fields.item_id == r.item_id for r in good.values())
    assert image_bytes(good["hat/winter/wool"]) == hat[0].read_bytes()
    [loose] = bad
    assert loose.item_id == "loose" and "sub-folder named after their category" in loose.error
    assert count_records(tmp_path) == 4  # three items and the loose photo; hidden and text files not counted
    assert [r.item_id for r in records_from_source(tmp_path)] == [r.item_id for r in recs]


def test_csv_with_its_own_column_names(tmp_path: Path) -> None:
    photos = demo_photos("shoes")[:3]
    (tmp_path / "pics").mkdir()
    for p in photos:
        shutil.copyfile(p, tmp_path / "pics" / p.name)
    manifest = write_csv(
        tmp_path / "shop.csv",
        ["sku", "picture", "title", "kind", "cost", "link", "colour", "size"],
        [
            ["S-1", f"pics/{photos[0].name}", "Runner", "Shoes", "$1,299.50", "https://shop.example/s1", "red", "42"],
            ["S-2", str(tmp_path / "pics" / photos[1].name), "Walker", "Shoes", "", "", "blue", ""],
            ["S-3", "https://cdn.example/s3.jpg", "", "Shoes", "19", "", "", ""],
        ],
    )
    cols = Columns(id="sku", path="picture", name="title", category="kind", price="cost", url="link")
    recs = list(records_from_manifest(manifest, cols))
    assert [r.error for r in recs] == [None, None, None]
    s1, s2, s3 = recs
    assert (s1.fields.item_id, s1.fields.name, s1.fields.category, s1.fields.price, s1.fields.url) == (
        "S-1",
        "Runner",
        "Shoes",
        1299.5,
        "https://shop.example/s1",
    )
    assert s1.fields.attributes == {"colour": "red", "size": "42"}  # every other column, empty cells left out
    assert s1.image.path == tmp_path / "pics" / photos[0].name and image_bytes(s1) == photos[0].read_bytes()
    assert s2.image.path == tmp_path / "pics" / photos[1].name and s2.fields.price is None
    assert s2.fields.attributes == {"colour": "blue"}
    assert s3.image == "https://cdn.example/s3.jpg" and s3.fields.name == "S-3" and s3.fields.attributes is None
    assert s1.where == "shop.csv line 2" and s3.where == "shop.csv line 4"
    assert count_records(manifest) == 3
    spread = tmp_path / "spread.csv"  # a description over three lines and a blank line: still three rows
    spread.write_text('id,category,description\n1,hat,"warm\nand\nsoft"\n\n2,hat,plain\n3,shoes,\n')
    assert count_records(spread) == len(list(records_from_manifest(spread))) == 3
    only = Columns(id="sku", path="picture", category="kind", extra=("size",))
    assert next(iter(records_from_manifest(manifest, only))).fields.attributes == {"size": "42"}


def test_bad_rows_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    p = demo_photos("hat")[0]
    shutil.copyfile(p, tmp_path / "hat.jpg")
    manifest = write_csv(
        tmp_path / "items.csv",
        ["id", "category", "price", "path"],
        [
            ["a1", "hat", "10", "hat.jpg"],
            ["", "hat", "5", "hat.jpg"],
            ["a3", "  ", "5", "hat.jpg"],
            ["a4", "hat", "cheap", "hat.jpg"],
            ["a5", "hat", "€ 12", "hat.jpg"],
            ["a6", "hat", "", ""],
            ["a7", "hat", "£7", "hat.jpg"],
        ],
    )
    recs = list(records_from_manifest(manifest))
    assert [(r.item_id, r.where, r.error) for r in recs if r.error] == [
        ("", "items.csv line 3", "the id is empty"),
        ("a3", "items.csv line 4", "the category is empty"),
        ("a4", "items.csv line 5", "price 'cheap' is not a number"),
        ("a6", "items.csv line 7", "no image found for this row (no path column and no images/<id>.jpg)"),
    ]
    assert [(r.item_id, r.fields.price) for r in recs if not r.error] == [("a1", 10.0), ("a5", 12.0), ("a7", 7.0)]


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "export.csv", ["sku", "type", "path"], [["1", "hat", "x.jpg"]])
    with pytest.raises(BadManifest) as e:
        list(records_from_manifest(manifest))
    msg = str(e.value)
    assert "export.csv has no column 'id' or 'category'" in msg
    assert "columns: sku, type, path" in msg and "--id-column" in msg
    with pytest.raises(BadManifest, match=r"no column 'category' \(columns: sku, type, path\)"):
        list(records_from_manifest(manifest, Columns(id="sku")))
    assert [r.fields.category for r in records_from_manifest(manifest, Columns(id="sku", category="type"))] == ["hat"]


def test_unreadable_manifests(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadManifest, match="empty"):
        list(records_from_manifest(tmp_path / "empty.csv"))
    (tmp_path / "items.json").write_text("{}")
    with pytest.raises(BadManifest, match="must be .csv or .parquet"):
        list(records_from_source(tmp_path / "items.json"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BadManifest, match="not a readable Parquet file"):
        list(records_from_manifest(tmp_path / "bad.parquet"))
    with pytest.raises(BadManifest, match="does not exist"):
        records_from_source(tmp_path / "nowhere.csv")
    (tmp_path / "twice.csv").write_text("id,category,name, category\n1,hat,Red cap,shoes\n")  # not the last one, silently
    with pytest.raises(BadManifest, match=r"twice.csv's header names 2 columns 'category' \(columns 2, 4\)"):
        list(records_from_manifest(tmp_path / "twice.csv"))
    wide = ",".join(["id", "category"] + [f"c{i}" for i in range(1997)] + ["c7"])  # as wide as a header may be
    (tmp_path / "wide.csv").write_text(wide + "\n1,hat\n")
    with pytest.raises(BadManifest, match=r"names 2 columns 'c7' \(columns 10, 2000\)"):
        list(records_from_manifest(tmp_path / "wide.csv"))
    wider = ",".join(["id", "category"] + [f"c{i}" for i in range(120_000)])  # a header of about 1 MiB
    (tmp_path / "wider.csv").write_text(wider + "\n1,hat\n")  # each row was padded to 120,002 cells
    with pytest.raises(BadManifest, match="header has 120,002 columns; at most 2,000 are read"):
        list(records_from_manifest(tmp_path / "wider.csv"))
    (tmp_path / "blank.csv").write_text("id,category,,\n1,hat,,\n")  # unnamed columns are no ambiguity
    assert [r.item_id for r in records_from_manifest(tmp_path / "blank.csv")] == ["1"]
    (tmp_path / "latin1.csv").write_bytes("id,category\n1,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadManifest, match="cannot be read as CSV"):
        list(records_from_manifest(tmp_path / "latin1.csv"))


@needs_fashion
def test_kaggle_layout_finds_images_beside_the_csv(tmp_path: Path) -> None:
    rows = styles_rows(["Shirts", "Jeans", "Watches"], 4)
    manifest = write_kaggle_subset(tmp_path, rows)
    with open(manifest, "a", encoding="utf-8") as f:
        f.write("99999999,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,A shirt with no photo\n")
    cols = Columns(category="articleType", name="productDisplayName")
    recs = list(records_from_source(manifest, cols))
    good = [r for r in recs if r.error is None]
    assert [r.item_id for r in good] == [row["id"] for row in rows]
    first = good[0]
    assert first.image.path == tmp_path / "images" / f"{rows[0]['id']}.jpg"
    assert (first.fields.category, first.fields.name) == (rows[0]["articleType"], rows[0]["productDisplayName"])
    assert first.fields.attributes["baseColour"] == rows[0]["baseColour"]
    assert set(first.fields.attributes) <= {"gender", "masterCategory", "subCategory", "baseColour", "season", "year", "usage"}
    assert decode_image(image_bytes(first)).size == (60, 80)
    [missing] = [r for r in recs if r.error]
    assert missing.item_id == "99999999" and missing.where == f"styles.csv line {len(rows) + 2}"
    assert "no image found" in missing.error
    assert count_records(manifest) == len(rows) + 1


def test_parquet_manifest(tmp_path: Path) -> None:
    photos = demo_photos("skirt")[:4]
    for p in photos:
        shutil.copyfile(p, tmp_path / p.name)
    table = pa.table(
        {
            "sku": pa.array([101, 102, 103, 104], pa.int64()),
            "file": [p.name for p in photos],
            "title": ["A", "B", None, "D"],
            "section": ["skirt", "skirt", "skirt", None],
            "cost": pa.array([9.5, None, 30.0, 1.0]),
            "season": ["summer", None, "winter", "fall"],
        }
    )
    pq.write_table(table, tmp_path / "catalogue.parquet")
    cols = Columns(id="sku", path="file", name="title", category="section", price="cost")
    recs = list(records_from_source(tmp_path / "catalogue.parquet", cols))
    good = [r for r in recs if r.error is None]
    assert [(r.item_id, r.fields.name, r.fields.price) for r in good] == [
        ("101", "A", 9.5),
        ("102", "B", None),
        ("103", "103", 30.0),
    ]
    assert good[0].fields.attributes == {"season": "summer"} and good[1].fields.attributes is None
    assert image_bytes(good[2]) == photos[2].read_bytes()
    assert [(r.item_id, r.error) for r in recs if r.error] == [("104", "the category is empty")]
    assert count_records(tmp_path / "catalogue.parquet") == 4


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_two_zip_members_of_one_name_are_a_conflict_not_an_overwrite() -> None:
    """A ZIP's directory may name a file twice; the second became an update of the first, in silence."""
    import warnings
    import zipfile

    hats = demo_photos("hat")[:2]
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as z:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name, and writes it
        for p in hats:
            z.writestr("hat/a.jpg", p.read_bytes())
    recs = list(records_from_zip(out.getvalue()))
    assert [(r.item_id, r.error) for r in recs] == [
        ("hat/a", None),
        ("hat/a", "the id 'hat/a' is already used by another entry named hat/a.jpg in this import"),
    ]
    assert image_bytes(recs[0]) == hats[0].read_bytes()


def test_zip_with_a_csv_manifest(tmp_path: Path) -> None:
    photos = demo_photos("pants")[:3]
    manifest = (
        "id,category,name,path\np1,pants,Chinos,photos/a.jpg\np2,pants,Jeans,./photos/b.jpg\np3,pants,Gone,photos/none.jpg\n"
    )
    data = zip_of(
        {
            "shop/catalog.csv": manifest.encode(),
            "shop/photos/a.jpg": photos[0].read_bytes(),
            "shop/photos/b.jpg": photos[1].read_bytes(),
            "shop/extra/other.csv": b"id,category\n",  # deeper: not the manifest
            "__MACOSX/shop/._catalog.csv": b"junk",
        }
    )
    recs = list(records_from_zip(data))
    assert [(r.item_id, r.error) for r in recs] == [
        ("p1", None),
        ("p2", None),
        ("p3", "no image found for this row (no path column and no images/<id>.jpg)"),
    ]
    assert image_bytes(recs[0]) == photos[0].read_bytes() and image_bytes(recs[1]) == photos[1].read_bytes()
    assert recs[0].where == "catalog.csv line 2" and recs[1].fields.name == "Jeans"

    kaggle = zip_of({"styles.csv": b"id,category\n7,pants\n", "images/7.jpg": photos[2].read_bytes()})
    [r] = list(records_from_zip(kaggle))
    assert r.error is None and image_bytes(r) == photos[2].read_bytes()


def test_zip_with_category_folders(tmp_path: Path) -> None:
    hat, shoes = demo_photos("hat")[0], demo_photos("shoes")[0]
    data = zip_of(
        {
            "export/hat/h1.jpg": hat.read_bytes(),
            "export/shoes/s1.JPEG": shoes.read_bytes(),
            "export/readme.txt": b"hello",
            "__MACOSX/export/hat/._h1.jpg": b"junk",
        }
    )
    recs = list(records_from_zip(data))
    # a zipped folder: the lone wrapper folder is the root, its sub-folders the categories (as for a folder)
    assert [(r.item_id, r.fields.category if r.fields else None) for r in recs] == [
        ("export/hat/h1", "hat"),
        ("export/shoes/s1", "shoes"),
    ]
    assert image_bytes(recs[0]) == hat.read_bytes()
    loose = list(records_from_zip(zip_of({"hat/h1.jpg": hat.read_bytes(), "loose.png": hat.read_bytes()})))
    assert [(r.item_id, r.error) for r in loose] == [
        ("hat/h1", None),
        ("loose", "images must sit in a sub-folder named after their category"),
    ]

    small = list(records_from_zip(data, limits=ImportLimits.for_images(1000)))
    with pytest.raises(ImageTooLarge, match="too large"):
        small[0].image()
    with pytest.raises(BadManifest, match="not a valid ZIP"):
        list(records_from_zip(b"PK\x03\x04 but not really a zip"))


def test_folder_and_zip_agree_on_categories(tmp_path: Path) -> None:
    """README: "sub-folder name = category". The first folder under the root names it, however deep;
    a lone wrapper folder without images of its own (what zipping a folder makes) is not a category."""
    photos = demo_photos("hat")[:3]
    layout = {"shop/hat/winter/h1.jpg": photos[0], "shop/hat/h2.jpg": photos[1], "shop/shoes/s1.jpg": photos[2]}
    for name, p in layout.items():
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, tmp_path / "tree" / name)
    zipped = zip_of({name: p.read_bytes() for name, p in layout.items()})
    expected = [("shop/hat/h2", "hat"), ("shop/hat/winter/h1", "hat"), ("shop/shoes/s1", "shoes")]
    for recs in (list(records_from_folder(tmp_path / "tree")), list(records_from_zip(zipped))):
        assert sorted((r.item_id, r.fields.category) for r in recs) == expected
    # without the wrapper, both name the category by the top folder
    unwrapped = list(records_from_folder(tmp_path / "tree" / "shop"))
    assert sorted((r.item_id, r.fields.category) for r in unwrapped) == [
        ("hat/h2", "hat"),
        ("hat/winter/h1", "hat"),
        ("shoes/s1", "shoes"),
    ]
    zipped_flat = zip_of({name.removeprefix("shop/"): p.read_bytes() for name, p in layout.items()})
    assert sorted((r.item_id, r.fields.category) for r in records_from_zip(zipped_flat)) == sorted(
        (r.item_id, r.fields.category) for r in unwrapped
    )


async def test_a_zip_imports_end_to_end_and_again_unchanged(tmp_path: Path, db: str) -> None:
    photos = {c: demo_photos(c)[:3] for c in ("hat", "shoes")}
    files = {f"{c}/{p.name}": p.read_bytes() for c, ps in photos.items() for p in ps}
    files["hat/broken.jpg"] = photos["hat"][0].read_bytes()[:500]
    (tmp_path / "catalogue.zip").write_bytes(zip_of(files))
    assert count_records(tmp_path / "catalogue.zip") == 7  # for the progress bar: the directory, no image read
    rec = await open_rec(db)  # a SQLite file, then a PostgreSQL database
    try:
        seen: list[int] = []
        summary = await rec.import_items(
            records_from_source(tmp_path / "catalogue.zip"),
            guild_id=5,
            actor="test",
            batch=3,
            progress=lambda done, total, s: seen.append(done),
        )
        assert (summary.added, summary.updated, summary.unchanged) == (6, 0, 0)
        assert [(i, w, "truncated" in r) for i, w, r in summary.failed] == [("hat/broken", "hat/broken.jpg", True)]
        assert seen == [3, 6, 7]
        assert await rec.store.category_counts(5) == {"hat": 3, "shoes": 3}
        again = await rec.import_items(records_from_source(tmp_path / "catalogue.zip"), guild_id=5, actor="test")
        assert (again.added, again.updated, again.unchanged, len(again.failed)) == (0, 0, 6, 1)
        res = await rec.similar(photos["shoes"][1].read_bytes(), guild_id=5, k=5, predict=False)
        assert res.catalogue_id == 5 and len(res.matches) == 5
        assert [e["detail"] for e in await rec.store.audit_entries(5)][0] == {
            "added": 0,
            "updated": 0,
            "unchanged": 6,
            "failed": 1,
        }
    finally:
        await rec.close()


async def test_a_changed_manifest_row_updates_only_that_item(tmp_path: Path, db: str) -> None:
    photos = demo_photos("dress")[:3]
    for p in photos:
        shutil.copyfile(p, tmp_path / p.name)
    rows = [[f"d{i}", "dress", f"Dress {i}", str(10 * i), p.name] for i, p in enumerate(photos)]
    write_csv(tmp_path / "m.csv", ["id", "category", "name", "price", "path"], rows)
    rec = await open_rec(db)  # a SQLite file, then a PostgreSQL database
    try:
        first = await rec.import_items(records_from_source(tmp_path / "m.csv"), guild_id=0, actor="t")
        assert first.added == 3
        await rec.similar(item_id="d0", k=2, predict=False)  # index loaded
        rows[1][3] = "99"  # a new price
        shutil.copyfile(demo_photos("dress")[5], tmp_path / photos[2].name)  # a new picture for d2
        write_csv(tmp_path / "m.csv", ["id", "category", "name", "price", "path"], rows)
        second = await rec.import_items(records_from_source(tmp_path / "m.csv"), guild_id=0, actor="t")
        assert (second.added, second.updated, second.unchanged) == (0, 2, 1)
        res = await rec.similar(item_id="d0", k=5, min_price=50, predict=False)
        assert [m.item.item_id for m in res.matches] == ["d1"]  # the loaded index saw the new price
        assert (await rec.get_item("d2", guild_id=0)).content_hash != (await rec.get_item("d0", guild_id=0)).content_hash
    finally:
        await rec.close()


@needs_fashion
async def test_a_row_with_extra_cells_does_not_stop_the_import(tmp_path: Path, db: str) -> None:
    rows = styles_rows(["Shirts"], 3)
    manifest = write_kaggle_subset(tmp_path, rows)
    text = manifest.read_text(encoding="utf-8").splitlines()
    r = rows[1]  # written as the Kaggle original does: the comma in the name not quoted
    text[2] = ",".join([r[k] for k in list(r)[:-1]] + [r["productDisplayName"].replace(" ", ", ", 1)])
    manifest.write_text("\n".join(text) + "\n", encoding="utf-8")
    rec = await open_rec(db)  # a SQLite file, then a PostgreSQL database
    try:
        summary = await rec.import_items(
            records_from_source(manifest, Columns(category="articleType", name="productDisplayName")),
            guild_id=0,
            actor="t",
        )
        assert summary.added + len(summary.failed) == 3 and summary.added >= 2
        assert all(w == "styles.csv line 3" for _, w, _ in summary.failed)
    finally:
        await rec.close()


async def test_a_parquet_manifest_with_a_date_column_imports(tmp_path: Path, db: str) -> None:
    import datetime

    photos = demo_photos("hat")[:2]
    for p in photos:
        shutil.copyfile(p, tmp_path / p.name)
    pq.write_table(
        pa.table(
            {
                "id": ["h1", "h2"],
                "category": ["hat", "hat"],
                "path": [p.name for p in photos],
                "released": [datetime.date(2024, 3, 1), datetime.date(2024, 9, 1)],
            }
        ),
        tmp_path / "hats.parquet",
    )
    rec = await open_rec(db)  # a SQLite file, then a PostgreSQL database
    try:
        summary = await rec.import_items(records_from_source(tmp_path / "hats.parquet"), guild_id=0, actor="t")
        assert summary.added == 2
        assert (await rec.get_item("h1", guild_id=0)).attributes == {"released": "2024-03-01"}
    finally:
        await rec.close()


async def test_reimporting_a_row_with_price_nan_is_unchanged(tmp_path: Path, db: str) -> None:
    photo = demo_photos("hat")[0]
    shutil.copyfile(photo, tmp_path / "h.jpg")
    write_csv(tmp_path / "m.csv", ["id", "category", "price", "path"], [["h1", "hat", "nan", "h.jpg"]])
    rec = await open_rec(db)  # a SQLite file, then a PostgreSQL database
    try:
        first = await rec.import_items(records_from_source(tmp_path / "m.csv"), guild_id=0, actor="t")
        again = await rec.import_items(records_from_source(tmp_path / "m.csv"), guild_id=0, actor="t")
        assert first.added + len(first.failed) == 1
        assert (again.updated, again.unchanged + len(again.failed)) == (0, 1)
    finally:
        await rec.close()


def test_an_id_longer_than_the_column_is_refused_not_cut(tmp_path: Path) -> None:
    long_id = "x" * 101
    write_csv(tmp_path / "m.csv", ["id", "category", "path"], [[long_id, "hat", "h.jpg"]])
    [record] = list(records_from_manifest(tmp_path / "m.csv"))
    assert record.error == "the id is longer than 100 characters"


def test_a_nul_byte_in_any_cell_fails_its_row_alone(tmp_path: Path) -> None:
    """PostgreSQL refuses NUL in text (the whole batch failed there) and SQLite stores it: the row fails on
    every database, in the words used for ids, and the others import."""
    photo = demo_photos("hat")[0]
    shutil.copyfile(photo, tmp_path / "h.jpg")
    write_csv(
        tmp_path / "m.csv",
        ["id", "category", "name", "description", "colour", "path"],
        [
            ["h1", "hat", "Good hat", "", "red", "h.jpg"],
            ["h2", "hat", "bad\0name", "", "red", "h.jpg"],
            ["h3", "h\0at", "Hat", "", "red", "h.jpg"],
            ["h4", "hat", "Hat", "soft\0", "red", "h.jpg"],
            ["h5", "hat", "Hat", "", "r\0ed", "h.jpg"],
            ["h6", "hat", "Good hat", "", "blue", "h.jpg"],
        ],
    )
    recs = list(records_from_manifest(tmp_path / "m.csv"))
    assert [(r.item_id, r.error) for r in recs] == [
        ("h1", None),
        ("h2", "the name 'bad\\0name' contains a NUL byte"),
        ("h3", "the category 'h\\0at' contains a NUL byte"),
        ("h4", "the description 'soft\\0' contains a NUL byte"),
        ("h5", "the 'colour' value 'r\\0ed' contains a NUL byte"),
        ("h6", None),
    ]


def test_manifest_prices_read_as_the_feeds_read_them(tmp_path: Path) -> None:
    """'12,50' was 1250.0 and '1.299,00' 1.299: the manifest reader now agrees with the feeds' parse_price."""
    prices = ["12,50", "1.299,00", "1,299.00", "€9.99", "$ 5", "19.99 EUR", "1e-05", "inf", "-3", "€"]
    write_csv(
        tmp_path / "m.csv", ["id", "category", "price", "path"], [[f"p{i}", "hat", p, "h.jpg"] for i, p in enumerate(prices)]
    )
    got = [r.fields.price if r.fields else r.error for r in records_from_manifest(tmp_path / "m.csv")]
    assert got == [12.5, 1299.0, 1299.0, 9.99, 5.0, 19.99, 1e-05] + [f"price '{p}' is not a number" for p in prices[7:]]


def test_jfif_photos_import_and_heic_ones_fail_with_the_decoders_sentence(tmp_path: Path) -> None:
    """.jfif/.jpe JPEGs and .heic/.avif photos were skipped without a word (the summary read as if there were none)."""
    photos = demo_photos("hat")[:3]
    (tmp_path / "hat").mkdir()
    for p, name in zip(photos, ["a.jpg", "b.jfif", "c.JPE"]):
        shutil.copyfile(p, tmp_path / "hat" / name)
    for name, brand in (("d.heic", b"heic"), ("e.avif", b"avif")):
        (tmp_path / "hat" / name).write_bytes(b"\0\0\0\x18ftyp" + brand + bytes(200))
    recs = list(records_from_folder(tmp_path))
    assert [(r.item_id, r.error) for r in recs] == [(f"hat/{c}", None) for c in "abcde"]
    assert [decode_image(image_bytes(r)).size for r in recs[:3]] == [decode_image(p.read_bytes()).size for p in photos]
    for r in recs[3:]:
        with pytest.raises(BadImage, match="HEIC/AVIF images are not supported"):
            decode_image(image_bytes(r))


def test_a_stray_csv_leaves_a_zip_of_category_folders_one(tmp_path: Path) -> None:
    """Any .csv made the whole ZIP a manifest: a zipped folder with a labels.csv (path,label) was refused, and a
    size chart shirt/sizes.csv (id,category,chest) became one bogus row with the photos skipped silently."""
    hat, shoes = demo_photos("hat")[0], demo_photos("shoes")[0]
    labelled = {
        "demo/labels.csv": b"path,label\nimages/hat/h1.jpg,hat\n",
        "demo/images/hat/h1.jpg": hat.read_bytes(),
        "demo/images/shoes/s1.jpg": shoes.read_bytes(),
    }
    sized = {
        "hat/h1.jpg": hat.read_bytes(),
        "shirt/sizes.csv": b"id,category,chest\nM,size,100\n",
        "shoes/s1.jpg": shoes.read_bytes(),
    }
    for files in (labelled, sized):
        for name, data in files.items():
            (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "tree" / name).write_bytes(data)
        recs = list(records_from_zip(zip_of(files)))
        assert [(r.item_id.rsplit("/", 2)[-2:], r.error) for r in recs] == [(["hat", "h1"], None), (["shoes", "s1"], None)]
        assert sorted(r.item_id for r in records_from_folder(tmp_path / "tree")) == [r.item_id for r in recs]
        shutil.rmtree(tmp_path / "tree")
    with pytest.raises(BadManifest, match="has no column 'id' or 'category'"):  # no photos: a manifest with other names
        list(records_from_zip(zip_of({"export.csv": b"sku,type,image_url\n1,hat,https://cdn.example/1.jpg\n"})))
    photos = {"h1.jpg": hat.read_bytes(), "s1.jpg": shoes.read_bytes()}
    beside = {"shop/products.csv": b"id,category,path\nh1,hat,h1.jpg\ns1,shoes,s1.jpg\n"}  # one folder: its manifest
    beside |= {f"shop/{n}": d for n, d in photos.items()}
    assert [(r.item_id, r.fields.category) for r in records_from_zip(zip_of(beside)) if r.fields] == [
        ("h1", "hat"),
        ("s1", "shoes"),
    ]
    misnamed = {"products.csv": b"ID,Category,Path\nh1,hat,images/h1.jpg\n"} | {f"images/{n}": d for n, d in photos.items()}
    with pytest.raises(BadManifest, match="has no column 'id' or 'category'"):  # one folder of photos: still its manifest
        list(records_from_zip(zip_of(misnamed)))


async def test_adding_a_twin_later_keeps_the_first_photos_id(tmp_path: Path, db: str) -> None:
    """dress/a.jpg imported, then dress/a.png added beside it: the .jpg keeps its id "dress/a" (it sorts
    first) and the .png comes in as "dress/a.png", so each photo is in the catalogue once. A ZIP agrees."""
    jpg, png = demo_photos("dress")[:2]
    (tmp_path / "shop" / "dress").mkdir(parents=True)
    shutil.copyfile(jpg, tmp_path / "shop" / "dress" / "a.jpg")
    rec = await open_rec(db)
    try:
        first = await rec.import_items(records_from_folder(tmp_path / "shop"), guild_id=5, actor="test")
        assert first.added == 1
        decode_image(png.read_bytes()).save(tmp_path / "shop" / "dress" / "a.png")
        recs = list(records_from_folder(tmp_path / "shop"))
        assert {r.item_id: image_bytes(r) == jpg.read_bytes() for r in recs} == {"dress/a": True, "dress/a.png": False}
        again = await rec.import_items(iter(recs), guild_id=5, actor="test")
        assert (again.added, again.updated, again.unchanged) == (1, 0, 1)
        assert await rec.store.category_counts(5) == {"dress": 2}
    finally:
        await rec.close()
    zipped = zip_of({"dress/a.png": (tmp_path / "shop" / "dress" / "a.png").read_bytes(), "dress/a.jpg": jpg.read_bytes()})
    assert sorted(r.item_id for r in records_from_zip(zipped)) == ["dress/a", "dress/a.png"]


async def test_twins_imported_under_the_old_rule_keep_their_ids(tmp_path: Path, db: str) -> None:
    """Before 2026-12-07 twins (dress/a.jpg, dress/a.png) both had their full names as ids. Importing the same
    folder again keeps those ids: the .jpg does not come in a second time as "dress/a". A new catalogue gets
    the rule of today."""
    jpg, png = demo_photos("dress")[:2]
    (tmp_path / "shop" / "dress").mkdir(parents=True)
    shutil.copyfile(jpg, tmp_path / "shop" / "dress" / "a.jpg")
    decode_image(png.read_bytes()).save(tmp_path / "shop" / "dress" / "a.png")
    recs = list(records_from_folder(tmp_path / "shop"))
    assert [(r.item_id, r.former_id) for r in recs] == [("dress/a", "dress/a.jpg"), ("dress/a.png", None)]
    old_rule = [
        replace(r, item_id=r.former_id, fields=replace(r.fields, item_id=r.former_id)) if r.former_id else r for r in recs
    ]
    rec = await open_rec(db)
    try:
        assert (await rec.import_items(iter(old_rule), guild_id=5, actor="test")).added == 2
        again = await rec.import_items(records_from_folder(tmp_path / "shop"), guild_id=5, actor="test")
        assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
        assert sorted(i.item_id for i in (await rec.store.list_items(5))[0]) == ["dress/a.jpg", "dress/a.png"]
        await rec.import_items(records_from_folder(tmp_path / "shop"), guild_id=6, actor="test")
        assert sorted(i.item_id for i in (await rec.store.list_items(6))[0]) == ["dress/a", "dress/a.png"]
    finally:
        await rec.close()
