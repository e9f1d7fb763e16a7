"""Hostile archives, file names and manifests (issue #11, parts 1-4), from tests/hostile_corpus.py,
through `lookalike import` (one subprocess that measures its own peak memory with getrusage) and
through `/catalog import` in the sandbox: each bad entry gets a sentence, the good files beside it are
imported, memory stays bounded, and the database passes PRAGMA integrity_check."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hostile_corpus import Case, Entry, deflated, raw_zip, write_corpus

from bot.sandbox import InteractionRecord
from recommender.archives import Archive, ArchiveLimits
from recommender.errors import BadImage, BadManifest, BadOption, ImageTooLarge
from recommender.importer import check_url, records_from_folder, records_from_manifest, records_from_upload
from recommender.names import PathName, clean_path, fit_id, shown

from harness import MakeHarness, embed_text
from helpers import PYTHON, ROOT, demo_photos

pytestmark = pytest.mark.timeout(180)

MEMORY_BUDGET_MB = 600  # over the process's own baseline (a normal import), whatever the archive

# Runs every command in one interpreter (torch is imported once) and reports the peak RSS after each.
RUNNER = """
import contextlib, io, json, resource, sys
from bot.cli import main
report = []
for name, args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report.append({"name": name, "rc": rc, "out": out.getvalue(), "err": err.getvalue(), "peak_kb": peak})
print(json.dumps(report))
"""


def integrity(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def item_ids(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT item_id FROM items")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return write_corpus(tmp_path_factory.mktemp("hostile"))


def test_hostile_imports_through_the_cli(corpus: list[Case], tmp_path: Path) -> None:
    baseline = tmp_path / "normal" / "hat"
    baseline.mkdir(parents=True)
    for p in demo_photos("hat")[:3]:
        shutil.copyfile(p, baseline / p.name)
    db = {c.name: tmp_path / f"{c.name}.db" for c in corpus}
    common = ["--model", "tiny", "--no-train"]
    runs = [("baseline", ["import", str(baseline.parent), *common, "--db", str(tmp_path / "normal.db")])]
    runs += [(c.name, ["import", str(c.source), *common, "--db", str(db[c.name])]) for c in corpus]
    shown = str(db["zip-csv-nul-huge-cell-formulas"])
    photo = str(demo_photos("hat")[5])
    runs += [
        ("similar", ["similar", photo, "--db", shown, "-k", "3"]),
        ("stats", ["stats", "--db", shown]),
        ("export", ["export", "--db", shown, "--out", str(tmp_path / "items.parquet")]),
    ]
    proc = subprocess.run(
        [PYTHON, "-c", RUNNER, json.dumps(runs)], cwd=ROOT, capture_output=True, text=True, timeout=150
    )  # a FIFO that blocked would end here
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = {r["name"]: r for r in json.loads(proc.stdout.splitlines()[-1])}
    base_kb = report["baseline"]["peak_kb"]
    for c in corpus:
        r = report[c.name]
        text = r["out"] + r["err"]
        assert r["rc"] == c.rc and "Traceback" not in text, (c.name, text[-2000:])
        for words in c.says:
            assert words in text, (c.name, words, text[-3000:])
        assert c.good <= item_ids(db[c.name]), (c.name, c.good - item_ids(db[c.name]), text[-2000:])
        assert integrity(db[c.name]) == "ok", c.name
        assert "\x1b" not in r["out"] and "\x00" not in r["out"], c.name  # names are printed escaped
    peak_mb = (max(r["peak_kb"] for r in report.values()) - base_kb) / 1024
    assert peak_mb <= MEMORY_BUDGET_MB, {n: (r["peak_kb"] - base_kb) // 1024 for n, r in report.items()}

    # names with newlines and escape sequences are printed escaped: one line per result, no ESC byte
    similar = report["similar"]["out"]
    assert report["similar"]["rc"] == 0 and "\x1b" not in similar
    assert len(similar.splitlines()) == 1 + 3, similar  # "# looks like" + k results, however the names look
    assert "Line one\\n0.999\\tfake-item\\x1b[2J" in similar and "hat\\x1b[31m" in similar
    stats = report["stats"]["out"]
    assert report["stats"]["rc"] == 0 and "\x1b" not in stats and "hat\\x1b[31m" in stats

    # `lookalike export` writes Parquet, not CSV: formula-looking cells stay data a spreadsheet never evaluates
    assert report["export"]["rc"] == 0
    assert (tmp_path / "items.parquet").read_bytes()[:4] == b"PAR1"
    names = dict(zip(*pq.read_table(tmp_path / "items.parquet", columns=["id", "name"]).to_pydict().values()))
    assert names["=cmd|' /C calc'!A0"] == '=HYPERLINK("http://evil.example")'


async def test_hostile_uploads_through_catalog_import(corpus: list[Case], make_harness: MakeHarness) -> None:
    h = await make_harness(settings={"max_image_bytes": 20 * 1024 * 1024}, options={"progress_interval_s": 0.05})
    assert h.rec is not None
    for c in (c for c in corpus if c.upload):
        inter = await h.sandbox.invoke_slash(
            h.guild, h.channel, h.owner, "catalog import", attachments={"file": (c.source.name, c.source.read_bytes())}
        )

        def answered(inter: InteractionRecord = inter) -> bool:
            o = inter.original
            return o is not None and not o.loading and (bool(o.embeds) or not (o.content or "").startswith("Import"))

        await h.sandbox.wait_until(answered, 60)
        text = "\n".join(embed_text(m) for m in inter.messages)
        for words in c.bot_says or c.says:
            assert words.replace("'", "") in text.replace("\\", "").replace("'", ""), (c.name, words, text)
        assert "Traceback" not in text and "unexpected error" not in text, (c.name, text)
        items, _, _ = await h.rec.list_items(guild_id=h.guild.id, per_page=1000)
        kept = {i.item_id for i in items}
        if not c.bot_says:
            assert c.good <= kept, (c.name, c.good - kept, text)
    assert await h.rec.store.integrity_check() == "ok"  # SQLite's own check too, on SQLite
    h.assert_clean()


# -- the parts, one by one ------------------------------------------------------------------------


def test_names_are_shown_escaped_and_paths_become_clean_ids() -> None:
    assert shown("caf\udcff.jpg") == "caf\\xff.jpg"  # a byte that was not UTF-8 (os.fsdecode)
    assert shown("two\nlines\x1b[2J\u202eevil") == "two\\nlines\\x1b[2J\\u202eevil"
    assert shown("plain name, spaces kept") == "plain name, spaces kept" and shown("x" * 50, 10) == "x" * 9 + "…"
    assert clean_path("../../etc/passwd").parts == ("etc", "passwd")
    assert clean_path("C:\\shop\\hat\\a.jpg") == PathName(
        ("shop", "hat", "a.jpg"), ("backslashes became '/'", "the drive letter was dropped")
    )
    assert clean_path("/hat/./a\x00b.jpg").parts == ("hat", "a_b.jpg")
    assert clean_path("hat/caf\udcff.jpg").parts == ("hat", "caf%FF.jpg")
    long_a, long_b = "a" * 150, "a" * 149 + "b"
    assert len(fit_id(long_a)[0]) == 100 and fit_id(long_a)[0] != fit_id(long_b)[0] and fit_id("short") == ("short", None)


def test_manifest_ids_are_refused_per_row_and_must_be_unique(tmp_path: Path) -> None:
    photo = demo_photos("hat")[0]
    shutil.copyfile(photo, tmp_path / "a.jpg")
    (tmp_path / "m.csv").write_bytes(b"id,category,path\nx,hat,a.jpg\nx,hat,a.jpg\ny\x1b[2J,hat,a.jpg\nz,hat,a.jpg\n")
    recs = list(records_from_manifest(tmp_path / "m.csv"))
    assert [(r.item_id, r.error) for r in recs] == [
        ("x", None),
        ("x", "the id 'x' is already used by m.csv line 2 in this import"),
        ("y\\x1b[2J", "the id 'y\\x1b[2J' contains control characters or bytes that are not UTF-8"),
        ("z", None),
    ]


def test_links_to_folders_are_not_walked_and_broken_links_are_reported(tmp_path: Path) -> None:
    (tmp_path / "hat").mkdir()
    shutil.copyfile(demo_photos("hat")[0], tmp_path / "hat" / "a.jpg")
    (tmp_path / "hat" / "again").symlink_to(tmp_path / "hat")  # a loop
    (tmp_path / "hat" / "everything").symlink_to("/")
    (tmp_path / "hat" / "nowhere.jpg").symlink_to(tmp_path / "missing.jpg")
    recs = list(records_from_folder(tmp_path))
    assert [(r.item_id, r.error) for r in recs] == [("hat/a", None), ("hat/nowhere", "it is a broken link; skipped")]


def test_urls_and_uploads_are_checked_in_the_importer() -> None:
    assert check_url(" https://shop.example/item ") == "https://shop.example/item"
    for bad in ("ftp://shop.example", "https://", "https://shop.example/a b", "javascript:alert(1)"):
        with pytest.raises(BadOption):
            check_url(bad)
    with pytest.raises(BadManifest, match="Upload a .csv file"):
        records_from_upload(b"", "items.xlsx")
    [local, web] = list(
        records_from_upload(b"id,category,image_url\na,hat,/etc/passwd\nb,hat,https://x.example/b.jpg\n", "i.csv")
    )
    assert web.image == "https://x.example/b.jpg"
    with pytest.raises(BadImage, match="is not a web address"):
        local.image()


def test_archive_limits_count_members_budget_and_checksums() -> None:
    photo = demo_photos("hat")[0].read_bytes()
    ten = raw_zip([Entry(f"hat/{i}.jpg".encode(), photo) for i in range(10)])
    with pytest.raises(BadManifest, match="holds 10 entries; an import takes at most 5"):
        Archive.from_bytes(ten, "ten.zip", ArchiveLimits(max_members=5))
    small = Archive.from_bytes(ten, "ten.zip", ArchiveLimits(min_total_bytes=3 * len(photo), total_ratio=0))
    assert [small.read(m) for m in small.members[:3]] == [photo] * 3
    with pytest.raises(ImageTooLarge, match="the archive already inflated"):
        small.read(small.members[3])
    payload, crc, size = deflated(photo)
    damaged = Archive.from_bytes(raw_zip([Entry(b"hat/a.jpg", payload=(payload, crc ^ 1, size))]), "d.zip")
    with pytest.raises(BadImage, match="checksum"):
        damaged.read(damaged.members[0])
