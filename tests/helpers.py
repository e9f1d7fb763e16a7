"""Shared helpers for the recommender tests: where the real data lives, cached backbones, and a
demo catalogue built once through the real CLI and copied per test.

Test files import what they need from here (the bot harness is in harness.py); conftest.py holds
only fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "data" / "clothing-demo" / "images"
SHARED = ROOT.parent / "shared" / "data"
FASHION = SHARED / "fashion-products"
WOMEN = SHARED / "women-fashion" / "images"
PYTHON = sys.executable

needs_fashion = pytest.mark.skipif(not (FASHION / "styles.csv").is_file(), reason=f"shared data not present at {FASHION}")
needs_women = pytest.mark.skipif(not WOMEN.is_dir(), reason=f"shared data not present at {WOMEN}")

DEMO_CATEGORIES = sorted(p.name for p in DEMO.iterdir() if p.is_dir())


def demo_photos(category: str | None = None) -> list[Path]:
    """The demo photos (sorted), optionally of one category."""
    cats = [category] if category else DEMO_CATEGORIES
    return [p for c in cats for p in sorted((DEMO / c).glob("*.jpg"))]


def demo_item_id(path: Path) -> str:
    """The item id the folder importer gives a demo photo: '<category>/<stem>'."""
    return f"{path.parent.name}/{path.stem}"


def as_png(path: Path) -> bytes:
    """The same pixels re-encoded losslessly: a different file (new hash), the same picture."""
    from PIL import Image

    with Image.open(path) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "PNG")
    return out.getvalue()


def largest_women_photos(n: int) -> list[Path]:
    """The n women-fashion photos with the most pixels (up to 4000x6000)."""
    from PIL import Image

    sized = []
    for p in WOMEN.iterdir():
        try:
            with Image.open(p) as im:
                sized.append((im.width * im.height, p))
        except Exception:
            continue
    return [p for _, p in sorted(sized, reverse=True)[:n]]


def styles_rows(types: list[str], per_type: int, skip: int = 0) -> list[dict[str, str]]:
    """The first `per_type` styles.csv rows of each articleType (after `skip`), in file order."""
    seen: dict[str, int] = defaultdict(int)
    rows = []
    with open(FASHION / "styles.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t = row["articleType"]
            if t in types:
                seen[t] += 1
                if skip < seen[t] <= skip + per_type and (FASHION / "images" / f"{row['id']}.jpg").is_file():
                    rows.append(row)
    return rows


def write_kaggle_subset(dest: Path, rows: list[dict[str, str]]) -> Path:
    """styles.csv with these rows plus images/<id>.jpg beside it (the Kaggle layout). Returns the CSV."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    with open(dest / "styles.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        shutil.copyfile(FASHION / "images" / f"{row['id']}.jpg", dest / "images" / f"{row['id']}.jpg")
    return dest / "styles.csv"


# -- backbones, loaded once per test process ---------------------------------------------------

_BACKBONES: dict[str, Any] = {}
_BACKBONE_LOCK = threading.Lock()


def backbone(name: str = "tiny"):
    """The registered backbone `name` (real weights), loaded once and shared."""
    from recommender.backbones import load_backbone

    with _BACKBONE_LOCK:
        if name not in _BACKBONES:
            _BACKBONES[name] = load_backbone(name)
        return _BACKBONES[name]


def fast_backbone(name: str):
    """`backbone(name)` on the fast path the engine uses (ONNX Runtime, float32: the same vectors within 1e-4,
    tests/test_runtime.py), exported once into the user's model cache as the engine would."""
    from recommender.runtime import accelerate

    slow, key = backbone(name), f"{name}|fast"
    with _BACKBONE_LOCK:
        if key not in _BACKBONES:
            _BACKBONES[key] = accelerate(slow, None, threads=0, precision="fp32")
        return _BACKBONES[key]


def settings(db: str | Path, **kw: Any):
    """Settings for a test: no environment, no config file, the tiny model unless told otherwise."""
    from recommender.config import load_settings

    kw.setdefault("model", "tiny")
    return load_settings(env={}, db=db, **kw)


async def open_rec(db: str | Path, model: str = "tiny", **kw: Any):
    from recommender.engine import Recommender

    return await Recommender.open(settings(db, model=model, **kw), backbone=backbone(model))


# -- the demo catalogue, imported once with the tiny model through `lookalike import` -----------

_DEMO_DB: dict[str, Path] = {}


def demo_db(tmp_path_factory: pytest.TempPathFactory, dest: Path) -> Path:
    """A private copy (at `dest`) of the demo catalogue imported with tiny (classifier trained)."""
    if "master" not in _DEMO_DB:
        master = tmp_path_factory.mktemp("demo-db") / "demo.db"
        import_demo(master)
        _DEMO_DB["master"] = master
    shutil.copyfile(_DEMO_DB["master"], dest)
    return dest


def import_demo(db: str | Path) -> None:
    """`lookalike import` of the demo catalogue (tiny model) into `db`, in a thread of its own (callers
    may be inside a running event loop)."""
    from bot.cli import main

    with ThreadPoolExecutor(1) as pool:
        rc = pool.submit(main, ["import", str(DEMO), "--model", "tiny", "--db", str(db)]).result()
    assert rc == 0


def count(db: Path, sql: str, *params: Any) -> int:
    """One number from a read-only connection (any process may be writing)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute(sql, params).fetchone()[0])
    finally:
        con.close()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`lookalike ARGS` in a fresh interpreter (the console script's module)."""
    return subprocess.run(
        [PYTHON, "-m", "bot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """The process's objects so far out of the garbage collector's reach, as `lookalike run` does once the model
    is loaded (bot.app.settle_heap), then back. A test process holds pytest's and every test module's objects as
    well: a full collection over them (300,000 objects, 0.2-0.4 s) held the GIL and stalled the loop."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class LoopLag:
    """Measures the event loop's responsiveness: a task that wants to wake every `period` seconds."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.worst = 0.0
        self.ticks = 0
        self._task: asyncio.Task | None = None
        self._last = time.perf_counter()

    async def _run(self) -> None:
        self._last = time.perf_counter()
        while True:
            await asyncio.sleep(self.period)
            now = time.perf_counter()
            self.worst = max(self.worst, now - self._last - self.period)
            self.ticks += 1
            self._last = now

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        # A stall that ends the block is never seen by a tick: count it here.
        self.worst = max(self.worst, time.perf_counter() - self._last - self.period)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def member_without_npy_header(data: bytes, name: str = "meta.npy") -> bytes:
    """``data`` (an ``np.savez`` archive) with member ``name`` holding its raw bytes, its ``.npy`` header gone:
    ``np.load`` then hands that member back as ``bytes``, not an array."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.namelist():
            raw = src.read(member)
            dst.writestr(member, raw[raw.index(b"\n") + 1 :] if member == name else raw)
    return out.getvalue()


def zip_directory_damaged(data: bytes, field: str) -> bytes:
    """``data`` (an ``np.savez`` archive) with its first central-directory entry claiming an unsupported
    compression method (``field="method"``) or encryption (``"encrypted"``): what one flipped bit there does.
    zipfile raises NotImplementedError / RuntimeError for these, not BadZipFile."""
    b = bytearray(data)
    end = b.rindex(b"PK\x05\x06")  # the archive's own end record: members may be archives themselves
    entry = int.from_bytes(b[end + 16 : end + 20], "little")
    assert b[entry : entry + 4] == b"PK\x01\x02"
    if field == "method":
        b[entry + 10] = 1  # "shrunk", a method zipfile does not implement (stored: 0)
    else:
        b[entry + 8] |= 1  # general purpose flag bit 0: encrypted
    return bytes(b)


async def eventually(probe, *, within: float = 1.0) -> float:
    """Seconds until `await probe()` is true; fails after `within`."""
    t0 = time.monotonic()
    while not await probe():
        assert time.monotonic() - t0 < within, f"not within {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def head_fits(caplog: Any) -> int:
    """Head fits logged so far (heads.py logs "head (" once per fit)."""
    return sum("head (" in r.getMessage() for r in caplog.records if r.name == "recommender.heads")
