"""/similar (by photo) and /similar-item (by catalogue item id): anyone can ask."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from recommender.config import MAX_K

from .utils.answers import remembers, resolve_k, similar_reply
from .utils.attachments import read_attachment
from .utils.checks import query_cooldown
from .utils.respond import respond
from .utils.votes import add_vote_buttons

if TYPE_CHECKING:
    from bot.app import LookalikeBot

log = logging.getLogger(__name__)

K = app_commands.Range[int, 1, MAX_K]
Price = app_commands.Range[float, 0.0, 1e9]
Category = app_commands.Range[str, 1, 100]


class Similar(commands.Cog):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot

    async def _answer(self, interaction: discord.Interaction, label: str, *, k: int | None, **query: Any) -> None:
        """Search with `query` (image or item_id, plus filters), then answer publicly in the deferred response.
        A photo is remembered (its features) and its answer invites 👍/👎 like a photo reply's."""
        gid = interaction.guild_id or 0
        photo = query.get("image") is not None and await remembers(self.bot, gid)
        search = self.bot.rec.similar(guild_id=gid, k=await resolve_k(self.bot, gid, k), remember=photo, **query)
        perms = interaction.app_permissions
        answer = await similar_reply(self.bot, [(label, label, search)], rich=perms.embed_links, raise_errors=True, votes=photo)
        sent = await respond(interaction, answer.reply)
        if sent is None or all(p is None for p in answer.photo_ids):
            return
        try:  # the answer is both the "photo message" and the reply: votes go on it (one before the link waits)
            with self.bot.linking.of(sent.id):
                await self.bot.rec.link_reply(
                    answer.photo_ids,
                    guild_id=gid,
                    channel_id=interaction.channel_id or 0,
                    photo_message_id=sent.id,
                    reply_message_id=sent.id,
                )
        except Exception:
            log.exception("could not link /similar answer %s to its photo", sent.id)
            return
        if answer.asks_for_votes:
            await add_vote_buttons(sent, perms)

    @app_commands.command(name="similar", description="Find the catalogue items that look most like a photo.")
    @app_commands.describe(
        image="The photo to match",
        k=f"How many items to show (1-{MAX_K})",
        category="Only items of this category",
        min_price="Lowest price",
        max_price="Highest price",
    )
    @app_commands.guild_only()
    @query_cooldown()
    async def similar(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        k: K | None = None,
        category: Category | None = None,
        min_price: Price | None = None,
        max_price: Price | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        async with self.bot.downloads:  # from the download until the photo is answered: its bytes are held
            data = await read_attachment(image, self.bot.settings.max_image_bytes)
            await self._answer(interaction, "", image=data, k=k, category=category, min_price=min_price, max_price=max_price)

    @app_commands.command(name="similar-item", description="Find the catalogue items that look most like a catalogue item.")
    @app_commands.describe(
        item="The item's id (see /catalog list)",
        k=f"How many items to show (1-{MAX_K})",
        category="Only items of this category",
        min_price="Lowest price",
        max_price="Highest price",
    )
    @app_commands.guild_only()
    @query_cooldown()
    async def similar_item(
        self,
        interaction: discord.Interaction,
        item: app_commands.Range[str, 1, 200],
        k: K | None = None,
        category: Category | None = None,
        min_price: Price | None = None,
        max_price: Price | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        item = item.strip()  # the recommender looks the item up (an unknown id is its sentence to tell)
        await self._answer(
            interaction,
            f"Items like {item}"[:200],
            item_id=item,
            k=k,
            category=category,
            min_price=min_price,
            max_price=max_price,
            predict=False,
        )


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Similar(bot))
