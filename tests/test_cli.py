"""`lookalike`, the console script (bot.cli:main): run in-process with captured output for most
commands, and as a real subprocess where the process itself matters (--help must stay light;
an import killed with SIGKILL must leave a sound, resumable database)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bot.cli import main
from recommender.importer import records_from_folder

from helpers import (
    DEMO_CATEGORIES,
    FASHION,
    PYTHON,
    ROOT,
    as_png,
    count,
    demo_db,
    demo_item_id,
    demo_photos,
    needs_fashion,
    styles_rows,
    write_kaggle_subset,
)

COMMANDS = ["import", "similar", "classify", "remove", "stats", "export", "evaluate", "run", "health", "demo"]


@pytest.fixture
def db(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_db(tmp_path_factory, tmp_path / "catalogue.db")


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def png_query(tmp_path: Path, photo: Path) -> Path:
    q = tmp_path / f"query-{photo.stem}.png"
    q.write_bytes(as_png(photo))
    return q


# -- help -----------------------------------------------------------------------------------


def test_help_for_every_command_works_without_importing_torch() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from bot.cli import main\n"
        "res = {}\n"
        f"for cmd in [[]] + [[c] for c in {COMMANDS!r}]:\n"
        "    buf = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(buf):\n"
        "            main(cmd + ['--help'])\n"
        "    except SystemExit as e:\n"
        "        res[' '.join(cmd)] = [e.code, buf.getvalue()]\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'discord', 'efficientnet_lite_pytorch', 'pyarrow') if m in sys.modules)\n"
        "print(json.dumps({'help': res, 'heavy': heavy}))\n"
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["heavy"] == []
    assert set(got["help"]) == {"", *COMMANDS}
    for cmd, (rc, text) in got["help"].items():
        assert rc == 0, cmd
        assert text.startswith(f"usage: lookalike {cmd}".rstrip()), text[:80]
    top = got["help"][""][1]
    assert all(c in top for c in COMMANDS)
    assert "--category-column" in got["help"]["import"][1] and "--batch" in got["help"]["import"][1]
    assert "--min-price" in got["help"]["similar"][1]


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "lookalike"
    if not script.exists():
        pytest.skip("the lookalike console script is not installed in this environment")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: lookalike")


# -- the commands on the demo catalogue ------------------------------------------------------


def test_import_a_folder_then_again(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    for c in ("hat", "shoes"):
        (folder / c).mkdir(parents=True)
        for p in demo_photos(c)[:4]:
            shutil.copyfile(p, folder / c / p.name)
    (folder / "hat" / "broken.jpg").write_bytes(demo_photos("hat")[5].read_bytes()[:3000])
    db = tmp_path / "c.db"
    rc, out, err = cli(capsys, "import", folder, "--model", "tiny", "--db", db)
    assert rc == 0, err
    assert out.splitlines()[0].startswith("added 8, updated 0, unchanged 0, failed 1 in ")
    assert "  failed hat/broken (hat/broken.jpg): The image file is truncated or incomplete." in out.splitlines()
    assert "classifier: linear over 2 categories" in out  # 8 items and 16 member-like views of them
    assert "importing" in err and "with tiny" in err  # progress goes to stderr
    rc, out, _ = cli(capsys, "import", folder, "--db", db, "--no-train")  # the model the catalogue was built with
    assert rc == 0 and out.startswith("added 0, updated 0, unchanged 8, failed 1 in ")
    assert "classifier" not in out


def test_similar_prints_one_line_per_match(db: Path, tmp_path: Path, capsys) -> None:
    photo = demo_photos("shoes")[4]
    query = png_query(tmp_path, photo)
    rc, out, err = cli(capsys, "similar", query, "--db", db)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# looks like: ")
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 5 and all(len(r) == 5 for r in rows)
    assert rows[0][1] == demo_item_id(photo) and rows[0][2] == "shoes" and float(rows[0][0]) > 0.99
    assert all(r[2] in DEMO_CATEGORIES for r in rows)
    scores = [float(r[0]) for r in rows]
    assert scores == sorted(scores, reverse=True)

    rc, out, _ = cli(capsys, "similar", query, "--db", db, "--json", "-k", "3", "--category", "hat")
    hits = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(hits) == 3 and {h["category"] for h in hits} == {"hat"}
    assert set(hits[0]) == {"score", "id", "category", "name", "price", "url", "nothing_like_this"}
    assert all(h["nothing_like_this"] is False for h in hits)  # a catalogue photo: close (scripts saw no verdict)
    for json_flag in ([], ["--json"]):  # filters that leave nothing: an empty answer, and why (it was silent)
        rc, out, err = cli(capsys, "similar", query, "--db", db, "--min-price", "1e9", *json_flag)
        assert rc == 0 and not [line for line in out.splitlines() if not line.startswith("#")]
        assert "no catalogue item matches" in err
    for bad in (["stats", "--top", "-1"], ["evaluate", "--examples", "-1"], ["import", "x", "--show-failures", "-3"]):
        with pytest.raises(SystemExit) as e:  # a negative count printed "... -4 more" or a traceback
            cli(capsys, *bad, "--db", db)
        assert e.value.code == 2 and "must be at least 0" in capsys.readouterr().err


def test_classify_prints_the_category_and_its_probability(db: Path, tmp_path: Path, capsys) -> None:
    query = png_query(tmp_path, demo_photos("dress")[2])
    rc, out, err = cli(capsys, "classify", query, "--db", db, "--json")
    assert rc == 0, err
    p = json.loads(out)
    assert p["method"] == "linear" and p["category"] in [*DEMO_CATEGORIES, None]
    probs = [prob for _, prob in p["ranked"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert {c for c, _ in p["ranked"]} <= set(DEMO_CATEGORIES)
    assert p["probability"] == pytest.approx(probs[0])
    rc, out, _ = cli(capsys, "classify", query, "--db", db)
    label, prob = out.strip().split("\t")
    assert rc == 0 and label == (p["category"] or "not sure") and float(prob) == pytest.approx(p["probability"], abs=0.01)


def test_remove_then_stats(db: Path, capsys) -> None:
    gone = [demo_item_id(p) for p in demo_photos("hat")[:2]]
    rc, out, err = cli(capsys, "remove", *gone, "--db", db)
    assert rc == 0, err
    assert [line.split("\t")[:2] for line in out.splitlines()] == [[f"removed {gone[0]}", "hat"], [f"removed {gone[1]}", "hat"]]
    rc, out, _ = cli(capsys, "stats", "--db", db, "--json")
    info = json.loads(out)
    assert rc == 0 and info["items"] == 118 and info["embeddings"] == {"tiny": 118}
    assert info["categories"]["hat"] == 10 and info["categories"]["dress"] == 12
    assert info["classifier"].startswith("head-linear (tiny), trained ")
    rc, out, _ = cli(capsys, "stats", "--db", db, "--top", "3")
    assert rc == 0 and "items: 118" in out and "categories: 10" in out and "  ... 7 more" in out
    rc, _, err = cli(capsys, "remove", gone[0], "--db", db)
    assert rc == 1 and err == f"lookalike: There is no item '{gone[0]}' in this catalogue.\n"
    other = demo_item_id(demo_photos("shoes")[0])
    rc, out, err = cli(capsys, "remove", gone[0], other, "--db", db)  # a typo among the ids: the rest still go
    assert rc == 1 and out.startswith(f"removed {other}\t") and f"no item '{gone[0]}'" in err


def test_export_of_batches_whose_columns_differ_writes_one_whole_file(db: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Each batch's column types came from its own values: a first batch without prices (a null column) and a
    later one with a price could not share the file, and the export ended in a traceback with the first batch
    written (over any good export before it)."""
    import sqlite3

    from recommender.store import Store

    with sqlite3.connect(db) as con:
        con.execute("UPDATE items SET price = 9.5, url = 'https://shop.example/x' WHERE pk = (SELECT MAX(pk) FROM items)")
    real = Store.iter_export
    monkeypatch.setattr(Store, "iter_export", lambda self, guild, model: real(self, guild, model, batch=50))
    out_file = tmp_path / "catalogue.parquet"
    out_file.write_bytes(b"an earlier export")
    rc, out, err = cli(capsys, "export", "--db", db, "--out", out_file)
    assert rc == 0, err
    table = pq.read_table(out_file)
    assert table.num_rows == 120 and sorted(p for p in table.column("price").to_pylist() if p is not None) == [9.5]
    assert [f.name for f in tmp_path.iterdir() if f.name.endswith(".part")] == []


def test_export_writes_items_and_vectors_to_parquet(db: Path, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "catalogue.parquet"
    rc, out, err = cli(capsys, "export", "--db", db, "--out", out_file)
    assert rc == 0, err
    assert out.strip() == f"exported 120 items (tiny vectors) to {out_file}"
    table = pq.read_table(out_file)
    assert table.column_names == [
        "id",
        "name",
        "category",
        "price",
        "url",
        "description",
        "attributes",
        "content_hash",
        "added_by",
        "added_at",
        "model",
        "vector",
    ]
    assert table.num_rows == 120
    rows = table.to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(demo_item_id(p) for p in demo_photos())
    assert {r["model"] for r in rows} == {"tiny"} and all(r["added_by"].startswith("cli") for r in rows)
    vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
    assert vectors.shape == (120, 96)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    # the vector of a photo is the one the model gives it (to float16 precision)
    from recommender.images import load_image

    from helpers import backbone

    photo = demo_photos("pants")[0]
    row = next(r for r in rows if r["id"] == demo_item_id(photo))
    assert np.abs(np.asarray(row["vector"]) - backbone("tiny").embed([load_image(photo)[0]])[0]).max() < 1e-3
    rc, _, err = cli(capsys, "export", "--db", db, "--guild", "99", "--out", tmp_path / "none.parquet")
    assert rc == 1 and "nothing to export" in err


def test_evaluate_queries_scores_members_photos_by_kind(db: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """`lookalike evaluate --queries DIR --accept FILE`: photos in DIR/<kind>/ through the bot's own path."""
    queries = tmp_path / "queries"
    for kind in ("hat", "shoes"):
        (queries / kind).mkdir(parents=True)
        for p in demo_photos(kind)[:3]:
            shutil.copyfile(p, queries / kind / p.name)
    (queries / "hat" / "._hat.jpg").write_bytes(b"\x00\x05\x16\x07 macOS AppleDouble")  # ended the whole run
    accept = tmp_path / "accept.csv"
    accept.write_text("kind,category\nhat,hat\nshoes,shoes\n")
    from recommender import assess, report

    drawn: list[report.QueryExample] = []
    real_write = assess.write_report

    def write_report(*args, **kw):  # type: ignore[no-untyped-def]
        drawn.extend(kw["examples"])
        return real_write(*args, **kw)

    monkeypatch.setattr(assess, "write_report", write_report)
    rc, out, err = cli(
        capsys, "evaluate", "--db", db, "--queries", queries, "--accept", accept, "--out", tmp_path / "q", "--examples", "5"
    )
    assert rc == 0, err
    metrics = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("report"))
    assert metrics["photos"] == "6" and metrics["kinds"] == "2" and metrics["files skipped"] == "1"
    assert "skipped " in err and "._hat.jpg" in err and "evaluate [" in err  # said, and progress shown
    assert 0.0 <= float(metrics["precision@10"]) <= 1.0
    assert (tmp_path / "q" / "report.html").is_file() and (tmp_path / "q" / "report.png").is_file()
    assert len(drawn) == 5  # --examples reaches the report
    for ex in drawn:  # frames: green where the kind accepts the result's category (the labels never matched)
        kind = ex.query_label.split(" -> ")[0]
        assert ex.right == [label == kind for _, label, _ in ex.results]
    assert any(any(ex.right or []) for ex in drawn)


def test_evaluate_writes_an_html_and_png_report(db: Path, tmp_path: Path, capsys) -> None:
    rc, out, err = cli(capsys, "evaluate", "--db", db, "--out", tmp_path / "report", "--min-class-size", "5", "--examples", "3")
    assert rc == 0, err
    metrics = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert metrics["model"] == "tiny" and metrics["items"] == "120" and metrics["categories"] == "10"
    assert 0.0 <= float(metrics["precision@1"]) <= 1.0 and 0.0 <= float(metrics["accuracy"]) <= 1.0
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "precision@1" in html
    sure = float(metrics["coverage@0.5"])  # the report's own coverage line says the same (it said 1.0 always)
    assert f"coverage {sure:.4f}" in html or f"{sure:.4f}" in html.split("coverage (sure)")[1][:200]
    with Image.open(tmp_path / "report" / "report.png") as im:
        im.verify()
    with Image.open(tmp_path / "report" / "report.png") as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200
    rc, _, err = cli(capsys, "evaluate", "--db", db, "--out", tmp_path / "r2", "--min-class-size", "50")
    assert rc == 1 and "Fewer than 2 categories" in err


def test_lookalike_db_from_the_environment(db: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOKALIKE_DB", str(db))
    rc, out, _ = cli(capsys, "stats", "--json")
    assert rc == 0 and json.loads(out)["items"] == 120 and json.loads(out)["database"] == str(db)
    rc, out, _ = cli(capsys, "similar", png_query(tmp_path, demo_photos("hat")[0]), "-k", "2", "--json")
    assert rc == 0 and len(out.splitlines()) == 2
    assert not (tmp_path / "lookalike.db").exists()


# -- errors ----------------------------------------------------------------------------------


def error_cases(tmp_path: Path, db: Path) -> list[tuple[list, str]]:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list: shirt, shoes\n")
    bogus_db = tmp_path / "bogus.db"
    bogus_db.write_text("not a database at all\n" * 100)
    return [
        (["similar", tmp_path / "missing.jpg", "--db", db], f"File not found: '{tmp_path / 'missing.jpg'}'."),
        (["similar", notes, "--db", db], "This file is not an image (it looks like a text file)."),
        (["classify", tmp_path, "--db", db], "is a folder, not an image file."),
        (
            ["similar", demo_photos("hat")[0], "--db", db, "--model", "nope"],
            "Unknown model 'nope'. Available: vgg16, resnet50, efficientnet-lite0, efficientnet-lite2, tiny.",
        ),
        (["remove", "no-such-item", "--db", db], "There is no item 'no-such-item' in this catalogue."),
        (["import", tmp_path / "nowhere", "--db", db], "does not exist."),
        (["stats", "--db", bogus_db], "is not a usable lookalike database: file is not a database"),
        (["stats", "--db", tmp_path / "no" / "dir" / "x.db"], "The folder for the database"),
        (["import", tmp_path / "items.json", "--db", db], "a manifest must be .csv or .parquet."),
    ]


def test_errors_are_one_line_for_people_with_exit_code_1(db: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "items.json").write_text("{}")
    for args, words in error_cases(tmp_path, db):
        rc, out, err = cli(capsys, *args)
        assert rc == 1, (args, err)
        last = err.splitlines()[-1]  # `import` may first say what it is about to do
        assert last.startswith("lookalike: ") and err.count("lookalike: ") == 1, err
        assert words in last, (args, err)
        assert "Traceback" not in err and out == ""


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["similar"],
        ["similar", "x.jpg", "-k", "abc"],
        ["similar", "x.jpg", "-k", "0"],
        ["similar", "x.jpg", "-k", "30"],
        ["similar", "x.jpg", "--min-price", "nan"],  # would match nothing, silently
        ["similar", "x.jpg", "--max-price", "-5"],
        ["similar", "x.jpg", "--min-price", "5", "--max-price", "2"],
        ["export"],
        ["stats", "--guild", "abc"],
        ["similar", "x.jpg", "--pooling", "max"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("usage: lookalike")


def test_similar_on_an_empty_catalogue_says_so(tmp_path: Path, capsys) -> None:
    rc, _, err = cli(capsys, "similar", demo_photos("hat")[0], "--db", tmp_path / "new.db", "--model", "tiny")
    assert rc == 1 and "catalogue is empty" in err


def test_a_manifest_that_is_not_utf8_is_an_error_for_people(tmp_path: Path, capsys) -> None:
    shutil.copyfile(demo_photos("hat")[0], tmp_path / "a.jpg")
    (tmp_path / "export.csv").write_bytes("id,category,path\n1,Chapeau d'\xe9t\xe9,a.jpg\n".encode("cp1252"))
    rc, _, err = cli(capsys, "import", tmp_path / "export.csv", "--model", "tiny", "--db", tmp_path / "c.db")
    assert rc == 1 and "export.csv cannot be read as CSV" in err


@pytest.mark.parametrize("batch", ["0", "-5"])
def test_a_batch_size_below_1_is_refused(batch: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos" / "hat"
    folder.mkdir(parents=True)
    for p in demo_photos("hat")[:3]:
        shutil.copyfile(p, folder / p.name)
    try:
        rc = main(["import", str(tmp_path / "photos"), "--model", "tiny", "--db", str(tmp_path / "c.db"), "--batch", batch])
    except SystemExit as e:  # refused as a usage error
        rc = e.code
    assert rc in (1, 2)
    assert "Traceback" not in capsys.readouterr().err


# -- kill -9 in the middle of a bulk import ----------------------------------------------------


def copy_catalogue(dest: Path, types: list[str], per_type: int) -> list[str]:
    rows = styles_rows(types, per_type)
    for row in rows:
        folder = dest / row["articleType"].replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FASHION / "images" / f"{row['id']}.jpg", folder / f"{row['id']}.jpg")
    return [r["id"] for r in rows]


@needs_fashion
def test_an_import_killed_with_sigkill_resumes_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "catalogue"
    copy_catalogue(folder, ["Shirts", "Jeans", "Watches", "Sports Shoes", "Handbags", "Socks"], 80)
    (folder / "Shirts" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))  # a JPEG header, then noise
    records = list(records_from_folder(folder))
    good_ids = [r.item_id for r in records if r.error is None and r.item_id != "Shirts/corrupt"]
    total = len(good_ids)
    assert total == 480
    # committed batches are whole: the items present are always the good records of the first n batches
    boundaries, done, it = [], 0, iter(records)
    while chunk := list(islice(it, 8)):  # what `--batch 8` commits at a time
        done += sum(r.item_id != "Shirts/corrupt" for r in chunk)
        boundaries.append(done)

    db = tmp_path / "catalogue.db"
    args = [PYTHON, "-m", "bot.cli", "import", str(folder), "--model", "tiny", "--db", str(db), "--batch", "8", "--no-train"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                seen = count(db, "SELECT count(*) FROM items") if db.exists() else 0
            except sqlite3.DatabaseError:  # not created yet, or the schema is being written
                seen = 0
            if seen > 0:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the import ended before it could be killed: {proc.stderr.read()!r}"

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        present = [r[0] for r in con.execute("SELECT item_id FROM items ORDER BY pk")]
        per_item = con.execute(
            "SELECT i.item_id, count(e.item_pk) FROM items i LEFT JOIN embeddings e ON e.item_pk = i.pk GROUP BY i.pk"
        ).fetchall()
        orphans = con.execute("SELECT count(*) FROM embeddings WHERE item_pk NOT IN (SELECT pk FROM items)").fetchone()[0]
    finally:
        con.close()
    n = len(present)
    assert 0 < n < total
    assert all(k == 1 for _, k in per_item) and orphans == 0
    assert n in boundaries and present == good_ids[:n]

    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"added {total - n}, updated 0, unchanged {n}, failed 1 in ")
    [failure] = [line for line in lines if line.startswith("  failed ")]
    assert failure.startswith("  failed Shirts/corrupt (Shirts/corrupt.jpg): ") and len(failure) > 50
    assert count(db, "SELECT count(*) FROM items") == total
    assert count(db, "SELECT count(DISTINCT item_id) FROM items") == total
    assert count(db, "SELECT count(*) FROM embeddings") == total
    assert count(db, "SELECT count(*) FROM items WHERE item_id = 'Shirts/corrupt'") == 0


# -- the pretrained model on real product photos ----------------------------------------------


@pytest.mark.slow
@needs_fashion
def test_efficientnet_lite0_on_a_kaggle_styles_csv(tmp_path: Path, capsys) -> None:
    rows = styles_rows(["Shirts", "Jeans", "Watches", "Casual Shoes"], 40)
    manifest = write_kaggle_subset(tmp_path / "kaggle", rows)
    db = tmp_path / "products.db"
    rc, out, err = cli(
        capsys,
        "import",
        manifest,
        "--model",
        "efficientnet-lite0",
        "--db",
        db,
        "--category-column",
        "articleType",
        "--name-column",
        "productDisplayName",
    )
    assert rc == 0, err
    assert out.startswith("added 160, updated 0, unchanged 0, failed 0 in ")
    assert "classifier: linear over 4 categories" in out

    names = {r["id"]: r["productDisplayName"] for r in rows}
    for row in styles_rows(["Shirts"], 2, skip=40):  # shirts the catalogue has never seen
        photo = tmp_path / f"{row['id']}.jpg"
        shutil.copyfile(FASHION / "images" / f"{row['id']}.jpg", photo)
        rc, out, err = cli(capsys, "similar", photo, "--db", db, "--json")  # the model comes from the catalogue
        assert rc == 0, err
        hits = [json.loads(line) for line in out.splitlines()]
        assert len(hits) == 5 and sum(h["category"] == "Shirts" for h in hits) >= 4, hits
        assert all(h["name"] == names[h["id"]] for h in hits)
        rc, out, err = cli(capsys, "classify", photo, "--db", db)
        assert rc == 0, err
        label, prob = out.strip().split("\t")
        assert label == "Shirts" and float(prob) >= 0.5


def test_an_output_path_that_cannot_be_written_is_one_sentence(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "export", "--db", db, "--out", tmp_path / "missing" / "x.parquet")
    assert rc == 1
    assert err.startswith("lookalike: ") and "missing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("FETCH_CONCURRENCY", "0", "fetch_concurrency at least 1"),  # a semaphore of 0: the feed waited for ever
        ("FETCH_TIMEOUT_S", "abc", "fetch_timeout_s has an invalid value 'abc'"),  # a traceback
        ("FETCH_TIMEOUT_S", "inf", "fetch_timeout_s must be a positive number"),
    ],
)
def test_sync_refuses_fetch_options_that_cannot_work(
    tmp_path: Path, capsys, monkeypatch, name: str, value: str, words: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(f"LOOKALIKE_{name}", value)
    rc, _, err = cli(capsys, "sync", "https://shop.example/feed.xml", "--db", tmp_path / "c.db", "--model", "tiny")
    assert rc != 0 and words in err and "Traceback" not in err
