"""The bot test harness: the real bot (real discord.py) and the real recommender (tiny backbone,
real SQLite file) against the local Discord sandbox on loopback.

The demo catalogue is imported once per session (the last 2 photos of each class are held out as
query photos) and each test gets its own copy of that database (the fixtures are in conftest.py).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import LookalikeBot, create_bot
from bot.cogs.utils.options import BotOptions
from bot.sandbox import BotUser, Channel, DiscordSandbox, Guild, InteractionRecord, Message, Role, User
from recommender.config import DEFAULT_GUILD, Settings, load_settings
from recommender.engine import Recommender
from recommender.importer import ImportRecord, records_from_source

from helpers import DEMO, DEMO_CATEGORIES, backbone, demo_photos

CATEGORIES = DEMO_CATEGORIES
HELD_OUT = 2  # per category, never imported: the query photos
BOT_COMMANDS = ("similar", "similar-item", "catalog", "config")


def demo_split() -> tuple[list[Path], list[Path]]:
    """(catalogue photos, held-out photos): per class, sorted, the last HELD_OUT are held out."""
    train, held = [], []
    for c in CATEGORIES:
        photos = demo_photos(c)
        train += photos[:-HELD_OUT]
        held += photos[-HELD_OUT:]
    return train, held


def held_out(category: str) -> list[Path]:
    return [p for p in demo_split()[1] if p.parent.name == category]


def catalogue_records() -> list[ImportRecord]:
    keep = {f"{p.parent.name}/{p.stem}" for p in demo_split()[0]}
    return [r for r in records_from_source(DEMO) if r.item_id in keep]


def bot_settings(db: str | Path, **kw: Any) -> Settings:
    kw.setdefault("model", "tiny")
    kw.setdefault("retrain_delay_s", 0.2)
    return load_settings(env={}, db=db, **kw)


def bot_options(settings: Settings, **kw: Any) -> BotOptions:
    kw.setdefault("cooldown_rate", 1000)
    kw.setdefault("cooldown_per_s", 1.0)
    kw.setdefault("shutdown_grace_s", 5.0)
    return BotOptions.from_settings(settings, env={}, **kw)


def _in_thread(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine function on a private event loop (session fixtures run outside the test loop)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(fn())
        except BaseException as e:  # pragma: no cover - re-raised below
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def build_catalogue(db: str | Path, model: str) -> str | Path:
    async def build() -> None:
        rec = await Recommender.open(bot_settings(db, model=model), backbone=backbone(model))
        try:
            summary = await rec.import_items(catalogue_records(), guild_id=DEFAULT_GUILD, actor="test:setup")
            assert summary.added == len(demo_split()[0]) and not summary.failed, summary
            await rec.retrain(DEFAULT_GUILD)
        finally:
            await rec.close()

    _in_thread(build)
    return db


def copy_db(src: Path, dest: Path) -> Path:
    shutil.copyfile(src, dest)
    return dest


# -- the harness ---------------------------------------------------------------------------------


@dataclass
class Harness:
    """A sandbox world (guild A with #photos and #chat, guild B with #photos), the bot and its
    recommender. Members: owner (Manage Server by ownership), mod (has the 'mods' role, no
    permissions until /config moderator-role), alice and bob (plain members)."""

    sandbox: DiscordSandbox
    settings: Settings
    options: BotOptions
    bot_user: BotUser
    guild: Guild
    channel: Channel
    chat: Channel
    mods: Role
    owner: User
    mod: User
    alice: User
    bob: User
    guild_b: Guild
    channel_b: Channel
    owner_b: User
    carol: User
    rec: Recommender | None = None
    bot: LookalikeBot | None = None
    task: asyncio.Task[None] | None = None
    extra_users: list[User] = field(default_factory=list)

    async def start(self) -> None:
        self.rec = await Recommender.open(self.settings, backbone=backbone(self.settings.model or "tiny"))
        self.bot = create_bot(self.rec, self.settings, self.options, guild_ready_timeout=0.1)
        self.task = asyncio.create_task(self.bot.start(self.bot_user.token), name="bot-under-test")
        ready = asyncio.create_task(self.bot.wait_until_ready())
        done, _ = await asyncio.wait({self.task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            ready.cancel()
            self.task.result()
            raise RuntimeError("the bot stopped before READY")
        if ready not in done:
            ready.cancel()
            raise TimeoutError("the bot did not become ready")
        await self.sandbox.wait_for_commands(self.bot_user, *BOT_COMMANDS)

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
            if self.task is not None:
                await asyncio.wait_for(self.task, 15)
        if self.rec is not None:
            await asyncio.wait_for(self.rec.close(), 30)
        self.bot = self.rec = self.task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def member(self, name: str, guild: Guild | None = None) -> User:
        user = self.sandbox.create_user(name)
        self.sandbox.add_member(guild or self.guild, user)
        self.extra_users.append(user)
        return user

    async def post(
        self,
        user: User,
        files: list[tuple[str, bytes] | tuple[str, bytes, str]],
        *,
        channel: Channel | None = None,
        content: str = "",
    ) -> Message:
        return await self.sandbox.post_message(channel or self.channel, user, content, attachments=files)

    async def reply_to(self, message: Message, timeout: float = 15.0) -> Message:
        return await self.sandbox.wait_for_bot_message(lambda m: m.reference_id == message.id, timeout=timeout)

    async def ask(self, user: User, files: list[tuple[str, bytes] | tuple[str, bytes, str]], **kw: Any) -> Message:
        """Post a photo message and wait for the bot's reply to it."""
        return await self.reply_to(await self.post(user, files, **kw))

    async def react(self, user: User, message: Message, emoji: str = "👍", *, remove: bool = False) -> bool:
        """A member adds (or, with remove, takes back) a reaction on a message: the bot gets
        MESSAGE_REACTION_ADD / _REMOVE. False when nothing changed (already there / not there)."""
        if remove:
            return await self.sandbox.unreact(message, user, emoji)
        return await self.sandbox.react(message, user, emoji)

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until the bot has no reply or command in flight (a reply's follow-up work, such as
        linking it to its photos and adding its reactions, is done)."""
        assert self.bot is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self.bot.work.in_flight:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the bot still had {self.bot.work.in_flight} replies in flight")
            await asyncio.sleep(0.01)

    def link(self, message: Message) -> str:
        """The message's link, as Discord's Copy Message Link gives it."""
        return f"https://discord.com/channels/{message.guild_id}/{message.channel_id}/{message.id}"

    def sent(self) -> list[Message]:
        """Every message the bot under test sent (interaction responses included)."""
        return [m for m in self.sandbox.bot_messages if m.author.id == self.bot_user.id and not m.deleted]

    def replies_to(self, message: Message) -> list[Message]:
        return [m for m in self.sandbox.bot_messages if m.reference_id == message.id and not m.deleted]

    async def slash(
        self,
        user: User,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        attachments: dict[str, Any] | None = None,
        guild: Guild | None = None,
        channel: Channel | None = None,
        timeout: float = 20.0,
    ) -> InteractionRecord:
        guild = guild or self.guild
        channel = channel or (self.channel if guild is self.guild else self.channel_b)
        inter = await self.sandbox.invoke_slash(guild, channel, user, command, options, attachments=attachments)
        return await inter.wait_done(timeout=timeout)

    async def audit(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        """The guild's audit log, newest first, without the harness's own set-up entries."""
        assert self.rec is not None
        entries = await self.rec.store.audit_entries((guild or self.guild).id)
        return [e for e in entries if e["actor"] != "test:setup"]

    def problems(self) -> list[str]:
        return [str(v) for v in self.sandbox.violations] + [f"unknown route {r}" for r in self.sandbox.unknown_routes]

    def assert_clean(self) -> None:
        assert self.problems() == []
        assert self.sandbox.max_heartbeat_gap < self.sandbox.heartbeat_interval + self.sandbox.heartbeat_grace


def build_world(sandbox: DiscordSandbox, settings: Settings, options: BotOptions) -> Harness:
    bot_user = sandbox.create_bot_user("lookalike")
    owner = sandbox.create_user("owner")
    guild = sandbox.create_guild("Shop A", owner=owner)
    channel = sandbox.create_text_channel(guild, "photos")
    chat = sandbox.create_text_channel(guild, "chat")
    mods = sandbox.create_role(guild, "mods")
    mod, alice, bob = sandbox.create_user("mod"), sandbox.create_user("alice"), sandbox.create_user("bob")
    sandbox.add_member(guild, mod, roles=[mods])
    sandbox.add_member(guild, alice)
    sandbox.add_member(guild, bob)
    owner_b = sandbox.create_user("owner-b")
    guild_b = sandbox.create_guild("Shop B", owner=owner_b)
    channel_b = sandbox.create_text_channel(guild_b, "photos")
    carol = sandbox.create_user("carol")
    sandbox.add_member(guild_b, carol)
    return Harness(
        sandbox,
        settings,
        options,
        bot_user,
        guild,
        channel,
        chat,
        mods,
        owner,
        mod,
        alice,
        bob,
        guild_b,
        channel_b,
        owner_b,
        carol,
    )


MakeHarness = Callable[..., Awaitable[Harness]]


async def wait_for_typing(sandbox: DiscordSandbox, timeout: float = 10.0) -> None:
    """Poll for a typing trigger: the sandbox records them without waking `wait_until` waiters."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not sandbox.typing:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the bot never started typing")
        await asyncio.sleep(0.01)


# -- test data helpers ---------------------------------------------------------------------------


def jpeg(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


TRAIN_IDS = {f"{p.parent.name}/{p.stem}" for p in demo_split()[0]}


def listed(embed: dict[str, Any]) -> list[tuple[str, str]]:
    """(category, item id) of each numbered match line of a reply embed."""
    out = []
    for line in (embed.get("description") or "").splitlines():
        if line.startswith("**") and "% similar" in line:
            parts = line.split(" · ")
            out.append((parts[1], line.rsplit("`", 2)[-2]))
    return out


def embed_text(message: Message) -> str:
    """Everything a member reads in a message: content, embed titles, descriptions, fields, footers."""
    parts = [message.content or ""]
    for e in message.embeds:
        parts += [e.get("title") or "", (e.get("author") or {}).get("name") or "", e.get("description") or ""]
        parts += [f"{f.get('name')}: {f.get('value')}" for f in e.get("fields") or []]
        parts.append((e.get("footer") or {}).get("text") or "")
    return "\n".join(p for p in parts if p)
