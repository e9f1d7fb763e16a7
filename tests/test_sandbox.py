"""The local Discord sandbox (bot/sandbox) driven by a REAL, unmodified discord.py bot.

The bot here is a small test bot, not the project's bot: it exercises what the project relies on
(on_message replies with embeds and files, slash commands with attachment options, deferrals,
followups, subcommand groups, permissions) so the sandbox is checked against discord.py itself.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.sandbox import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    BotUser,
    Channel,
    CommandNotAvailable,
    DiscordSandbox,
    Guild,
    Perm,
    Role,
    User,
)
from bot.sandbox.permissions import base_permissions, channel_permissions

pytestmark = pytest.mark.timeout(60)


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


PNG = make_png(3, 2)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"  # never decoded; only bytes matter


# -- the test bot -----------------------------------------------------------------------------------
@app_commands.command(description="Products that look like a photo")
@app_commands.describe(image="A product photo", k="How many matches")
async def similar(interaction: discord.Interaction, image: discord.Attachment, k: app_commands.Range[int, 1, 10] = 3) -> None:
    await interaction.response.defer()
    data = await image.read()  # downloaded from the sandbox CDN
    interaction.client.observed["similar"] = {  # type: ignore[attr-defined]
        "bytes": data,
        "filename": image.filename,
        "content_type": image.content_type,
        "k": k,
    }
    embed = discord.Embed(title=f"{k} matches", description=f"{len(data)} bytes")
    embed.set_image(url="attachment://matches.png")
    await interaction.followup.send(embed=embed, file=discord.File(io.BytesIO(PNG), "matches.png"))


catalog = app_commands.Group(
    name="catalog",
    description="Manage the catalogue",
    guild_only=True,
    default_permissions=discord.Permissions(manage_guild=True),
)
admin = app_commands.Group(name="admin", description="Dangerous things", parent=catalog)


@catalog.command(name="add", description="Add a product")
async def catalog_add(
    interaction: discord.Interaction, name: str, category: discord.TextChannel, role: discord.Role, price: float
) -> None:
    interaction.client.observed["app_permissions"] = interaction.app_permissions  # type: ignore[attr-defined]
    await interaction.response.send_message(
        f"added {name} to #{category.name} for @{role.name} at {price:.2f} (manage_guild={interaction.permissions.manage_guild})"
    )


@admin.command(name="reset", description="Forget the catalogue")
async def admin_reset(interaction: discord.Interaction, confirm: bool) -> None:
    await interaction.response.send_message(
        f"reset={confirm} by {interaction.user.name} admin={interaction.permissions.administrator}", ephemeral=True
    )


@app_commands.command(description="Answers after the 3 s deadline")
async def slow(interaction: discord.Interaction) -> None:
    await asyncio.sleep(3.3)
    await interaction.response.send_message("finally")


class SandboxTestBot(commands.Bot):
    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1, help_command=None)
        self.seen: list[discord.Message] = []
        self.seen_changed = asyncio.Condition()
        self.observed: dict[str, Any] = {}
        self.command_errors: list[app_commands.AppCommandError] = []
        self.send_errors: list[discord.HTTPException] = []
        self.too_big = DEFAULT_UPLOAD_LIMIT + 1  # bytes of the oversized file !limits sends
        for command in (similar, catalog, slow):
            self.tree.add_command(command)
        self.tree.on_error = self.on_tree_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        self.command_errors.append(error)

    async def wait_seen(self, predicate: Callable[[discord.Message], bool], timeout: float = 5.0) -> discord.Message:
        async with self.seen_changed:
            await asyncio.wait_for(self.seen_changed.wait_for(lambda: any(predicate(m) for m in self.seen)), timeout)
        return next(m for m in self.seen if predicate(m))

    async def on_message(self, message: discord.Message) -> None:
        async with self.seen_changed:
            self.seen.append(message)
            self.seen_changed.notify_all()
        if message.author.bot:
            return
        if message.content == "!echo":
            attachment = message.attachments[0]
            self.observed["echo_read"] = await attachment.read()
            embed = discord.Embed(title="echo", description=attachment.filename)
            embed.set_thumbnail(url="attachment://echo.png")
            await message.reply(f"got {attachment.size} bytes", embed=embed, file=discord.File(io.BytesIO(PNG), "echo.png"))
        elif message.content == "!limits":
            too_big = discord.File(io.BytesIO(bytes(self.too_big)), "big.bin")
            attempts = [
                lambda: message.channel.send(embed=discord.Embed(title="t" * 257)),
                lambda: message.channel.send(embeds=[discord.Embed(description="d" * 3500)] * 2),
                lambda: message.channel.send("c" * 2001),
                lambda: message.channel.send(file=too_big),
            ]
            for attempt in attempts:
                try:
                    await attempt()
                except discord.HTTPException as exc:
                    self.send_errors.append(exc)
            await message.channel.send("limits done")
        elif message.content == "!block":
            time.sleep(3)  # the bug under test: blocks the event loop (and the heartbeat)
            await message.channel.send("woke")
        elif message.content == "!nap":
            await asyncio.sleep(3)
            await message.channel.send("rested")
        elif message.content:
            self.observed.setdefault("contents", []).append(message.content)


@asynccontextmanager
async def running(bot: commands.Bot, token: str, timeout: float = 10.0) -> AsyncIterator[commands.Bot]:
    """Run ``bot`` until READY (on_ready fired), and always close it afterwards."""
    task = asyncio.create_task(bot.start(token))
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("bot stopped before READY")
        if ready not in done:
            raise TimeoutError("bot did not become ready")
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        await asyncio.wait_for(task, 10)


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[DiscordSandbox]:
    options = {"heartbeat_interval": 1.0, **getattr(request, "param", {})}
    sb = DiscordSandbox(**options)
    await sb.start()
    sb.configure_discord()
    try:
        yield sb
    finally:
        await sb.stop()


@dataclass
class World:
    sandbox: DiscordSandbox
    bot_user: BotUser
    guild: Guild
    channel: Channel
    mods: Role
    owner: User
    alice: User
    bob: User


@pytest.fixture
def world(sandbox: DiscordSandbox) -> World:
    bot_user = sandbox.create_bot_user("lookalike-test")
    owner = sandbox.create_user("owner")
    guild = sandbox.create_guild("Shop A", owner=owner)
    channel = sandbox.create_text_channel(guild, "photos")
    mods = sandbox.create_role(guild, "mods", permissions=discord.Permissions(manage_guild=True).value)
    alice, bob = sandbox.create_user("alice"), sandbox.create_user("bob")
    sandbox.add_member(guild, alice, roles=[mods])
    sandbox.add_member(guild, bob)
    return World(sandbox, bot_user, guild, channel, mods, owner, alice, bob)


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read()


# -- tests -------------------------------------------------------------------------------------------
async def test_bot_connects_gets_ready_and_guild_create(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.name == "Shop A" and guild.owner_id == world.owner.id
        assert [c.name for c in guild.text_channels] == ["photos"]
        assert {r.name for r in guild.roles} == {"@everyone", "mods", "lookalike-test"}
        assert guild.me is not None and guild.me.id == world.bot_user.id
        assert guild.me.guild_permissions.value == DEFAULT_BOT_PERMISSIONS | DEFAULT_EVERYONE_PERMISSIONS
        assert bot.application_id == world.bot_user.application_id
        assert sb.gateway.handshakes[0]["compress"] == "zlib-stream"
        assert {c["name"] for c in sb.commands_for(world.bot_user)} == {"similar", "catalog", "slow"}
    assert sb.violations == []


async def test_on_message_reply_with_embed_and_png_is_recorded_and_dispatched_back(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        msg = await sb.post_message(world.channel, world.alice, "!echo", attachments=[("shirt.jpg", JPEG, "image/jpeg")])
        reply = await sb.wait_for_bot_message(lambda m: m.reference_id == msg.id)
        assert bot.observed["echo_read"] == JPEG  # Attachment.read() went through the sandbox CDN
        assert reply.content == f"got {len(JPEG)} bytes" and reply.type == 19
        assert [a.filename for a in reply.attachments] == ["echo.png"]
        png = reply.attachments[0]
        assert png.content_type == "image/png" and png.payload()["width"] == 3
        assert reply.embeds[0]["title"] == "echo" and reply.embeds[0]["description"] == "shirt.jpg"
        assert reply.embeds[0]["thumbnail"]["url"] == png.url  # attachment:// resolved like Discord
        assert await fetch(png.url) == (200, PNG)
        own = await bot.wait_seen(lambda m: m.id == reply.id)  # Discord echoes the bot's own message
        assert own.author == bot.user and own.reference is not None and own.reference.message_id == msg.id
        assert own.attachments[0].url == png.url
    assert sb.violations == []


async def test_slash_command_with_attachment_defers_then_follows_up(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        with pytest.raises(ValueError, match="out of range"):  # Range[int, 1, 10] reached the schema
            await sb.invoke_slash(
                world.guild,
                world.channel,
                world.alice,
                "similar",
                {"k": 11},
                attachments={"image": ("a.jpg", JPEG, "image/jpeg")},
            )
        inter = await sb.invoke_slash(
            world.guild, world.channel, world.alice, "similar", {"k": 4}, attachments={"image": ("shirt.jpg", JPEG, "image/jpeg")}
        )
        await inter.wait_done(timeout=10)
        assert inter.callback_type == 5 and inter.callback_delay is not None and inter.callback_delay < 3
        assert bot.observed["similar"] == {"bytes": JPEG, "filename": "shirt.jpg", "content_type": "image/jpeg", "k": 4}
        original = inter.original
        assert original is not None and not original.loading and original.type == 20
        assert inter.followups == []  # the first followup after a deferral replaces the "thinking" message
        assert original.embeds[0]["title"] == "4 matches"
        assert original.embeds[0]["description"] == f"{len(JPEG)} bytes"
        assert original.embeds[0]["image"]["url"] == original.attachments[0].url
        assert inter.files == {"matches.png": PNG}
        assert await fetch(original.attachments[0].url) == (200, PNG)
    assert sb.violations == []  # accepted, but deprecated: edit_original_response is the documented way
    assert [d.kind for d in sb.deprecations] == ["followup_finishes_deferral"]


async def test_subcommand_group_options_and_permissions(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        add = await sb.invoke_slash(
            world.guild,
            world.channel,
            world.alice,
            "catalog add",
            {"name": "Red hat", "category": world.channel, "role": world.mods, "price": 9.5},
        )
        await add.wait_done()
        assert add.callback_type == 4 and add.original is not None
        assert add.original.content == "added Red hat to #photos for @mods at 9.50 (manage_guild=True)"
        assert bot.observed["app_permissions"].value == DEFAULT_BOT_PERMISSIONS | DEFAULT_EVERYONE_PERMISSIONS
        reset = await sb.invoke_slash(world.guild, world.channel, world.owner, "catalog admin reset", {"confirm": True})
        await reset.wait_done()
        assert reset.original is not None and reset.original.ephemeral
        assert reset.original.content == "reset=True by owner admin=True"  # the owner has every permission
        with pytest.raises(CommandNotAvailable):  # bob lacks the command's default_member_permissions
            await sb.invoke_slash(
                world.guild,
                world.channel,
                world.bob,
                "catalog add",
                {"name": "x", "category": world.channel, "role": world.mods, "price": 1.0},
            )
        await bot.wait_seen(lambda m: m.id == add.original.id)  # type: ignore[union-attr]
        assert all(m.id != reset.original.id for m in bot.seen)  # ephemeral replies are not dispatched
    assert sb.violations == []


async def test_late_and_repeated_acknowledgements_are_flagged(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        late = await sb.invoke_slash(world.guild, world.channel, world.alice, "slow")
        await late.wait_done(timeout=8)
        assert late.failed is not None and "too late" in late.failed and late.original is None
        [violation] = sb.violations_of("late_interaction_ack")
        assert "slow" in violation.detail
        await sb.wait_until(lambda: bot.command_errors, 5, "the bot to see its failed response")
        error = bot.command_errors[0]
        assert isinstance(error, app_commands.CommandInvokeError)
        assert isinstance(error.original, discord.NotFound) and error.original.code == 10062

        ok = await sb.invoke_slash(
            world.guild,
            world.channel,
            world.alice,
            "catalog add",
            {"name": "x", "category": world.channel, "role": world.mods, "price": 1.0},
        )
        await ok.wait_done()
        url = f"{sb.api_url}/interactions/{ok.id}/{ok.token}/callback"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == 40060
    assert [v.kind for v in sb.violations] == ["late_interaction_ack", "interaction_already_acknowledged"]


@pytest.mark.parametrize("sandbox", [{"upload_limit": 256 * 1024}], indirect=True)  # small: cheap to send
async def test_limits_are_enforced_and_recorded(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    bot.too_big = sb.upload_limit + 1
    async with running(bot, world.bot_user.token):
        await sb.post_message(world.channel, world.alice, "!limits")
        await sb.wait_for_bot_message(lambda m: m.content == "limits done")
    errors = bot.send_errors
    assert [(e.status, e.code) for e in errors] == [(400, 50035), (400, 50035), (400, 50035), (413, 40005)]
    assert "embeds.0.title" in errors[0].text and "256" in errors[0].text
    assert "6000" in errors[1].text
    assert "content" in errors[2].text and "2000" in errors[2].text
    assert [v.kind for v in sb.violations] == ["invalid_form_body"] * 3 + ["payload_too_large"]
    assert [m.content for m in sb.bot_messages] == ["limits done"]


@pytest.mark.parametrize("sandbox", [{"heartbeat_interval": 0.5, "heartbeat_grace": 1.0}], indirect=True)
async def test_blocked_event_loop_is_flagged_as_missed_heartbeat(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        await sb.post_message(world.channel, world.alice, "!block")
        await sb.wait_for_bot_message(lambda m: m.content == "woke")
        await sb.wait_until(lambda: sb.violations_of("missed_heartbeat"), 5, "a missed heartbeat")
    [missed] = sb.violations_of("missed_heartbeat")
    assert missed.detail.startswith("missed heartbeat: ") and "s since last" in missed.detail
    assert sb.max_heartbeat_gap >= 2.5


@pytest.mark.parametrize("sandbox", [{"heartbeat_interval": 0.5, "heartbeat_grace": 1.0}], indirect=True)
async def test_well_behaved_bot_keeps_heartbeating(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    async with running(bot, world.bot_user.token):
        await sb.post_message(world.channel, world.alice, "!nap")
        await sb.wait_for_bot_message(lambda m: m.content == "rested")
        assert sb.max_heartbeat_gap < 1.5
        assert len(sb.gateway.heartbeat_gaps) >= 4  # the watchdog really was watching
    assert sb.violations == []


async def test_reconnect_resumes_the_session_and_replays_events(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot()
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    async with running(bot, world.bot_user.token):
        await sb.reconnect_all()
        msg = await sb.post_message(world.channel, world.alice, "while reconnecting")
        await asyncio.wait_for(resumed.wait(), 10)
        await bot.wait_seen(lambda m: m.id == msg.id)
        assert [kind for _, kind in sb.gateway.logins] == ["identify", "resume"]
        assert sb.gateway.handshakes[-1]["path"] == "/resume"  # READY's resume_gateway_url was used
    assert sb.violations == []


async def test_message_content_intent_and_unknown_routes(world: World) -> None:
    sb, bot = world.sandbox, SandboxTestBot(message_content=False)
    async with running(bot, world.bot_user.token):
        hidden = await sb.post_message(world.channel, world.alice, "secret")
        mention = await sb.post_message(world.channel, world.alice, f"{world.bot_user.mention} hi")
        await bot.wait_seen(lambda m: m.id == mention.id)
        assert next(m for m in bot.seen if m.id == hidden.id).content == ""  # no MESSAGE_CONTENT intent
        assert bot.observed["contents"] == [mention.content]
        with pytest.raises(discord.NotFound):
            await bot.http.request(discord.http.Route("GET", "/guilds/{guild_id}/audit-logs", guild_id=world.guild.id))
    assert sb.unknown_routes == [f"GET /guilds/{world.guild.id}/audit-logs"]
    assert [v.kind for v in sb.violations] == ["unknown_route"]


def test_permission_computation_matches_discord() -> None:
    sb = DiscordSandbox()
    assert Perm.ALL == discord.Permissions.all().value
    owner, admin_user, user = sb.create_user("o"), sb.create_user("a"), sb.create_user("u")
    guild = sb.create_guild("G", owner=owner)
    admins = sb.create_role(guild, "admins", permissions=Perm.ADMINISTRATOR)
    mods = sb.create_role(guild, "mods", permissions=Perm.MANAGE_GUILD)
    sb.add_member(guild, admin_user, roles=[admins])
    member = sb.add_member(guild, user, roles=[mods])
    assert base_permissions(guild, guild.members[owner.id]) == Perm.ALL
    assert base_permissions(guild, guild.members[admin_user.id]) == Perm.ALL
    assert base_permissions(guild, member) == DEFAULT_EVERYONE_PERMISSIONS | Perm.MANAGE_GUILD
    quiet = sb.create_text_channel(
        guild, "quiet", overwrites={guild.everyone: (0, Perm.SEND_MESSAGES), mods: (Perm.SEND_MESSAGES, 0)}
    )
    hidden = sb.create_text_channel(guild, "hidden", overwrites={guild.everyone: (0, Perm.VIEW_CHANNEL)})
    assert channel_permissions(guild, member, quiet) & Perm.SEND_MESSAGES
    assert channel_permissions(guild, member, hidden) == 0
    assert channel_permissions(guild, guild.members[admin_user.id], hidden) == Perm.ALL
