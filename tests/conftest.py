"""Fixtures only: the bot harness (tests/harness.py) with a per-test copy of the demo catalogue.
Helpers are imported from tests/helpers.py and tests/harness.py, never from here."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox import DiscordSandbox

from databases import Cluster, find_bin
from harness import Harness, MakeHarness, bot_options, bot_settings, build_catalogue, build_world, copy_db
from helpers import demo_db, import_demo


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo catalogue (tiny model, classifier trained) in the default catalogue."""
    return build_catalogue(tmp_path_factory.mktemp("bot-template") / "template.db", "tiny")


@pytest.fixture(params=["sqlite", "postgresql"])
def bot_catalogue(request: pytest.FixtureRequest, tmp_path: Path, template_db: Path) -> Callable[[], str]:
    """fresh() -> a private copy of the bot tests' catalogue: SQLite files, then PostgreSQL databases."""
    if request.param == "sqlite":
        copies = iter(range(1000))
        return lambda: str(copy_db(template_db, tmp_path / f"bot-{next(copies)}.db"))
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    template = cluster.template("bot", lambda url: build_catalogue(url, "tiny"))  # type: ignore[arg-type]
    return lambda: cluster.clone(template)


@pytest.fixture
async def make_harness(bot_catalogue: Callable[[], str]) -> AsyncIterator[MakeHarness]:
    """`await make_harness(options={...}, settings={...}, heartbeat=0.5, watch=True, db=None)`."""
    made: list[tuple[DiscordSandbox, Harness]] = []

    async def make(
        *,
        options: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        heartbeat: float = 0.5,
        watch: bool = True,
        db: Path | None = None,
    ) -> Harness:
        path = db or bot_catalogue()
        s = bot_settings(path, **(settings or {}))
        o = bot_options(s, **(options or {}))
        sandbox = DiscordSandbox(heartbeat_interval=heartbeat)
        await sandbox.start()
        sandbox.configure_discord()
        h = build_world(sandbox, s, o)
        made.append((sandbox, h))
        await h.start()
        if watch:
            assert h.rec is not None
            await h.rec.set_watched(h.guild.id, h.channel.id, True, actor="test:setup")
            await h.rec.set_watched(h.guild_b.id, h.channel_b.id, True, actor="test:setup")
        return h

    yield make
    problems: list[str] = []
    for sandbox, h in made:
        try:
            await h.stop()
        finally:
            await sandbox.stop()
        problems += h.problems()
    assert problems == [], problems


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of our own for the session (see tests/databases.py)."""
    bindir = find_bin()
    if bindir is None:
        reason = "no PostgreSQL server binaries here (apt-get install postgresql; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = Cluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalogue database: a SQLite file, then a PostgreSQL database (--db / LOOKALIKE_DB)."""
    if request.param == "sqlite":
        return str(tmp_path / "catalogue.db")
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def demo_catalogue(request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A private copy of the demo catalogue (imported with tiny through `lookalike import`, classifier
    trained): a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(demo_db(tmp_path_factory, tmp_path / "catalogue.db"))
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.clone(cluster.template("demo", import_demo))
