"""Alembic migrations: a fresh database is at head and matches the models; an old (0001) database
with real items in it is upgraded in place by Store.open and by the CLI, with its data intact."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from recommender.database import migrations_dir
from recommender.errors import DatabaseError
from recommender.images import load_image, make_thumbnail
from recommender.rows import encode_vector
from recommender.schema import Base
from recommender.store import Store, migrate

from helpers import backbone, demo_item_id, demo_photos, open_rec

NEW_TABLES = {"guild_settings", "watched_channels", "audit_log", "classifiers", "catalogue_versions"}


def head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(cfg).get_current_head()


def version(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def schema_diff(db: Path) -> list:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def old_catalogue(db: Path, n: int = 20) -> list[dict]:
    """A database at revision 0001 filled by raw SQL, as the first release wrote it: real photos,
    their tiny embeddings (float16 BLOBs), one item per photo."""
    migrate(db, "0001")
    assert version(db) == "0001" and "audit_log" not in tables(db)
    photos = demo_photos()[::6][:n]
    imgs = [load_image(p) for p in photos]
    vecs = backbone("tiny").embed([im for im, _ in imgs])
    rows = []
    with sqlite3.connect(db) as con:
        for i, (p, (img, digest), vec) in enumerate(zip(photos, imgs, vecs)):
            row = dict(
                guild_id=0,
                item_id=demo_item_id(p),
                name=f"Old item {i}",
                category=p.parent.name,
                price=float(i) if i % 2 else None,
                url=f"https://shop.example/{i}",
                description=None,
                thumbnail=make_thumbnail(img, 64),
                content_hash=digest,
                added_by="v1",
                added_at=datetime(2025, 1, 1, 12, 0, i),
                updated_at=datetime(2025, 1, 1, 12, 0, i),
            )
            cur = con.execute(
                "INSERT INTO items (guild_id, item_id, name, category, price, url, description, thumbnail, content_hash, "
                "added_by, added_at, updated_at) VALUES (:guild_id, :item_id, :name, :category, :price, :url, "
                ":description, :thumbnail, :content_hash, :added_by, :added_at, :updated_at)",
                {**row, "added_at": row["added_at"].isoformat(" "), "updated_at": row["updated_at"].isoformat(" ")},
            )
            con.execute(
                "INSERT INTO embeddings (item_pk, model, dim, vector) VALUES (?, 'tiny', 96, ?)",
                (cur.lastrowid, encode_vector(vec)),
            )
            rows.append({**row, "pk": cur.lastrowid, "vector": vec})
    return rows


async def test_a_fresh_database_is_at_head_and_matches_the_models(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "new.db")
    await store.close()
    assert version(tmp_path / "new.db") == head() == "0007"
    assert schema_diff(tmp_path / "new.db") == []


def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    migrate(tmp_path / "x.db")
    migrate(tmp_path / "x.db")
    assert version(tmp_path / "x.db") == head()


async def test_store_open_upgrades_an_old_database_and_keeps_its_items(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    old = old_catalogue(db)
    store = await Store.open(db)
    try:
        assert version(db) == head()
        assert NEW_TABLES <= tables(db)
        for row in old:
            item = await store.get_item(0, row["item_id"])
            assert (item.pk, item.name, item.category, item.price, item.url, item.content_hash, item.added_by) == (
                row["pk"],
                row["name"],
                row["category"],
                row["price"],
                row["url"],
                row["content_hash"],
                "v1",
            )
            assert item.added_at == row["added_at"] and item.attributes == {}
        thumbs = await store.thumbnails([r["pk"] for r in old])
        assert all(thumbs[r["pk"]] == r["thumbnail"] for r in old)
        vecs = await store.load_vectors(0, "tiny")
        assert np.abs(vecs.vectors - np.stack([r["vector"] for r in old])).max() < 1e-3
        # the new tables work
        await store.update_guild_settings(9, "test", k=3)
        await store.audit(9, "mod", "config", None, k=3)
        assert (await store.guild_settings(9)).k == 3
        # the rebuilt items table still cascades to embeddings
        await store.remove_item(0, old[0]["item_id"], "mod")
    finally:
        await store.close()
    assert schema_diff(db) == []
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA foreign_keys=ON")
        assert con.execute("SELECT count(*) FROM embeddings WHERE item_pk=?", (old[0]["pk"],)).fetchone()[0] == 0
        con.execute("DELETE FROM items WHERE pk=?", (old[1]["pk"],))
        assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == len(old) - 2
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_an_upgraded_catalogue_is_searchable(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    old = old_catalogue(db)
    rec = await open_rec(db)
    try:
        res = await rec.similar(item_id=old[3]["item_id"], k=5, predict=False)
        vecs = np.stack([r["vector"] for r in old])
        scores = vecs @ vecs[3]
        scores[3] = -np.inf
        expected = [old[i]["item_id"] for i in np.argsort(-scores)[:5]]
        assert [m.item.item_id for m in res.matches] == expected
    finally:
        await rec.close()


def test_the_cli_upgrades_an_old_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    db = tmp_path / "v1.db"
    old = old_catalogue(db)
    assert main(["stats", "--db", str(db), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == len(old) and info["embeddings"] == {"tiny": len(old)}
    assert version(db) == head() and NEW_TABLES <= tables(db)


async def test_a_file_that_is_not_sqlite_gives_a_database_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(DatabaseError, match=r"notes\.db is not a usable lookalike database.*not a database"):
        await Store.open(bogus)
    assert bogus.read_text().startswith("these are my notes")  # left alone


async def test_a_missing_folder_gives_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="folder .* does not exist"):
        await Store.open(tmp_path / "no" / "such" / "x.db")
    assert not (tmp_path / "no").exists()


async def test_a_folder_as_database_gives_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        await Store.open(tmp_path)


async def test_a_database_from_a_newer_release_gives_a_database_error(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    migrate(db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num='0099'")
    with pytest.raises(DatabaseError, match="0099"):
        await Store.open(db)


_KILLED_MID_REVISION = """
import os, signal, sys
from alembic.operations import Operations
from recommender.store import migrate

real = Operations.create_table
def create_table(self, name, *a, **k):
    if name == "domain_states":  # revision 0004 has created member_photos and member_votes by now
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, name, *a, **k)
Operations.create_table = create_table
migrate(sys.argv[1])
"""


def test_a_kill_in_the_middle_of_a_revision_leaves_the_database_openable(tmp_path: Path) -> None:
    """Each revision is one transaction on SQLite too: a kill -9 after some of its tables were created rolls them
    back, and the next open upgrades the file (before the fix: 'table member_photos already exists')."""
    import subprocess
    import sys

    db = tmp_path / "cat.db"
    migrate(db, "0003")
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_REVISION, str(db)], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert version(db) == "0003" and "member_photos" not in tables(db)
    migrate(db)  # what Store.open runs first
    assert version(db) == head() and not schema_diff(db)


_OPEN_AT = """
import asyncio, sys, time
from recommender.store import Store
start = float(sys.argv[2])
while time.time() < start:
    pass
async def go():
    store = await Store.open(sys.argv[1])
    await store.close()
asyncio.run(go())
"""


def test_two_processes_opening_a_new_file_at_once_both_succeed(tmp_path: Path) -> None:
    """The migration holds SQLite's write lock: the second process waits, finds the tables made and does
    nothing (before the fix one of the two failed with 'table items already exists' in most tries)."""
    import subprocess
    import sys
    import time

    for attempt in range(2):
        db = tmp_path / f"new{attempt}.db"
        start = str(time.time() + 2.0)
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(db), start], stderr=subprocess.PIPE)
                 for _ in range(2)]  # fmt: skip
        errors = [p.communicate(timeout=120)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        assert version(db) == head() and not schema_diff(db)
