"""/similar (by photo) and /similar-item (by catalogue item id): anyone can ask."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands
from discord.ext import commands

from .. import render
from .utils.attachments import read_attachment
from .utils.checks import query_cooldown

if TYPE_CHECKING:
    from recommender.engine import SimilarResult

    from bot.app import LookalikeBot

K = app_commands.Range[int, 1, 25]
Price = app_commands.Range[float, 0.0, 1e9]


class Similar(commands.Cog):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot

    async def _k(self, guild_id: int, k: int | None) -> int:
        return k or (await self.bot.guild_configs.get(guild_id)).k or self.bot.settings.k

    async def _send(self, interaction: discord.Interaction, query: render.Query) -> None:
        thumbs = await self.bot.rec.thumbnails([m.item.pk for m in query.result.matches])
        reply = await asyncio.to_thread(
            render.results_reply, [query], thumbs, currency=self.bot.options.currency, cell=self.bot.options.grid_cell,
        )
        await interaction.followup.send(**reply.kwargs())

    @app_commands.command(name="similar", description="Find the catalogue items that look most like a photo.")
    @app_commands.describe(
        image="The photo to match", k="How many items to show (1-25)", category="Only items of this category",
        min_price="Lowest price", max_price="Highest price",
    )
    @app_commands.guild_only()
    @query_cooldown()
    async def similar(
        self, interaction: discord.Interaction, image: discord.Attachment, k: Optional[K] = None,
        category: Optional[app_commands.Range[str, 1, 100]] = None, min_price: Optional[Price] = None,
        max_price: Optional[Price] = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        gid = interaction.guild_id or 0
        data = await read_attachment(image, self.bot.settings.max_image_bytes)
        result: SimilarResult = await self.bot.rec.similar(
            data, guild_id=gid, k=await self._k(gid, k), category=category, min_price=min_price, max_price=max_price,
        )
        await self._send(interaction, render.Query("", result))

    @app_commands.command(name="similar-item", description="Find the catalogue items that look most like a catalogue item.")
    @app_commands.describe(
        item="The item's id (see /catalog list)", k="How many items to show (1-25)", category="Only items of this category",
        min_price="Lowest price", max_price="Highest price",
    )
    @app_commands.guild_only()
    @query_cooldown()
    async def similar_item(
        self, interaction: discord.Interaction, item: app_commands.Range[str, 1, 200], k: Optional[K] = None,
        category: Optional[app_commands.Range[str, 1, 100]] = None, min_price: Optional[Price] = None,
        max_price: Optional[Price] = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        gid = interaction.guild_id or 0
        item = item.strip()
        found = await self.bot.rec.get_item(item, guild_id=gid)
        result = await self.bot.rec.similar(
            guild_id=gid, item_id=item, k=await self._k(gid, k), category=category, min_price=min_price,
            max_price=max_price, predict=False,
        )
        await self._send(interaction, render.Query(f"Items like {found.name} ({found.item_id})"[:200], result))


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Similar(bot))
