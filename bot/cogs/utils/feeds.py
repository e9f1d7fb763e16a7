"""The background task that syncs each guild's scheduled shop feed (`/config feed`).

Every `feed_check_s` (jittered) it asks the database which feeds of this process's guilds are due,
takes each one's lease (so of several processes sharing the database only one syncs a catalogue,
and a process that died mid-sync frees it when the lease runs out), runs the sync in a task of its
own, and schedules the next run `every` later, give or take 10% so that feeds configured together
drift apart. The schedule lives in the database, so it survives restarts. A failed sync is reported
to the channel `/config feed` was given in, once: the next report waits until a sync has worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from recommender.errors import RecommenderError, SyncInProgress
from recommender.records import FeedSchedule

from ... import render_feeds

if TYPE_CHECKING:
    from bot.app import LookalikeBot

log = logging.getLogger(__name__)

SCHEDULED_ACTOR = "feed:scheduled"
FORMATS = [  # the choices of /catalog sync and /config feed
    app_commands.Choice(name=n, value=v)
    for n, v in (("detect", "auto"), ("Google Merchant Center", "google"), ("Shopify", "shopify"), ("WooCommerce", "woocommerce"))
]
LEVELS = [app_commands.Choice(name=n, value=v) for n, v in (("first", "1"), ("second", "2"), ("last", "last"))]


class FeedScheduler:
    def __init__(self, bot: LookalikeBot, *, check_s: float, lease_s: float, rng: random.Random | None = None) -> None:
        self.bot = bot
        self.check_s = check_s
        self.lease_s = lease_s
        self.rng = rng or random.Random()
        self.runs = 0  # syncs finished (tests wait on it)
        self._task: asyncio.Task[None] | None = None
        self._running: dict[int, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="feed-scheduler")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        await self.bot.wait_until_ready()
        while not self.bot.is_closed():
            try:
                await self.tick()
            except Exception:  # the database away for a moment: try again next time
                log.exception("checking the scheduled feeds failed")
            await asyncio.sleep(self.check_s * self.rng.uniform(0.8, 1.2))

    async def tick(self) -> None:
        """Start the syncs that are due for this process's guilds."""
        guilds = [g.id for g in self.bot.guilds]
        if not guilds:
            return
        for feed in await self.bot.rec.due_feeds(guilds):
            if feed.guild_id in self._running or not await self.bot.rec.claim_feed(feed.guild_id, self.lease_s):
                continue
            task = asyncio.get_running_loop().create_task(self._run(feed), name=f"feed-sync-{feed.guild_id}")
            self._running[feed.guild_id] = task
            task.add_done_callback(self._forget(feed.guild_id))

    def _forget(self, guild_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._running.pop(guild_id, None)

        return forget

    async def _run(self, feed: FeedSchedule) -> None:
        rec, error, next_in = self.bot.rec, None, feed.every_s * self.rng.uniform(0.9, 1.1)
        try:
            summary = await rec.sync_feed(
                feed.url,
                guild_id=feed.guild_id,
                actor=SCHEDULED_ACTOR,
                fetcher=self.bot.fetcher,
                options=feed.options,
                leased=True,
                lease_s=self.lease_s,
            )
            s = summary.imported
            log.info(
                "feed of guild %s: %d added, %d updated, %d unchanged, %d failed, %d removed",
                feed.guild_id, s.added, s.updated, s.unchanged, len(s.failed), summary.removed,
            )  # fmt: skip
            if s.added or s.updated or summary.removed:
                rec.schedule_retrain(feed.guild_id)
        except asyncio.CancelledError:  # the bot is stopping: the next start runs it again
            with contextlib.suppress(Exception):
                await asyncio.shield(rec.release_feed(feed.guild_id))
            raise
        except SyncInProgress:  # a moderator's /catalog sync: this one comes back at the next check
            next_in = self.check_s
        except RecommenderError as e:
            error = str(e)
        except Exception as e:
            log.exception("scheduled sync of guild %s failed", feed.guild_id)
            error = f"unexpected error ({type(e).__name__}); the bot's log has the details"
        try:
            report = await rec.finish_feed(feed.guild_id, error, next_in)
        finally:
            self.runs += 1
        if report and error is not None:
            await self._report(feed, error)

    async def _report(self, feed: FeedSchedule, error: str) -> None:
        channel = self.bot.get_channel(feed.channel_id) if feed.channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("feed sync of guild %s failed (%s), and there is no channel to say so in", feed.guild_id, error)
            return
        try:
            await channel.send(render_feeds.feed_failed(feed, error), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as e:
            log.warning("could not report the failed feed sync of guild %s: %s", feed.guild_id, e)
