"""Build the bot, load its cogs, run it and shut it down cleanly.

bot = create_bot(recommender, settings)      # tests and the demo drive this directly
await run(settings, token)                   # `lookalike run`: open, start, stop on SIGTERM/SIGINT
await run_from_cli(args)                     # `lookalike run` (bot/cli.py): token from DISCORD_TOKEN

Sharding is discord.py's own: `Sharding(count, ids)` makes the bot an AutoShardedBot running those
shards of `count` (several shards in one process; several processes, each with its own ids, for
one bot). Discord sends a process only its shards' guilds, and the recommender loads a catalogue
on its first query, so a process holds the catalogues of its guilds plus the shared default one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from recommender.config import Settings, load_settings
from recommender.engine import Recommender
from recommender.errors import BadOption, RecommenderError

from .cogs.utils.attachments import UrlFetcher, fetch_session
from .cogs.utils.cooldown import UserCooldown
from .cogs.utils.errors import describe, tell
from .cogs.utils.guilds import GuildConfigs
from .cogs.utils.options import BotOptions
from .cogs.utils.votes import Linking
from .cogs.utils.work import ShuttingDown, WorkTracker

log = logging.getLogger(__name__)

HEALTH_STAMP_S = 30.0
EXTENSIONS = (
    "bot.cogs.photos",
    "bot.cogs.similar",
    "bot.cogs.catalog",
    "bot.cogs.config",
    "bot.cogs.feeds",
    "bot.cogs.feedback",
)


def intents() -> discord.Intents:
    """Guilds, guild messages and their reactions (members' 👍/👎 votes; not privileged), plus the
    privileged Message Content intent (to see attachments)."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_messages = True
    i.guild_reactions = True
    i.message_content = True
    return i


@dataclass(frozen=True)
class Sharding:
    """This process runs shards `ids` (None: all of them) of a bot with `count` shards in all."""

    count: int
    ids: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, count: str | None, ids: str | None, env: Mapping[str, str] | None = None) -> Sharding | None:
        """From --shard-count / --shard-ids, else LOOKALIKE_SHARD_COUNT / LOOKALIKE_SHARD_IDS; None: unsharded.
        Raises BadOption, in words, for anything Discord would refuse."""
        env = os.environ if env is None else env
        count = count if count is not None else env.get("LOOKALIKE_SHARD_COUNT") or None
        ids = ids if ids is not None else env.get("LOOKALIKE_SHARD_IDS") or None
        if count is None:
            if ids is not None:
                raise BadOption("--shard-ids needs --shard-count: the number of shards the whole bot runs (all processes).")
            return None
        try:
            total = int(count)
        except ValueError:
            raise BadOption(f"--shard-count must be a whole number of shards, not {count!r}.") from None
        if total < 1:
            raise BadOption(f"--shard-count must be at least 1, not {total}.")
        if ids is None:
            return cls(total)
        try:
            chosen = tuple(int(x) for x in ids.replace(",", " ").split())
        except ValueError:
            raise BadOption(f"--shard-ids takes shard numbers separated by commas (like 0,1), not {ids!r}.") from None
        if not chosen:
            raise BadOption("--shard-ids names no shard; give shard numbers like 0,1 (or leave it out for all).")
        outside = [i for i in chosen if not 0 <= i < total]
        if outside:
            raise BadOption(f"shard {outside[0]} does not exist: with --shard-count {total} the shards are 0 to {total - 1}.")
        if len(set(chosen)) != len(chosen):
            raise BadOption(f"--shard-ids names a shard twice: {ids}.")
        return cls(total, tuple(sorted(chosen)))

    def describe(self) -> str:
        ids = self.ids if self.ids is not None else tuple(range(self.count))
        return f"shard{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} of {self.count}"


class LookalikeTree(app_commands.CommandTree["LookalikeBot"]):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every command runs in the task that calls this: track it so shutdown can wait for it."""
        bot = self.client
        if not bot.work.accepting:
            await tell(interaction, "I'm restarting; please try again in a minute.")
            return False
        task = asyncio.current_task()
        if task is not None:
            bot.work.adopt(task)
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        name = interaction.command.qualified_name if interaction.command else "?"
        await tell(interaction, describe(error, context=f"in /{name} for {interaction.user} in guild {interaction.guild_id}"))


class LookalikeBot(commands.Bot):
    """The bot: holds its collaborators (recommender, settings, options); no module state.

    It has slash commands only. discord.py's Bot wants a prefix, so it gets `when_mentioned`, but
    `on_message` never processes prefix commands: "@lookalike thanks" is just a message."""

    def __init__(self, rec: Recommender, settings: Settings, options: BotOptions, **client_kwargs: Any) -> None:
        # A text-only bot: discord.py's "voice will NOT be supported" start-up warnings don't apply.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            tree_cls=LookalikeTree,
            allowed_mentions=discord.AllowedMentions.none(),
            **client_kwargs,
        )
        self.rec = rec
        self.settings = settings
        self.options = options
        self.cooldown = UserCooldown(options.cooldown_rate, options.cooldown_per_s)
        self.guild_configs = GuildConfigs(rec)
        self.work = WorkTracker()
        self.downloads = asyncio.Semaphore(options.fetch_concurrency)  # attachments held at once: 20 MB each
        self.linking = Linking()  # answers sent, not yet linked to their photos: votes on them wait
        self.web: aiohttp.ClientSession | None = None
        self.fetcher: UrlFetcher | None = None
        self._health: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        self.web = fetch_session(self.options.fetch_private_urls)
        self.fetcher = UrlFetcher(
            self.web,
            max_bytes=self.settings.max_image_bytes,
            timeout_s=self.options.fetch_timeout_s,
            concurrency=self.options.fetch_concurrency,
            allow_private=self.options.fetch_private_urls,
        )
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self.options.sync_commands and self.syncs_commands():
            await self.sync_commands()
        if self.options.health_file:
            self._health = asyncio.create_task(self._stamp_health(Path(self.options.health_file)), name="health-stamp")

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands (a mention would raise CommandNotFound); cog listeners still run."""

    def syncs_commands(self) -> bool:
        """Whether this process syncs the slash commands (of several, only the one with shard 0)."""
        return True

    def gateway_open(self) -> bool:
        """Connected right now. `is_ready()` stays True through a reconnect's backoff, so look at
        the gateway socket itself (discord.py's DiscordWebSocket.open: its socket is not closed)."""
        ws = self.ws
        return ws is not None and bool(getattr(ws, "open", False)) and not ws.is_ratelimited()

    async def _stamp_health(self, path: Path) -> None:
        """Touch the health file every 30 s while connected: the loop runs and the gateway is up."""
        await self.wait_until_ready()
        while not self.is_closed():
            if self.is_ready() and self.gateway_open():
                try:
                    await asyncio.to_thread(path.touch)
                except OSError as e:
                    log.warning("cannot stamp health file %s: %s", path, e)
            await asyncio.sleep(HEALTH_STAMP_S)

    async def sync_commands(self) -> None:
        if self.options.sync_guilds:
            for gid in self.options.sync_guilds:
                guild = discord.Object(gid)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), gid)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guilds", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def close(self) -> None:
        """Stop taking new work, let replies in flight finish (or cancel them), then disconnect."""
        await self.work.drain(self.options.shutdown_grace_s)
        if self._health is not None:
            self._health.cancel()
            await asyncio.wait([self._health])  # wait for it to end, without re-raising its cancellation
        await super().close()
        if self.web is not None and not self.web.closed:
            await self.web.close()


class ShardedLookalikeBot(LookalikeBot, commands.AutoShardedBot):
    """The same bot on discord.py's AutoShardedBot: one gateway connection per shard it runs."""

    def syncs_commands(self) -> bool:
        return self.shard_ids is None or 0 in self.shard_ids

    def gateway_open(self) -> bool:
        """Every shard of this process is connected (and not rate limited)."""
        shards = self.shards.values()
        return bool(shards) and all(not s.is_closed() and not s.is_ws_ratelimited() for s in shards)


def create_bot(
    recommender: Recommender,
    settings: Settings,
    options: BotOptions | None = None,
    sharding: Sharding | None = None,
    **client_kwargs: Any,
) -> LookalikeBot:
    """A ready-to-start bot over an open recommender (sharded when `sharding` is given). Extra keyword
    arguments go to discord.py's Client."""
    options = options or BotOptions.from_settings(settings)
    if sharding is None:
        return LookalikeBot(recommender, settings, options, **client_kwargs)
    ids = list(sharding.ids) if sharding.ids is not None else None
    return ShardedLookalikeBot(recommender, settings, options, shard_count=sharding.count, shard_ids=ids, **client_kwargs)


def settle_heap() -> None:
    """Move what start-up allocated (discord.py, torch, the model) out of the garbage collector's
    reach. Otherwise a full collection walks all of it while holding the GIL: one measured 137 ms,
    triggered by a worker thread loading a catalogue, and the event loop waited for it."""
    gc.collect()
    gc.freeze()


async def run(settings: Settings, token: str, options: BotOptions | None = None, sharding: Sharding | None = None) -> None:
    """Open the recommender, run the bot until SIGTERM/SIGINT (or a fatal gateway error), close everything."""
    if sharding is not None:
        log.info("running %s", sharding.describe())
    rec = await Recommender.open(settings)
    settle_heap()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        async with create_bot(rec, settings, options, sharding) as bot:
            runner = asyncio.create_task(bot.start(token), name="discord-bot")
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("shutting down")
                await bot.close()
            stopper.cancel()
            await runner
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await rec.close()


async def run_from_cli(args: argparse.Namespace) -> int:
    """`lookalike run`, after argument parsing and logging set-up: returns the exit code.
    DISCORD_TOKEN missing or unusable settings: 2; Discord refusing the token or the intents: 1."""
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        print(
            "DISCORD_TOKEN is not set. Create a bot in the Discord developer portal (see docs/BOT.md) "
            "and run: DISCORD_TOKEN=... lookalike run",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_settings(
            getattr(args, "config", None),
            db=getattr(args, "db", None),
            model=getattr(args, "model", None),
            weights=getattr(args, "weights", None),
            pooling=getattr(args, "pooling", None),
        )
        options = BotOptions.from_settings(settings)
        sharding = Sharding.parse(getattr(args, "shard_count", None), getattr(args, "shard_ids", None))
    except RecommenderError as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 2
    try:
        await run(settings, token, options, sharding)
    except discord.LoginFailure:
        print(
            "Discord refused the token in DISCORD_TOKEN. Copy it again from the developer portal (Bot > Reset Token).",
            file=sys.stderr,
        )
        return 1
    except discord.PrivilegedIntentsRequired:
        print(
            "Discord refused the connection: switch on the Message Content intent for this bot "
            "(developer portal > Bot > Privileged Gateway Intents), see docs/BOT.md.",
            file=sys.stderr,
        )
        return 1
    return 0


__all__ = ["LookalikeBot", "ShardedLookalikeBot", "Sharding", "create_bot", "run", "run_from_cli", "settle_heap", "ShuttingDown"]
