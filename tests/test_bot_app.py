"""The bot's lifecycle (restart, run() with SIGTERM, the `lookalike run` entry), fault tolerance,
options, and the renderer's limits."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from bot import grid, render
from bot.app import run
from bot.cli import main as lookalike
from bot.cogs.utils.cooldown import UserCooldown
from bot.cogs.utils.errors import APOLOGY
from bot.cogs.utils.guilds import GuildConfigs
from bot.cogs.utils.items import make_item_id, slugify
from bot.cogs.utils.options import BotOptions
from bot.sandbox import DiscordSandbox
from bot.sandbox.limits import ApiError, validate_message
from recommender.classify import Prediction
from recommender.config import DEFAULT_GUILD, load_settings
from recommender.engine import ImportSummary, Match, SimilarResult
from recommender.errors import BadOption
from recommender.records import Item

from databases import sql
from harness import BOT_COMMANDS, Harness, bot_options, bot_settings, copy_db, held_out, jpeg, listed, wait_for_typing

pytestmark = pytest.mark.timeout(120)


async def test_restart_with_the_same_database_keeps_catalogue_and_settings(harness: Harness) -> None:
    h = harness
    added = await h.slash(
        h.owner, "catalog add", {"name": "Linen Shirt", "category": "shirt"}, attachments={"image": jpeg(held_out("shirt")[0])}
    )
    await h.slash(
        h.owner, "catalog add", {"name": "Silk Shirt", "category": "shirt"}, attachments={"image": jpeg(held_out("shirt")[1])}
    )
    item_id = next(f["value"] for f in added.messages[0].embeds[0]["fields"] if f["name"] == "ID").strip("`")
    await h.slash(h.owner, "config k", {"n": 1})
    await h.restart()
    shown = await h.slash(h.owner, "catalog show", {"item": item_id})
    assert shown.messages[0].embeds[0]["title"] == "Linen Shirt"
    reply = await h.ask(h.alice, [jpeg(held_out("t-shirt")[0])])  # still watched, k still 1, own catalogue
    [(category, found)] = listed(reply.embeds[0])
    assert category == "shirt" and found.startswith(("linen-shirt-", "silk-shirt-"))
    h.assert_clean()


async def test_unexpected_errors_get_an_apology_and_the_bot_keeps_going(harness: Harness) -> None:
    h = harness
    photo = [jpeg(held_out("skirt")[0])]
    assert (await h.ask(h.alice, photo)).embeds
    assert h.rec is not None
    await sql(h.rec.store, "ALTER TABLE items RENAME TO items_away")  # a real fault under the running bot
    try:
        broken = await h.ask(h.alice, photo)
        assert broken.content == APOLOGY and broken.embeds == []
        inter = await h.slash(h.bob, "similar", attachments={"image": photo[0]})
        assert inter.messages[-1].content == APOLOGY and not inter.failed
    finally:
        await sql(h.rec.store, "ALTER TABLE items_away RENAME TO items")
    assert (await h.ask(h.alice, photo)).embeds  # still alive and well
    h.assert_clean()


async def test_run_answers_then_shuts_down_cleanly_on_sigterm(tmp_path: Path, template_db: Path) -> None:
    gc.unfreeze()
    async with DiscordSandbox(heartbeat_interval=0.5) as sandbox:
        sandbox.configure_discord()
        bot_user = sandbox.create_bot_user("lookalike")
        owner, alice = sandbox.create_user("owner"), sandbox.create_user("alice")
        guild = sandbox.create_guild("Shop", owner=owner)
        channel = sandbox.create_text_channel(guild, "photos")
        sandbox.add_member(guild, alice)
        # the batcher waits 1.5 s for company before embedding: the reply is still in flight at SIGTERM
        settings = bot_settings(copy_db(template_db, tmp_path / "run.db"), batch_wait_ms=1500)
        task = asyncio.create_task(run(settings, bot_user.token, bot_options(settings, shutdown_grace_s=10)))
        try:
            await sandbox.wait_for_ready(bot_user, timeout=30)
            assert gc.get_freeze_count() > 0  # start-up objects were moved out of the collector's reach
            await sandbox.wait_for_commands(bot_user, *BOT_COMMANDS)
            inter = await sandbox.invoke_slash(guild, channel, owner, "config watch", {"channel": channel})
            await inter.wait_done()
            msg = await sandbox.post_message(channel, alice, attachments=[jpeg(held_out("hat")[0])])
            await wait_for_typing(sandbox)  # the reply is in flight
            assert not [m for m in sandbox.bot_messages if m.reference_id == msg.id]
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(task, 30)  # run() returns: bot closed, recommender closed
        finally:
            if not task.done():
                task.cancel()
        reply = next(m for m in sandbox.bot_messages if m.reference_id == msg.id)  # the reply in flight was finished
        assert len(listed(reply.embeds[0])) == settings.k
        assert not [s for s in sandbox.gateway.sessions.values() if s.connection]  # disconnected
        assert sandbox.violations == [] and sandbox.unknown_routes == []
    con = sqlite3.connect(settings.db)  # the database was closed cleanly and kept the change
    try:
        assert con.execute("SELECT count(*) FROM watched_channels").fetchone()[0] == 1
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_lookalike_run_console_script_without_a_token_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert lookalike(["run"]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_main_with_a_bad_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "x.y.z")
    assert lookalike(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("cooldown_rate = 0\n")
    assert lookalike(["run", "--config", str(bad)]) == 2
    assert "cooldown_rate" in capsys.readouterr().err


def test_bot_options_from_config_file_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "lookalike.toml"
    cfg.write_text('k = 3\ncooldown_rate = 2\ncooldown-per-s = 5.5\nsync_guilds = [1, 2]\ncurrency = "€"\n')
    settings = load_settings(cfg, env={})
    opts = BotOptions.from_settings(settings, env={"LOOKALIKE_COOLDOWN_RATE": "7", "LOOKALIKE_SYNC_COMMANDS": "no"})
    assert settings.k == 3
    assert (opts.cooldown_rate, opts.cooldown_per_s, opts.sync_guilds, opts.currency, opts.sync_commands) == (
        7,
        5.5,
        (1, 2),
        "€",
        False,
    )
    assert BotOptions.from_settings(load_settings(env={}), env={}) == BotOptions()
    with pytest.raises(BadOption, match="max_attachments"):
        BotOptions.from_settings(settings, env={"LOOKALIKE_MAX_ATTACHMENTS": "11"})
    with pytest.raises(BadOption, match="invalid value"):
        BotOptions.from_settings(settings, env={"LOOKALIKE_COOLDOWN_PER_S": "soon"})
    for key, bad in (("grid_cell", "31"), ("import_max_bytes", "0"), ("import_max_rows", "0"), ("shutdown_grace_s", "-1")):
        with pytest.raises(BadOption, match=key):
            BotOptions.from_settings(settings, env={f"LOOKALIKE_{key.upper()}": bad})
    assert BotOptions().import_max_rows == 5000


def test_cooldown_window_and_single_note() -> None:
    now = [0.0]
    cd = UserCooldown(rate=2, per=10, clock=lambda: now[0])
    assert cd.hit(1).allowed and cd.hit(1).allowed
    third, fourth = cd.hit(1), cd.hit(1)
    assert not third.allowed and third.first_refusal and third.retry_after == pytest.approx(10)
    assert not fourth.allowed and not fourth.first_refusal
    assert cd.hit(2).allowed  # per user
    now[0] = 10.5
    assert cd.hit(1).allowed
    assert UserCooldown(rate=1, per=0).hit(1).allowed and UserCooldown(rate=1, per=0).hit(1).allowed


class SlowSettingsReader:
    """Stands in for the recommender's guild_settings(): reads the value, then takes its time."""

    def __init__(self) -> None:
        self.k = 1
        self.reads = 0
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.listeners: list = []

    def on_settings_change(self, callback) -> None:
        self.listeners.append(callback)

    async def guild_settings(self, guild_id: int) -> int:
        self.reads += 1
        k = self.k
        self.reading.set()
        await self.release.wait()
        return k


async def test_guild_settings_cache_never_keeps_a_read_older_than_a_write() -> None:
    reader = SlowSettingsReader()
    configs = GuildConfigs(reader)  # type: ignore[arg-type]
    first = asyncio.create_task(configs.get(7))
    await reader.reading.wait()  # the cache-miss read has the old value and is still running ...
    reader.k = 2
    configs.invalidate(7)  # ... when a /config write lands and invalidates
    reader.release.set()
    assert await first == 1  # that caller gets what it read
    assert await configs.get(7) == 2  # but the stale copy was not cached
    assert await configs.get(7) == 2 and reader.reads == 2  # the fresh one is
    reader.k = 3
    [changed] = reader.listeners  # another process wrote (the change feed): forgotten here too
    changed(7)
    assert await configs.get(7) == 3 and reader.reads == 3
    reader.k = 4
    changed(None)  # the feed reconnected: every guild is read again
    assert await configs.get(7) == 4


def test_item_ids_are_readable_and_unique() -> None:
    assert slugify("  Blue Suede Shoes (size 42)!") == "blue-suede-shoes-size-42"
    assert slugify("Crème brûlée ✨") == "creme-brulee" and slugify("✨✨") == "item"
    a, b = make_item_id("Hat", b"one"), make_item_id("Hat", b"two")
    assert a.startswith("hat-") and a != b and make_item_id("Hat", b"one") == a
    assert make_item_id("Hat", b"one", salt="1") != a


def _item(n: int, long: bool) -> Item:
    text = ("Extremely long product name with *markdown* and [brackets] " * 10) if long else f"Item {n}"
    t = dt.datetime(2024, 1, 1)
    return Item(
        n,
        1,
        f"{'x' * 90 if long else 'id'}-{n}",
        text,
        "category-" + "c" * (80 if long else 1),
        1234.5,
        "https://shop.example/" + "p" * (250 if long else 1),
        "d" * 2000,
        {},
        "h",
        "user:1",
        t,
        t,
    )


@pytest.mark.parametrize("long", [False, True])
def test_rendered_replies_stay_within_discord_limits(long: bool) -> None:
    prediction = Prediction(None, 0.2, [("c" * 100, 0.2), ("b", 0.1)], "linear")
    result = SimilarResult([Match(_item(i, long), 0.9) for i in range(25)], prediction, DEFAULT_GUILD)
    thumbs = {i: grid.thumbnail_grid([None], cell=32) or b"" for i in range(25)}
    queries = [render.Query(f"Photo {i} · " + "n" * 300, result) for i in range(10)]
    notes = ["⚠️ **" + "f" * 100 + "**: " + "reason " * 40] * 20
    reply = render.results_reply(queries, thumbs, notes=notes, cell=48)
    payload = {"content": reply.content, "embeds": [e.to_dict() for e in reply.embeds]}
    validate_message(payload, len(reply.files))  # the sandbox's copy of Discord's rules: raises ApiError
    assert len(reply.embeds) == 10 and len(reply.files) == 10
    assert sum(render.embed_size(e) for e in reply.embeds) <= 6000
    assert all("… and" in (e.description or "") for e in reply.embeds)  # 10 x 25 matches are cut, and say so
    one = render.results_reply(queries[:1], thumbs)
    validate_message({"embeds": [e.to_dict() for e in one.embeds]}, len(one.files))
    assert (len(listed(one.embeds[0].to_dict())) == 25) != long  # one photo's 25 short lines fit whole
    item = render.item_embed(_item(1, long), thumbnail=b"jpeg")
    validate_message({"embeds": [e.to_dict() for e in item.embeds]}, len(item.files))
    summary = ImportSummary(3, 0, 1, [(f"id-{i}", f"file.csv line {i}", "reason " * 50) for i in range(500)], 2.0)
    validate_message({"embeds": [render.import_summary(summary, source="x" * 300).to_dict()]}, 0)
    lines = render.fit_lines(["**Failed rows**", "a", "b"], 3000, total=1 + 500).splitlines()
    assert lines == ["**Failed rows**", "a", "b", "… and 498 more"]  # lines the caller never made are counted
    listing = render.list_embed([_item(i, long) for i in range(25)], 1000, 1, 25, 42)
    validate_message({"embeds": [listing.to_dict()]}, 0)
    with pytest.raises(ApiError):  # and the check itself can fail
        validate_message({"embeds": [{"title": "t" * 257}]}, 0)


def test_a_category_is_text_not_markdown_in_the_plain_text_answer() -> None:
    """Without Embed Links the answer is message content, where a feed's product type such as
    '[Free gift](https://phish.example)' became a masked link in the bot's own words."""
    category = "[Free gift](https://phish.example) @everyone"
    prediction = Prediction(category, 0.9, [(category, 0.9)], "linear")
    result = SimilarResult([Match(_item(1, False), 0.9)], prediction, DEFAULT_GUILD)
    reply = render.results_reply([render.Query("", result)], {}, rich=False)
    head = reply.content.splitlines()[0]
    assert head.startswith("**Looks like: ") and "Free gift" in head and "](" not in head and "@everyone" not in head


@pytest.mark.parametrize("text", [("snake_case " * 100)[:1000], "_" * 2000, "*[x](y)* @everyone " * 120])
def test_item_embed_escapes_before_clipping_and_stays_within_limits(text: str) -> None:
    """Markdown escapes double a value's length: clipping must come after escaping (a 400 otherwise)."""
    t = dt.datetime(2024, 1, 1)
    attributes = {"": "blank key", "   ": "blank too", **{f"{text[:300]}{i}": text for i in range(12)}}
    worst = Item(
        1, 1, "`" + "x" * 300, text, text, 1e9, "https://shop.example/" + "p" * 270, text, attributes, "h", "x" * 300, t, t
    )
    for title in (None, "Added to the catalogue"):
        reply = render.item_embed(worst, thumbnail=b"jpeg", title=title)
        [embed] = reply.embeds
        validate_message({"embeds": [e.to_dict() for e in reply.embeds]}, len(reply.files))
        assert render.embed_size(embed) <= 6000
        assert all(f.name and f.name.strip() for f in embed.fields)  # blank attribute keys are skipped
        description = next(f.value for f in embed.fields if f.name == "Description")
        assert description and not description.rstrip("…").endswith("\\")  # no escape cut in half
    short = render.item_embed(dataclasses.replace(worst, description="snake_case", attributes={"colour": "red_ish"}))
    fields = {f.name: f.value for f in short.embeds[0].fields}
    assert fields["Description"] == "snake\\_case" and fields["colour"] == "red\\_ish"
    hostless = render.item_embed(dataclasses.replace(worst, url="https://")).embeds[0]
    assert hostless.url is None and "Link" not in {f.name for f in hostless.fields}  # no host, no link


async def test_a_connected_bot_stamps_its_health_file(make_harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    health = tmp_path / "health"
    assert await asyncio.to_thread(lookalike, ["health", "--file", str(health)]) == 1  # nothing stamped yet: unhealthy
    h = await make_harness(options={"health_file": str(health)})
    for _ in range(100):  # stamped once the bot is ready
        if health.exists():
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(lookalike, ["health", "--file", str(health)]) == 0
    os.utime(health, (health.stat().st_atime, health.stat().st_mtime - 600))  # a stamp from 10 minutes ago
    assert await asyncio.to_thread(lookalike, ["health", "--file", str(health), "--max-age", "90"]) == 1
    assert "unhealthy: last stamp" in capsys.readouterr().out
    bot = h.bot
    assert bot is not None and bot.gateway_open()
    await bot.ws.socket.close(code=4000)  # dropped: is_ready() stays True while discord.py reconnects ...
    assert bot.is_ready() and not bot.gateway_open()  # ... but nothing counts as connected
    for _ in range(100):
        if bot.gateway_open():
            break
        await asyncio.sleep(0.05)
    assert bot.gateway_open()  # resumed
    await h.stop()
    assert bot._health is not None and bot._health.done()  # close() waited for the stamping task to end


def test_a_summary_of_a_quarter_million_failures_formats_only_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shop's feed of 250,000 rows whose image host refuses the bot fails on every row: the summary formatted all
    of them, on the event loop (seconds of escaping), to show the first few dozen."""
    from bot import render_feeds
    from recommender.records import SyncSummary

    n = 250_000
    failed = [(f"p{i}", f"row {i}", "the image host answered 403") for i in range(n)]
    escaped = [0]
    real_plain = render.plain

    def plain(text: str, limit: int) -> str:
        escaped[0] += 1
        return real_plain(text, limit)

    monkeypatch.setattr(render, "plain", plain)
    monkeypatch.setattr(render_feeds, "plain", plain)
    sync = SyncSummary("csv", ImportSummary(0, 0, 0, failed, 9.0), 0, 0, ["some rows could not be read"])
    embeds = [
        render.import_summary(ImportSummary(0, 0, 0, failed, 9.0), source="shop.zip"),
        render_feeds.sync_summary(sync, source="https://shop.example/feed.csv"),
    ]
    for embed in embeds:
        validate_message({"embeds": [embed.to_dict()]}, 0)
        shown = embed.description.splitlines()
        listed_failures = [line for line in shown if line.startswith("`p")]
        assert len(listed_failures) > 10 and shown[-1] == f"… and {n - len(listed_failures)} more"
    assert escaped[0] < 2_000, f"{escaped[0]} strings escaped for two summaries"
