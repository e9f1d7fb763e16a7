"""What the sandbox does to a real discord.py bot's messages, as Discord does it: Embed Links (a
channel message loses its embeds without it, and one left empty is refused with 50006, while
interaction responses keep theirs), the request record (which endpoint finished a deferral), only
EPHEMERAL on a deferral, the per-file upload limit with the request cap, and embed lengths measured
after trimming."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from test_sandbox import PNG, running

from bot.sandbox import BotUser, Channel, DiscordSandbox, Guild, Perm, User

pytestmark = pytest.mark.timeout(60)

CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"
EDIT_ORIGINAL = "PATCH /webhooks/{app_id}/{token}/messages/@original"
FOLLOWUP = "POST /webhooks/{app_id}/{token}"


def card() -> discord.Embed:
    return discord.Embed(title="Red shirt", description="92% alike")


@app_commands.command(description="Deferred, then finished by editing the original response")
async def look(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    interaction.client.observed["app_permissions"] = interaction.app_permissions  # type: ignore[attr-defined]
    embed = card().set_image(url="attachment://grid.png")
    await interaction.edit_original_response(embed=embed, attachments=[discord.File(io.BytesIO(PNG), "grid.png")])


@app_commands.command(description="Deferred, then finished the deprecated way")
async def old(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    await interaction.followup.send(embed=card())


@app_commands.command(description="Defers once with a flag Discord refuses there, then properly")
async def flags(interaction: discord.Interaction) -> None:
    route = discord.http.Route(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_id=interaction.id,
        interaction_token=interaction.token,
    )
    try:  # SUPPRESS_EMBEDS (1 << 2) with the deferral
        await interaction.client.http.request(route, json={"type": 5, "data": {"flags": 4}})
    except discord.HTTPException as exc:
        interaction.client.errors.append(exc)  # type: ignore[attr-defined]
    await interaction.response.defer(ephemeral=True)  # flags = EPHEMERAL: fine
    await interaction.edit_original_response(content="deferred")


class MessagesBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1, help_command=None)
        self.errors: list[discord.HTTPException] = []
        self.observed: dict[str, Any] = {}
        self.file_sizes: list[list[int]] = []
        for command in (look, old, flags):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def attempt(self, send: Any) -> Any:
        try:
            return await send
        except discord.HTTPException as exc:
            self.errors.append(exc)
            return None

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        channel = message.channel
        if message.content == "!embeds":
            await self.attempt(channel.send(embed=card()))  # embed only
            await self.attempt(channel.send("Red shirt - 92% alike", embed=card()))  # text + embed
            await self.attempt(channel.send("Red shirt - 92% alike", file=discord.File(io.BytesIO(PNG), "grid.png")))
            plain = await channel.send("plain")
            await self.attempt(plain.edit(content="", embed=card()))  # an edit that would leave nothing
        elif message.content == "!trim":
            await self.attempt(channel.send(embed=discord.Embed(title="  " + "t" * 256 + " \n", description="\t d  ")))
            await self.attempt(channel.send(embed=discord.Embed(title="t" * 257)))
        elif message.content == "!files":
            for sizes in self.file_sizes:
                files = [discord.File(io.BytesIO(bytes(n)), f"f{i}.bin") for i, n in enumerate(sizes)]
                await self.attempt(channel.send(f"{len(files)} files", files=files))
        else:
            return
        await channel.send(f"done {message.content}")


async def world(sb: DiscordSandbox) -> tuple[BotUser, Guild, Channel, User]:
    bot_user = sb.create_bot_user("lookalike-test")
    guild = sb.create_guild("Shop")
    channel = sb.create_text_channel(guild, "photos")
    alice = sb.create_user("alice")
    sb.add_member(guild, alice)
    return bot_user, guild, channel, alice


async def run_command(sb: DiscordSandbox, channel: Channel, user: User, text: str) -> None:
    """Post ``text`` as ``user`` and wait for the bot's (new) ``done`` message."""
    done = lambda: sum(1 for m in sb.bot_messages if m.content == f"done {text}")  # noqa: E731
    before = done()
    await sb.post_message(channel, user, text)
    await sb.wait_until(lambda: done() > before, 10, f"the bot to finish {text}")


async def test_without_embed_links_channel_messages_drop_embeds_and_embed_only_is_refused(sandbox: DiscordSandbox) -> None:
    sb, bot = sandbox, MessagesBot()
    bot_user, guild, channel, alice = await world(sb)
    async with running(bot, bot_user.token):
        sb.revoke_permissions(guild, bot_user, Perm.EMBED_LINKS, channel=channel)
        seen = bot.get_channel(channel.id)
        assert isinstance(seen, discord.TextChannel)
        await sb.wait_until(lambda: not seen.permissions_for(seen.guild.me).embed_links, 5, "CHANNEL_UPDATE in the bot")
        assert seen.permissions_for(seen.guild.me).send_messages  # only Embed Links went
        await run_command(sb, channel, alice, "!embeds")
        assert [(e.status, e.code, e.text) for e in bot.errors] == [(400, 50006, "Cannot send an empty message")] * 2
        texts = [m for m in sb.bot_messages if m.content == "Red shirt - 92% alike"]
        assert [(m.embeds, list(m.files)) for m in texts] == [([], []), ([], ["grid.png"])]  # embeds dropped, file kept
        assert [m.content for m in sb.bot_messages if m.content == "plain"] == ["plain"]  # the refused edit changed nothing
        kinds = [v.kind for v in sb.violations]
        assert kinds == ["empty_message", "embeds_dropped", "empty_message"]
        assert all("EMBED_LINKS" in v.detail for v in sb.violations)

        sb.set_overwrite(channel, bot_user)  # overwrite removed: Embed Links is back
        await sb.wait_until(lambda: seen.permissions_for(seen.guild.me).embed_links, 5, "CHANNEL_UPDATE in the bot")
        bot.errors.clear()
        await run_command(sb, channel, alice, "!embeds")
    assert bot.errors == [] and len(sb.violations) == 3
    assert [m.embeds[0]["title"] for m in sb.bot_messages if m.embeds] == ["Red shirt", "Red shirt", "Red shirt"]


async def test_interaction_responses_keep_embeds_and_the_request_record_names_the_endpoint(sandbox: DiscordSandbox) -> None:
    sb, bot = sandbox, MessagesBot()
    bot_user, guild, channel, alice = await world(sb)
    async with running(bot, bot_user.token):
        sb.revoke_permissions(guild, bot_user, Perm.EMBED_LINKS)  # guild-wide: @everyone and the bot's role
        assert not guild.everyone.permissions & Perm.EMBED_LINKS
        assert not sb.bot_role(guild, bot_user).permissions & Perm.EMBED_LINKS
        me = bot.get_guild(guild.id).me  # type: ignore[union-attr]
        await sb.wait_until(lambda: not me.guild_permissions.embed_links, 5, "GUILD_ROLE_UPDATE in the bot")

        inter = await (await sb.invoke_slash(guild, channel, alice, "look")).wait_done()
        assert not bot.observed["app_permissions"].embed_links  # the bot can see what it lacks
        assert inter.original is not None and inter.followups == []
        assert inter.original.embeds[0]["title"] == "Red shirt"  # interaction responses keep their embeds
        assert inter.original.embeds[0]["image"]["url"] == inter.original.attachments[0].url
        assert [r.endpoint for r in inter.requests] == [CALLBACK, EDIT_ORIGINAL]
        assert [r.status for r in inter.requests] == [200, 200]  # discord.py asks with_response=true
        assert inter.requests[1].path == f"/webhooks/{bot_user.application_id}/{inter.token}/messages/@original"
        assert sb.deprecations == []

        old_way = await (await sb.invoke_slash(guild, channel, alice, "old")).wait_done()
        assert [r.endpoint for r in old_way.requests] == [CALLBACK, FOLLOWUP]
        assert old_way.original is not None and old_way.original.embeds[0]["title"] == "Red shirt"
        [deprecated] = sb.deprecations
        assert deprecated.kind == "followup_finishes_deferral" and "@original" in deprecated.detail
    assert sb.violations == []
    assert {r.endpoint for r in sb.requests} >= {CALLBACK, EDIT_ORIGINAL, FOLLOWUP, "PUT /applications/{app_id}/commands"}


async def test_a_deferral_takes_only_the_ephemeral_flag(sandbox: DiscordSandbox) -> None:
    sb, bot = sandbox, MessagesBot()
    bot_user, guild, channel, alice = await world(sb)
    async with running(bot, bot_user.token):
        inter = await (await sb.invoke_slash(guild, channel, alice, "flags")).wait_done()
    [error] = bot.errors
    assert (error.status, error.code) == (400, 50035) and "data.flags" in error.text
    assert inter.original is not None and inter.original.ephemeral and inter.original.content == "deferred"
    assert [r.status for r in inter.requests] == [400, 200, 200]  # discord.py asks with_response=true
    assert [v.kind for v in sb.violations] == ["invalid_form_body"]


@pytest.mark.parametrize("sandbox", [{"upload_limit": 64 * 1024, "request_limit": 100 * 1024}], indirect=True)
async def test_the_upload_limit_is_per_file_with_a_cap_on_the_request(sandbox: DiscordSandbox) -> None:
    sb, bot = sandbox, MessagesBot()
    bot_user, guild, channel, alice = await world(sb)
    kib = 1024
    bot.file_sizes = [[60 * kib, 30 * kib], [64 * kib], [64 * kib + 1], [60 * kib, 50 * kib]]
    async with running(bot, bot_user.token):
        await run_command(sb, channel, alice, "!files")
    sent = [m for m in sb.bot_messages if m.content in ("1 files", "2 files")]
    assert [[a.size for a in m.attachments] for m in sent] == [[60 * kib, 30 * kib], [64 * kib]]  # 90 KiB together is fine
    assert [(e.status, e.code) for e in bot.errors] == [(413, 40005)] * 2
    details = [v.detail for v in sb.violations_of("payload_too_large")]
    assert details[0] == f"file 'f0.bin' is {64 * kib + 1} bytes, limit is {64 * kib} bytes"
    assert details[1].startswith("the request is ") and details[1].endswith(f"limit is {100 * kib} bytes")
    assert len(sb.violations) == 2


async def test_embed_lengths_are_measured_after_trimming(sandbox: DiscordSandbox) -> None:
    sb, bot = sandbox, MessagesBot()
    bot_user, guild, channel, alice = await world(sb)
    async with running(bot, bot_user.token):
        await run_command(sb, channel, alice, "!trim")
    [accepted] = [m for m in sb.bot_messages if m.embeds]
    assert accepted.embeds[0]["title"] == "t" * 256 and accepted.embeds[0]["description"] == "d"  # stored trimmed
    [error] = bot.errors
    assert (error.status, error.code) == (400, 50035) and "embeds.0.title" in error.text
    assert [v.kind for v in sb.violations] == ["invalid_form_body"]


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> Any:
    sb = DiscordSandbox(heartbeat_interval=1.0, **getattr(request, "param", {}))
    await sb.start()
    sb.configure_discord()
    try:
        yield sb
    finally:
        await sb.stop()
        await asyncio.sleep(0)
