"""A sharded bot end to end: two `lookalike run` processes (shards 0 and 1 of 2, real discord.py,
tests/sandbox_bot.py) against the sandbox in this process, on one PostgreSQL catalogue.

Each answers the photos of its own guilds; a guild's own catalogue never shows in the other shard's
guilds, nor is it loaded by the other process; a `lookalike import` reaches both within a second;
`kill -9` of one during a burst leaves the other answering, and the restarted one catches up.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageOps

from bot.app import ShardedLookalikeBot, Sharding, create_bot
from bot.sandbox import BotUser, Channel, DiscordSandbox, Guild, Message, User
from recommender.errors import BadOption
from recommender.records import ItemFields

from databases import Cluster, find_bin
from harness import bot_options, bot_settings, embed_text, listed
from helpers import PYTHON, ROOT, demo_photos, import_demo, open_rec, run_cli

pytestmark = pytest.mark.timeout(150)

LOADED = re.compile(r"catalogue (\d+): \d+ vectors loaded")


class BotProcess:
    """`lookalike run --shard-count 2 --shard-ids N` in a subprocess; its log goes to a file."""

    def __init__(self, sb: DiscordSandbox, bot_user: BotUser, db: str, shard: int, folder: Path) -> None:
        self.sb, self.bot_user, self.db, self.shard = sb, bot_user, db, shard
        self.log = folder / f"shard-{shard}.log"
        self.health = folder / f"shard-{shard}.health"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKALIKE_", "DISCORD_"))}
        env.update(
            DISCORD_TOKEN=self.bot_user.token,
            LOOKALIKE_DB=self.db,
            LOOKALIKE_MODEL="tiny",
            LOOKALIKE_COOLDOWN_RATE="1000",
            LOOKALIKE_HEALTH_FILE=str(self.health),
            LOOKALIKE_SHARD_COUNT="2",
        )
        sb = self.sb
        with self.log.open("a") as log:
            self.proc = await asyncio.create_subprocess_exec(
                PYTHON,
                str(ROOT / "tests" / "sandbox_bot.py"),
                sb.api_url,
                sb.gateway_url,
                sb.base_url,
                "--shard-ids",
                str(self.shard),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout: float = 60.0) -> None:
        await self.sb.wait_for_ready(self.bot_user, shard=(self.shard, 2), timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def catalogues_loaded(self) -> set[int]:
        return {int(m) for m in LOADED.findall(self.log.read_text())}


def photo(path: Path, *, mirror: bool = True) -> tuple[str, bytes, str]:
    """A demo photo, mirrored: close to its catalogue item, but not an exact copy (copies are excluded)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        out = io.BytesIO()
        (ImageOps.mirror(rgb) if mirror else rgb).save(out, "JPEG", quality=90)
    return (path.name, out.getvalue(), "image/jpeg")


def checkerboard(size: int = 256, cell: int = 32) -> Image.Image:
    """An image unlike anything in the demo catalogue."""
    im = Image.new("RGB", (size, size), (250, 0, 200))
    draw = ImageDraw.Draw(im)
    for y in range(0, size, cell):
        for x in range(0, size, cell):
            if (x // cell + y // cell) % 2:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(0, 230, 40))
    return im


def jpeg_bytes(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


async def ask(
    sb: DiscordSandbox, channel: Channel, user: User, files: list[tuple[str, bytes, str]], timeout: float = 20
) -> Message:
    msg = await sb.post_message(channel, user, attachments=files)
    return await sb.wait_for_bot_message(lambda m: m.reference_id == msg.id, timeout=timeout)


def top_ids(reply: Message) -> list[str]:
    return [item for _, item in listed(reply.embeds[0])]


def test_shard_options_are_checked_in_words() -> None:
    env: dict[str, str] = {}
    assert Sharding.parse(None, None, env) is None
    assert Sharding.parse("2", "1, 0", env) == Sharding(2, (0, 1))
    assert Sharding.parse(None, None, {"LOOKALIKE_SHARD_COUNT": "4", "LOOKALIKE_SHARD_IDS": "3"}) == Sharding(4, (3,))
    assert Sharding.parse("3", None, env) == Sharding(3, None)
    assert Sharding.parse("2", "1", {"LOOKALIKE_SHARD_COUNT": "9"}) == Sharding(2, (1,))  # flags win
    for count, ids, words in [
        (None, "0", "needs --shard-count"),
        ("two", None, "whole number"),
        ("0", None, "at least 1"),
        ("2", "2", "shard 2 does not exist: with --shard-count 2 the shards are 0 to 1"),
        ("2", "0,x", "separated by commas"),
        ("2", "1,1", "names a shard twice"),
        ("2", " , ", "names no shard"),
    ]:
        with pytest.raises(BadOption, match=words):
            Sharding.parse(count, ids, env)


def test_lookalike_run_refuses_wrong_shards_with_exit_code_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")} | {"DISCORD_TOKEN": "x"}
    out = run_cli("run", "--db", str(tmp_path / "x.db"), "--shard-count", "2", "--shard-ids", "0,2", env=env)
    assert out.returncode == 2
    assert "shard 2 does not exist" in out.stderr and "Traceback" not in out.stderr


def compose_cli() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1): both validate a file without a Docker engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_file_is_valid_and_runs_every_shard_exactly_once() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` nor `docker-compose` here (apt-get install docker-compose)")
    command = [*cli, "-f", str(ROOT / "compose.yaml"), "config"]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    missing = subprocess.run(command, capture_output=True, text=True, env=env | {"POSTGRES_PASSWORD": "pw"}, cwd=ROOT, timeout=60)
    assert missing.returncode != 0 and "DISCORD_TOKEN" in missing.stderr + missing.stdout
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env | {"DISCORD_TOKEN": "t0ken", "POSTGRES_PASSWORD": "pw"},
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    value = r"""['"]?([^'"\n]+)['"]?"""
    counts = set(re.findall(r"LOOKALIKE_SHARD_COUNT: " + value, text))
    ids = [int(i) for v in re.findall(r"LOOKALIKE_SHARD_IDS: " + value, text) for i in v.split(",")]
    [count] = counts
    assert sorted(ids) == list(range(int(count)))  # every shard in exactly one process
    urls = re.findall(r"LOOKALIKE_DB: " + value, text)
    assert len(urls) == len(ids) and all(u == "postgresql://lookalike:pw@postgres:5432/lookalike" for u in urls)
    assert text.count("pg_isready") == 1 and text.count("- health") == len(ids)  # a health check on every service
    assert "pgdata:/var/lib/postgresql/data" in text


async def test_a_shard_never_loads_another_shards_guild_catalogue(pg_cluster: Cluster) -> None:
    """In one process (shard 0 of 2): the guild of shard 1 has a catalogue of its own, written to by
    another process while this one runs; it is never loaded here, and its photos never reach here."""
    db = pg_cluster.clone(pg_cluster.template("demo", import_demo))
    other = await open_rec(db)  # another process on the same database
    sb = DiscordSandbox()
    await sb.start()
    sb.configure_discord()
    settings = bot_settings(db)
    rec = await open_rec(db)
    bot = create_bot(rec, settings, bot_options(settings), Sharding(2, (0,)), guild_ready_timeout=0.1)
    assert isinstance(bot, ShardedLookalikeBot)
    bot_user, alice = sb.create_bot_user("lookalike"), sb.create_user("alice")
    guilds = [sb.create_guild(f"Shop {s}", shard=(s, 2)) for s in (0, 1)]
    channels = [sb.create_text_channel(g, "photos") for g in guilds]
    for g, c in zip(guilds, channels):
        sb.add_member(g, alice)
        await other.add_item(photo(demo_photos("hat")[1])[1], ItemFields(f"own-{g.id}", "Own", "hat"), guild_id=g.id, actor="t")
        await other.set_watched(g.id, c.id, True, actor="t")
    task = asyncio.create_task(bot.start(bot_user.token))
    try:
        await sb.wait_for_ready(bot_user, shard=(0, 2), timeout=20)
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        posted = [await sb.post_message(c, alice, attachments=[photo(demo_photos("hat")[0])]) for c in channels]
        reply = await sb.wait_for_bot_message(lambda m: m.reference_id == posted[0].id, timeout=20)
        assert top_ids(reply) == [f"own-{guilds[0].id}"]
        await other.add_item(
            photo(demo_photos("shoes")[1])[1], ItemFields("later", "Later", "shoes"), guild_id=guilds[1].id, actor="t"
        )
        await asyncio.sleep(1.0)  # time for the change to reach this process, which has nothing of it to update
        assert rec.catalogues.state(guilds[0].id).index is not None
        assert rec.catalogues.state(guilds[1].id).index is None and rec.catalogues.state(0).index is None
        assert [m for m in sb.bot_messages if m.reference_id == posted[1].id] == []
        assert bot.gateway_open() and bot.syncs_commands()
    finally:
        await bot.close()
        await asyncio.wait_for(task, 15)
        await rec.close()
        await other.close()
        await sb.stop()


async def test_the_database_going_away_makes_replies_polite_and_then_they_work_again() -> None:
    bindir = find_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries here")
    cluster = Cluster(bindir).start()  # one of its own: this test stops the server
    sb = DiscordSandbox()
    try:
        db = cluster.new_database()
        await asyncio.to_thread(import_demo, db)
        await sb.start()
        sb.configure_discord()
        settings = bot_settings(db)
        rec = await open_rec(db)
        bot = create_bot(rec, settings, bot_options(settings), Sharding(2, (0,)), guild_ready_timeout=0.1)
        bot_user, alice = sb.create_bot_user("lookalike"), sb.create_user("alice")
        guild = sb.create_guild("Shop", shard=(0, 2))
        channel = sb.create_text_channel(guild, "photos")
        cafe = sb.create_guild("Cafe", shard=(0, 2))  # its settings are never read before the outage
        lounge = sb.create_text_channel(cafe, "lounge")  # not watched
        for g in (guild, cafe):
            sb.add_member(g, alice)
        await rec.set_watched(guild.id, channel.id, True, actor="t")
        task = asyncio.create_task(bot.start(bot_user.token))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 20)
            hat = demo_photos("hat")[0]
            assert "hat/" + hat.stem in top_ids(await ask(sb, channel, alice, [photo(hat)]))
            await asyncio.to_thread(cluster.stop_server)
            chat = await sb.post_message(lounge, alice, "my holiday", attachments=[photo(hat)])
            for _ in range(3):
                away = await ask(sb, channel, alice, [photo(hat)])
                assert away.content == "The catalogue database can't be reached right now; try again in a moment."
                assert not away.embeds and bot.gateway_open() and not task.done()
            # a channel the bot may not watch: no word (before, the apology went to any channel of such a server)
            assert [m for m in sb.bot_messages if m.reference_id == chat.id] == []
            await asyncio.to_thread(cluster.restart)
            back = await ask(sb, channel, alice, [photo(hat)])
            assert "hat/" + hat.stem in top_ids(back)
            assert [str(v) for v in sb.violations] == []
        finally:
            await bot.close()
            await asyncio.wait_for(task, 15)
            await rec.close()
    finally:
        await sb.stop()
        cluster.stop()


async def test_two_bot_processes_share_one_postgresql_catalogue(pg_cluster: Cluster, tmp_path: Path) -> None:
    db = pg_cluster.clone(pg_cluster.template("demo", import_demo))
    sb = DiscordSandbox(identify_interval=5.0)  # Discord's pace: processes starting together take turns
    await sb.start()
    rec = await open_rec(db)  # this test's own view of the shared database (a third process, in effect)
    bot_user = sb.create_bot_user("lookalike")
    owner, alice = sb.create_user("owner"), sb.create_user("alice")
    guilds: list[Guild] = [sb.create_guild(f"Shop {s}", owner=owner, shard=(s, 2)) for s in (0, 1)]
    channels = [sb.create_text_channel(g, "photos") for g in guilds]
    for g, c in zip(guilds, channels):
        sb.add_member(g, alice)
        await rec.set_watched(g.id, c.id, True, actor="test:setup")
    bots = [BotProcess(sb, bot_user, db, s, tmp_path) for s in (0, 1)]
    try:
        for b in bots:
            await b.start()
        await asyncio.gather(*(b.ready() for b in bots))
        await sb.wait_for_commands(bot_user, "catalog", "similar", timeout=30)

        # 1. each process answers the photos of its own guilds, from the shared default catalogue
        hat = demo_photos("hat")[0]
        for c in channels:
            reply = await ask(sb, c, alice, [photo(hat)])
            assert "hat/" + hat.stem in top_ids(reply)
        await sb.wait_until(lambda: all(b.health.exists() for b in bots), 10, "health stamps")

        # 2. a `lookalike import` into the default catalogue while both run: both answer with it within a second
        folder = tmp_path / "new" / "checks"
        folder.mkdir(parents=True)
        checker = checkerboard()
        checker.save(folder / "checker.jpg", quality=95)
        out = await asyncio.to_thread(run_cli, "import", str(folder.parent), "--db", db, "--model", "tiny", "--no-train")
        assert out.returncode == 0, out.stderr
        await asyncio.sleep(1.0)
        query = ("checker.jpg", jpeg_bytes(ImageOps.mirror(checker.resize((240, 240)))), "image/jpeg")
        replies = await asyncio.gather(*(ask(sb, c, alice, [query]) for c in channels))
        assert [top_ids(r)[0] for r in replies] == ["checks/checker", "checks/checker"]

        # 3. /catalog add in the guild of shard 0: that guild's own catalogue, never seen from shard 1
        shoe = demo_photos("shoes")[0]
        added = await sb.invoke_slash(
            guilds[0],
            channels[0],
            owner,
            "catalog add",
            {"name": "Shard zero boot", "category": "boots"},
            attachments={"image": photo(shoe, mirror=False)},
        )
        await added.wait_done(timeout=30)
        assert "Added to the catalogue" in embed_text(added.original)  # type: ignore[arg-type]
        items, _, cid = await rec.list_items(guild_id=guilds[0].id)
        assert cid == guilds[0].id and len(items) == 1
        item_id = items[0].item_id
        own = await ask(sb, channels[0], alice, [photo(shoe)])
        assert top_ids(own) == [item_id]
        other = await ask(sb, channels[1], alice, [photo(shoe)])
        assert item_id not in top_ids(other) and "shared default catalogue" in embed_text(other)
        show = await sb.invoke_slash(guilds[1], channels[1], owner, "catalog show", {"item": item_id})
        await show.wait_done(timeout=20)
        assert "Shard zero boot" not in embed_text(show.original)  # type: ignore[arg-type]

        # 4. kill -9 of shard 0's process mid-burst: shard 1 answers every photo of its guild
        photos = [photo(p) for p in demo_photos("dress")[:6]]
        posted: list[Message] = []
        for i, p in enumerate(photos):
            for c in channels:
                posted.append(await sb.post_message(c, alice, attachments=[p]))
            if i == 1:
                bots[0].kill()
            await asyncio.sleep(0.05)
        shard1 = [m for m in posted if m.guild_id == guilds[1].id]
        await sb.wait_until(
            lambda: all(any(r.reference_id == m.id for r in sb.bot_messages) for m in shard1), 30, "shard 1's replies"
        )
        assert bots[0].proc is not None and await bots[0].proc.wait() == -signal.SIGKILL

        # 5. while it is down another process adds to shard 0's guild catalogue; restarted, it catches up
        skirt = demo_photos("skirt")[0]
        await rec.add_item(
            photo(skirt, mirror=False)[1], ItemFields("late-1", "Late item", "later"), guild_id=guilds[0].id, actor="cli"
        )
        await bots[0].start()
        await bots[0].ready()
        caught_up = await ask(sb, channels[0], alice, [photo(skirt)])
        assert top_ids(caught_up)[0] == "late-1"
        again = await ask(sb, channels[1], alice, [photo(hat)])
        assert "hat/" + hat.stem in top_ids(again)

        # each process loaded only its own guilds' catalogues and the shared default one
        assert bots[0].catalogues_loaded() <= {0, guilds[0].id} and guilds[0].id in bots[0].catalogues_loaded()
        assert bots[1].catalogues_loaded() == {0}
        assert [str(v) for v in sb.violations] == []
    finally:
        await asyncio.gather(*(b.stop() for b in bots))
        await rec.close()
        await sb.stop()
