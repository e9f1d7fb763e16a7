"""The databases the tests run on. A throw-away PostgreSQL cluster: `initdb` in a temporary folder, a server on a free
loopback port, one fresh database per test, everything removed at the end.

The binaries come from Debian's postgresql package (`/usr/lib/postgresql/N/bin`), or the folder in
LOOKALIKE_PG_BIN. As root (CI), the server runs as the `postgres` user, since initdb refuses root.
Tests that need it skip, with the reason, only where no server binary exists; .ci/run installs it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def find_bin() -> Path | None:
    configured = os.environ.get("LOOKALIKE_PG_BIN")
    candidates = [configured] if configured else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if not configured and (initdb := shutil.which("initdb")):
        candidates.append(str(Path(initdb).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lookalike-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        self._templates: set[str] = set()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {out.stdout}\n{out.stderr}")

    def start(self) -> Cluster:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{next(self._names)}"
        self._run(
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-q",
            "-c",
            f"CREATE DATABASE {name}",
        )
        return self.url(name)

    def clone(self, template: str) -> str:
        """A fresh database copied from `template` (which nobody may be connected to); its URL."""
        name = f"t{next(self._names)}"
        self._psql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def template(self, name: str, build: Callable[[str], None]) -> str:
        """Database `name`, built once by `build(url)`; for clone()."""
        if name not in self._templates:
            self._psql(f"CREATE DATABASE {name}")
            build(self.url(name))
            self._templates.add(name)
        return name

    def _psql(self, command: str) -> None:
        self._run(str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c", command)

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server (it can be started again with `restart`)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self.stop_server("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def sql(store: Any, statement: str, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> list[tuple[Any, ...]]:
    """Run one SQL statement on the store's database, whichever it is, outside the store's own methods
    (to look at or tamper with what is stored); rows for a query, [] otherwise; a list of parameter
    sets runs it once per set. Committed at once."""
    from sqlalchemy import text

    async with store.engine.begin() as c:
        result = await c.execute(text(statement), params or {})
        return [tuple(r) for r in result] if result.returns_rows else []


def query(db: str | Path, statement: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query from another connection, whichever database `db` is; [] while the
    schema is not there yet (a process that is still creating it)."""
    if str(db).startswith("postgresql://"):
        import asyncio

        import asyncpg

        async def run() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(str(db))
            try:
                return [tuple(r) for r in await conn.fetch(statement)]
            except asyncpg.UndefinedTableError:
                return []
            finally:
                await conn.close()

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:  # a loop of its own: the caller may be inside one
            return pool.submit(asyncio.run, run()).result()
    import sqlite3

    if not Path(db).exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(r) for r in con.execute(statement)]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        con.close()
