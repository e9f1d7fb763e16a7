"""Crash safety on both databases: an import killed with SIGKILL leaves whole batches and resumes
to every item exactly once, and two processes importing into one catalogue at once end with every
item exactly once. Real `lookalike import` processes on a real SQLite file and a real PostgreSQL
database."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from itertools import islice
from pathlib import Path

import pytest

from recommender.importer import records_from_folder

from databases import query
from helpers import DEMO, PYTHON, ROOT

pytestmark = pytest.mark.timeout(300)


def catalogue(dest: Path, copies: int) -> Path:
    """`copies` x the 120 demo photos, each copy its own category folders (distinct item ids)."""
    for n in range(copies):
        for kind in DEMO.iterdir():
            shutil.copytree(kind, dest / f"{kind.name}-{n}")
    return dest


def command(folder: Path, db: str, batch: int = 8) -> list[str]:
    return [PYTHON, "-m", "bot.cli", "import", str(folder), "--model", "tiny", "--db", db, "--batch", str(batch), "--no-train"]


def one(db: str, statement: str) -> int:
    rows = query(db, statement)
    return int(rows[0][0]) if rows else 0


def check_exactly_once(db: str, expected: list[str]) -> None:
    present = [r[0] for r in query(db, "SELECT item_id FROM items ORDER BY item_id")]
    assert present == sorted(expected)
    assert one(db, "SELECT count(*) FROM embeddings") == len(expected)
    assert one(db, "SELECT count(*) FROM embeddings e LEFT JOIN items i ON i.pk = e.item_pk WHERE i.pk IS NULL") == 0


def test_an_import_killed_with_sigkill_resumes_to_every_item_exactly_once(db: str, tmp_path: Path) -> None:
    folder = catalogue(tmp_path / "catalogue", 2)
    records = list(records_from_folder(folder))
    ids = [r.item_id for r in records]
    boundaries, done, it = [], 0, iter(ids)
    while chunk := list(islice(it, 8)):  # what `--batch 8` commits at a time
        done += len(chunk)
        boundaries.append(done)
    proc = subprocess.Popen(command(folder, db), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if one(db, "SELECT count(*) FROM items") > 0:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the import ended before it could be killed: {proc.stderr.read()!r}"
    n = one(db, "SELECT count(*) FROM items")
    assert 0 < n < len(ids) and n in boundaries  # whole batches only
    assert one(db, "SELECT count(*) FROM embeddings") == n

    again = subprocess.run(command(folder, db), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith(f"added {len(ids) - n}, updated 0, unchanged {n}, failed 0 in ")
    check_exactly_once(db, ids)


def test_two_processes_importing_one_catalogue_at_once_store_every_item_once(db: str, tmp_path: Path) -> None:
    folder = catalogue(tmp_path / "catalogue", 1)
    ids = [r.item_id for r in records_from_folder(folder)]
    subprocess.run([*command(folder, db)[:3], "stats", "--db", db], cwd=ROOT, capture_output=True, timeout=120)  # schema
    procs = [
        subprocess.Popen(command(folder, db, batch), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for batch in (8, 13)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    added = [int(out.split("added ", 1)[1].split(",", 1)[0]) for out, _ in outs]
    assert sum(added) == len(ids)  # each item inserted by exactly one of them; the other saw it there
    assert all("failed 0 in" in out for out, _ in outs)
    check_exactly_once(db, ids)
