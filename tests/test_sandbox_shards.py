"""Sharding in the sandbox, checked against discord.py's own AutoShardedClient: IDENTIFY's
``shard``, events routed by ``(guild_id >> 22) % num_shards`` (direct messages to shard 0 only),
READY listing only the shard's guilds, ``GET /gateway/bot`` with ``shards`` and
``session_start_limit`` and the pace of IDENTIFYs, as Discord documents them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.sandbox import BotUser, DiscordSandbox, shard_of

pytestmark = pytest.mark.timeout(60)


@app_commands.command(description="Which shard answers")
async def where(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(f"shard {interaction.guild.shard_id if interaction.guild else None}")


class ShardBot(commands.AutoShardedBot):
    """A minimal sharded client: records (shard id, guild id or None, content) of what it sees."""

    def __init__(self, **shards: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1, help_command=None, **shards)
        self.seen: list[tuple[int | None, int | None, str]] = []
        self.tree.add_command(where)

    async def setup_hook(self) -> None:
        if self.shard_ids is None or 0 in self.shard_ids:  # one process syncs, as a sharded bot should
            await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        shard = message.guild.shard_id if message.guild else None
        self.seen.append((shard, message.guild.id if message.guild else None, message.content))


@asynccontextmanager
async def running(bot: commands.AutoShardedBot, token: str, timeout: float = 20.0) -> AsyncIterator[Any]:
    task = asyncio.create_task(bot.start(token))
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            raise RuntimeError("bot stopped before READY")
        assert ready in done, "bot did not become ready"
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def sandbox() -> AsyncIterator[DiscordSandbox]:
    sb = DiscordSandbox(heartbeat_interval=1.0, identify_interval=5.0)  # Discord's pace: one IDENTIFY per 5 s
    await sb.start()
    sb.configure_discord()
    try:
        yield sb
    finally:
        await sb.stop()


async def gateway_bot(sb: DiscordSandbox, bot: BotUser) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{sb.api_url}/gateway/bot", headers={"Authorization": f"Bot {bot.token}"}) as r,
    ):
        assert r.status == 200
        return await r.json()


def test_guilds_can_be_placed_on_a_shard() -> None:
    sb = DiscordSandbox()
    placed = [(sb.create_guild(f"g{i}", shard=(i % 3, 3)), i % 3) for i in range(9)]
    assert all(shard_of(g.id, 3) == s for g, s in placed)
    ids = [g.id for g, _ in placed] + [sb.create_user("later").id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # still increasing snowflakes


async def test_gateway_bot_recommends_shards_and_autosharding_follows(sandbox: DiscordSandbox) -> None:
    sb = sandbox
    bot_user = sb.create_bot_user("sharded")
    guilds = [sb.create_guild(f"shop {i}", shard=(i % 2, 2)) for i in range(4)]
    first = await gateway_bot(sb, bot_user)
    assert first["url"] == sb.gateway_url and first["shards"] == 1  # 4 guilds: one shard is plenty
    assert first["session_start_limit"]["total"] == first["session_start_limit"]["remaining"] == 1000
    assert 0 < first["session_start_limit"]["reset_after"] <= 86_400_000
    assert first["session_start_limit"]["max_concurrency"] == 1

    sb.recommended_shards = 2  # as Discord would say for 2,000 guilds
    async with running(ShardBot(), bot_user.token) as bot:  # no shard_count: it asks GET /gateway/bot
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        limits = await bot.fetch_session_start_limits()
        assert (limits.total, limits.remaining) == (1000, 998)  # one IDENTIFY per shard
        assert {g.id: g.shard_id for g in bot.guilds} == {g.id: shard_of(g.id, 2) for g in guilds}
        shards = sorted(s.shard or (0, 0) for s in sb.gateway.sessions.values() if s.bot.id == bot_user.id)
        assert shards == [(0, 2), (1, 2)]
        assert sb.gateway.starts(bot_user).refused == []  # discord.py paces its own shards' IDENTIFYs
    assert not sb.violations


async def test_two_processes_each_get_only_their_shards_events(sandbox: DiscordSandbox) -> None:
    sb = sandbox
    bot_user = sb.create_bot_user("sharded")
    owner = sb.create_user("owner")
    g0 = sb.create_guild("on shard 0", owner=owner, shard=(0, 2))
    g1 = sb.create_guild("on shard 1", owner=owner, shard=(1, 2))
    c0, c1 = sb.create_text_channel(g0, "photos"), sb.create_text_channel(g1, "photos")
    alice = sb.create_user("alice")
    sb.add_member(g0, alice)
    sb.add_member(g1, alice)
    a, b = ShardBot(shard_count=2, shard_ids=[0]), ShardBot(shard_count=2, shard_ids=[1])
    async with running(a, bot_user.token), running(b, bot_user.token):
        # b IDENTIFYed right after a: told to wait (op 9), discord.py IDENTIFYs again 5 s later
        assert sb.gateway.starts(bot_user).refused == [1]
        # READY (and the GUILD_CREATEs after it) name only the shard's guilds
        assert [g.id for g in a.guilds] == [g0.id] and [g.id for g in b.guilds] == [g1.id]
        await sb.wait_for_commands(bot_user, "where")

        await sb.post_message(c0, alice, "hello zero")
        await sb.post_message(c1, alice, "hello one")
        dm = sb.dm_channel(bot_user, alice)
        await sb.post_message(dm, alice, "a direct message")
        await sb.wait_until(lambda: len(a.seen) == 2 and len(b.seen) == 1, 5, "messages routed")
        assert a.seen == [(0, g0.id, "hello zero"), (None, None, "a direct message")]  # DMs: shard 0 only
        assert b.seen == [(1, g1.id, "hello one")]

        # interactions go to the session of the guild's shard
        for guild, channel, shard in ((g0, c0, 0), (g1, c1, 1)):
            inter = await sb.invoke_slash(guild, channel, alice, "where")
            await inter.wait_done(timeout=5)
            assert inter.original is not None and inter.original.content == f"shard {shard}"

        # guild events: a new channel, and a guild the bot joins later
        late = sb.create_text_channel(g1, "late")
        g3 = sb.create_guild("joined later", owner=owner, shard=(1, 2))
        await sb.wait_until(lambda: b.get_channel(late.id) and b.get_guild(g3.id), 5, "guild events on shard 1")
        await asyncio.sleep(0.2)
        assert a.get_channel(late.id) is None and a.get_guild(g3.id) is None
    assert not sb.violations


async def identify(sb: DiscordSandbox, token: str, shard: list[int] | None) -> tuple[int | None, list[str]]:
    """A bare IDENTIFY: (close code, the events received before it closed or went quiet)."""
    events: list[str] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sb.gateway_url}?v=10&encoding=json") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        body: dict[str, Any] = {"token": token, "intents": 1 | 512, "properties": {}}
        if shard is not None:
            body["shard"] = shard
        await ws.send_str(json.dumps({"op": 2, "d": body}))
        while True:
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                return None, events
            if msg.type != aiohttp.WSMsgType.TEXT:
                return ws.close_code, events
            events.append(json.loads(msg.data)["t"])


async def test_invalid_shards_and_an_exhausted_session_start_limit_are_refused(sandbox: DiscordSandbox) -> None:
    sb = sandbox
    sb.identify_interval = 0.0
    bot_user = sb.create_bot_user("sharded")
    for bad in ([2, 2], [0, 0], [-1, 2], [1]):
        assert (await identify(sb, bot_user.token, bad))[0] == 4010
    sb.gateway.starts(bot_user).total = 2
    assert await identify(sb, bot_user.token, [0, 2]) == (None, ["READY"])
    assert (await gateway_bot(sb, bot_user))["session_start_limit"]["remaining"] == 1
    assert await identify(sb, bot_user.token, [1, 2]) == (None, ["READY"])
    assert (await identify(sb, bot_user.token, None))[0] == 4004  # Discord resets the token of a bot that runs out
    assert [v.kind for v in sb.violations] == ["session_start_limit"]
