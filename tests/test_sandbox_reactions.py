"""Reactions in the sandbox, checked against a real discord.py bot: MESSAGE_REACTION_ADD / _REMOVE with
Discord's fields, only to bots with the GUILD_MESSAGE_REACTIONS intent; Read Message History to react at
all, Add Reactions only for an emoji new on the message (for members and for the bot's own
``PUT .../reactions/{emoji}/@me``); at most 20 emojis; a repeated add or a removal of nothing is silent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest
from discord.ext import commands
from test_sandbox import World, running

from bot.sandbox import DiscordSandbox, Perm

pytestmark = pytest.mark.timeout(60)

THUMBS_UP, THUMBS_DOWN = "👍", "👎"


class ReactionBot(commands.Bot):
    """Records every raw reaction event it gets."""

    def __init__(self, *, reactions: bool = True) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.message_content = True
        intents.guild_reactions = reactions
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1, help_command=None)
        self.events: list[discord.RawReactionActionEvent] = []
        self.changed = asyncio.Event()

    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_events(self, n: int, timeout: float = 5.0) -> list[discord.RawReactionActionEvent]:
        async def enough() -> None:
            while len(self.events) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.events


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """Guild 'Shop A' with #photos; alice has the 'mods' role (Manage Server), bob is a plain member."""
    sb = DiscordSandbox(heartbeat_interval=1.0)
    await sb.start()
    sb.configure_discord()
    try:
        bot_user = sb.create_bot_user("lookalike-test")
        owner = sb.create_user("owner")
        guild = sb.create_guild("Shop A", owner=owner)
        channel = sb.create_text_channel(guild, "photos")
        mods = sb.create_role(guild, "mods", permissions=Perm.MANAGE_GUILD)
        alice, bob = sb.create_user("alice"), sb.create_user("bob")
        sb.add_member(guild, alice, roles=[mods])
        sb.add_member(guild, bob)
        yield World(sb, bot_user, guild, channel, mods, owner, alice, bob)
    finally:
        await sb.stop()


async def settle(sb: DiscordSandbox) -> None:
    """Give the gateway time to deliver anything it would send."""
    await asyncio.sleep(0.3)


async def test_member_reactions_reach_the_bot_with_discords_fields(world: World) -> None:
    sb, bot = world.sandbox, ReactionBot()
    async with running(bot, world.bot_user.token):
        msg = await sb.post_message(world.channel, world.owner, "a red shirt")
        assert await sb.react(msg, world.bob, THUMBS_UP)
        assert not await sb.react(msg, world.bob, THUMBS_UP)  # already there: nothing happens
        assert await sb.react(msg, world.alice, THUMBS_UP)
        assert await sb.unreact(msg, world.bob, THUMBS_UP)
        assert not await sb.unreact(msg, world.bob, THUMBS_DOWN)  # never added: nothing happens
        events = await bot.wait_events(3)
        await settle(sb)
        assert [(e.event_type, e.user_id) for e in bot.events] == [
            ("REACTION_ADD", world.bob.id),
            ("REACTION_ADD", world.alice.id),
            ("REACTION_REMOVE", world.bob.id),
        ]
        first, _, removed = events
        assert (first.message_id, first.channel_id, first.guild_id) == (msg.id, world.channel.id, world.guild.id)
        assert str(first.emoji) == THUMBS_UP and first.emoji.id is None and first.emoji.is_unicode_emoji()
        assert first.member is not None and first.member.id == world.bob.id  # the reacting member, on ADD only
        assert first.message_author_id == world.owner.id
        assert first.burst is False and first.type == discord.ReactionType.normal
        assert removed.member is None and removed.message_author_id is None and str(removed.emoji) == THUMBS_UP
        assert msg.reactions == {THUMBS_UP: {world.alice.id}}
        fetched = await bot.get_partial_messageable(world.channel.id).fetch_message(msg.id)
        assert [(str(r.emoji), r.count, r.me) for r in fetched.reactions] == [(THUMBS_UP, 1, False)]
    assert sb.violations == []


async def test_reactions_need_the_intent(world: World) -> None:
    sb, bot = world.sandbox, ReactionBot(reactions=False)
    async with running(bot, world.bot_user.token):
        msg = await sb.post_message(world.channel, world.owner, "no reactions intent")
        await sb.react(msg, world.bob, THUMBS_UP)
        await sb.unreact(msg, world.bob, THUMBS_UP)
        await settle(sb)
        assert bot.events == []
    assert sb.violations == []


async def test_permissions_of_members_who_react(world: World) -> None:
    sb = world.sandbox
    msg = await sb.post_message(world.channel, world.owner, "rules")
    sb.set_overwrite(world.channel, world.guild.everyone, deny=Perm.ADD_REACTIONS)
    with pytest.raises(PermissionError, match="ADD_REACTIONS"):
        await sb.react(msg, world.bob, THUMBS_UP)  # a new emoji needs Add Reactions ...
    assert await sb.react(msg, world.owner, THUMBS_UP)  # (the owner has every permission)
    assert await sb.react(msg, world.bob, THUMBS_UP)  # ... joining an existing one does not
    sb.set_overwrite(world.channel, world.bob, deny=Perm.READ_MESSAGE_HISTORY)
    with pytest.raises(PermissionError, match="READ_MESSAGE_HISTORY"):
        await sb.react(msg, world.bob, THUMBS_DOWN)
    outsider = sb.create_user("outsider")
    with pytest.raises(PermissionError, match="cannot view"):
        await sb.react(msg, outsider, THUMBS_UP)
    for n in range(19):
        await sb.react(msg, world.owner, chr(0x1F600 + n))
    with pytest.raises(PermissionError, match="Maximum number of reactions"):
        await sb.react(msg, world.owner, "🎉")  # 20 different emojis at most
    await sb.delete_message(msg)
    with pytest.raises(PermissionError, match="Unknown Message"):
        await sb.react(msg, world.owner, THUMBS_UP)


async def test_the_bots_own_reactions_follow_the_same_rules(world: World) -> None:
    sb, bot = world.sandbox, ReactionBot()
    async with running(bot, world.bot_user.token):
        msg = await sb.post_message(world.channel, world.owner, "react to me")
        channel = bot.get_partial_messageable(world.channel.id)
        await channel.get_partial_message(msg.id).add_reaction(THUMBS_UP)  # URL-encoded by discord.py
        assert msg.reactions == {THUMBS_UP: {world.bot_user.id}}
        [own] = await bot.wait_events(1)  # Discord tells the bot about its own reaction too
        assert own.user_id == world.bot_user.id and own.member is not None and own.member.bot
        fetched = await channel.fetch_message(msg.id)
        assert [(str(r.emoji), r.me) for r in fetched.reactions] == [(THUMBS_UP, True)]

        sb.revoke_permissions(world.guild, world.bot_user, Perm.ADD_REACTIONS, channel=world.channel)
        with pytest.raises(discord.Forbidden) as refused:
            await channel.get_partial_message(msg.id).add_reaction(THUMBS_DOWN)  # new emoji: refused
        assert refused.value.code == 50013
        await sb.react(msg, world.bob, "🔥")
        await channel.get_partial_message(msg.id).add_reaction("🔥")  # existing emoji: allowed
        await channel.get_partial_message(msg.id).remove_reaction(THUMBS_UP, discord.Object(world.bot_user.id))
        assert msg.reactions == {"🔥": {world.bob.id, world.bot_user.id}}
        await bot.wait_events(4)
    assert [v.kind for v in sb.violations] == ["missing_permissions"]


async def test_a_bot_lists_who_reacted_page_by_page(world: World) -> None:
    sb, bot = world.sandbox, ReactionBot()
    async with running(bot, world.bot_user.token):
        msg = await sb.post_message(world.channel, world.owner, "who likes it?")
        for user in (world.bob, world.owner, world.alice):
            await sb.react(msg, user, THUMBS_UP)
        await sb.react(msg, world.bob, THUMBS_DOWN)
        [up, down] = (await bot.get_partial_messageable(world.channel.id).fetch_message(msg.id)).reactions
        by_id = sorted(u.id for u in (world.bob, world.owner, world.alice))
        assert sorted([u.id async for u in up.users()]) == by_id  # (discord.py yields each page backwards)
        assert [u.id async for u in up.users(limit=1, after=discord.Object(by_id[0]))] == by_id[1:2]  # pages go by id
        assert [u.id async for u in down.users()] == [world.bob.id]
        assert [u.id async for u in up.users(after=discord.Object(by_id[-1]))] == []
        with pytest.raises(discord.HTTPException) as refused:  # Discord refuses a limit above 100, it does not clamp
            await bot.http.get_reaction_users(world.channel.id, msg.id, THUMBS_UP, 101)
        assert refused.value.status == 400

        sb.set_overwrite(world.channel, world.bot_user, deny=Perm.READ_MESSAGE_HISTORY)
        with pytest.raises(discord.Forbidden):
            [u async for u in up.users()]
        sb.set_overwrite(world.channel, world.bot_user, allow=Perm.READ_MESSAGE_HISTORY)
        await sb.delete_message(msg)
        with pytest.raises(discord.NotFound):
            [u async for u in up.users()]
    assert [v.kind for v in sb.violations] == ["invalid_form_body", "missing_permissions", "unknown_message"]  # noted
