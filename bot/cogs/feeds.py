"""Scheduled shop feeds: the cog that runs the background scheduler (cogs/utils/feeds.py) while the
bot is up; it has no commands (`/config feed` configures, `/catalog sync` syncs by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

from .utils.feeds import FeedScheduler

if TYPE_CHECKING:
    from bot.app import LookalikeBot


class Feeds(commands.Cog):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot
        self.scheduler = FeedScheduler(bot, check_s=bot.options.feed_check_s, lease_s=bot.options.feed_lease_s)

    async def cog_load(self) -> None:
        self.scheduler.start()

    async def cog_unload(self) -> None:  # also when the bot closes
        await self.scheduler.close()


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Feeds(bot))
