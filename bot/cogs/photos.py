"""Photo replies: a member posts a photo in a watched channel; the bot answers with the catalogue
items that look most like it and the predicted category."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from recommender.errors import RecommenderError
from recommender.records import SimilarResult

from .. import render
from .utils.attachments import looks_like_image, read_attachment
from .utils.errors import describe
from .utils.work import ShuttingDown

if TYPE_CHECKING:
    from bot.app import LookalikeBot

log = logging.getLogger(__name__)


class Photos(commands.Cog):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None or message.guild is None:
            return
        photos = [a for a in message.attachments if looks_like_image(a)]
        if not photos:
            return
        try:
            config = await self.bot.guild_configs.get(message.guild.id)
            channel = message.channel
            parent = getattr(channel, "parent_id", None)  # threads of a watched channel count too
            if channel.id not in config.watched and parent not in config.watched:
                return
            verdict = self.bot.cooldown.hit(message.author.id)
            if not verdict.allowed:
                if verdict.first_refusal:
                    await self._reply(
                        message, content=f"You're posting a little fast; I'll look at photos again in {verdict.retry_after:.0f}s."
                    )
                return
            async with self.bot.work.slot():
                await self.answer(message, photos, config.k or self.bot.settings.k)
        except ShuttingDown:
            return
        except Exception as e:  # never let one message take the listener down, never show a traceback
            text = describe(e, context=f"answering message {message.id} in guild {message.guild.id}")
            try:
                await self._reply(message, content=text)
            except Exception:
                log.exception("could not send the apology for message %s", message.id)

    async def answer(self, message: discord.Message, photos: list[discord.Attachment], k: int) -> None:
        limit = self.bot.options.max_attachments
        skipped = len(photos) - limit
        photos = photos[:limit]
        guild_id = message.guild.id  # type: ignore[union-attr]
        await self._typing(message.channel)
        outcomes = await asyncio.gather(*(self._similar(a, guild_id, k) for a in photos), return_exceptions=True)
        queries: list[render.Query] = []
        notes: list[str] = []
        many = len(photos) > 1
        for n, (attachment, outcome) in enumerate(zip(photos, outcomes), start=1):
            name = render.plain(attachment.filename, 60)
            if isinstance(outcome, SimilarResult):
                queries.append(render.Query(f"Photo {n} · {attachment.filename}"[:200] if many else "", outcome))
            elif isinstance(outcome, RecommenderError):
                notes.append(f"⚠️ **{name}**: {describe(outcome)}")
            elif isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                log.error("unexpected error for attachment %s of message %s", attachment.id, message.id, exc_info=outcome)
                notes.append(f"⚠️ **{name}**: sorry, something went wrong with this one.")
        if skipped > 0:
            notes.append(f"-# I only look at the first {limit} photos of a message.")
        thumbs = await self.bot.rec.thumbnails([m.item.pk for q in queries for m in q.result.matches])
        reply = await asyncio.to_thread(
            render.results_reply,
            queries,
            thumbs,
            notes=notes,
            currency=self.bot.options.currency,
            cell=self.bot.options.grid_cell,
        )
        await self._reply(message, **reply.kwargs())

    async def _similar(self, attachment: discord.Attachment, guild_id: int, k: int) -> SimilarResult:
        data = await read_attachment(attachment, self.bot.settings.max_image_bytes)
        return await self.bot.rec.similar(data, guild_id=guild_id, k=k)

    @staticmethod
    async def _typing(channel: discord.abc.Messageable) -> None:
        try:
            await channel.typing()  # one "lookalike is typing…" while the photos are looked at
        except discord.HTTPException:
            pass

    async def _reply(self, message: discord.Message, **kwargs: object) -> None:
        try:
            await message.channel.send(reference=message.to_reference(fail_if_not_exists=False), mention_author=False, **kwargs)  # type: ignore[arg-type]
        except discord.Forbidden:
            log.warning(
                "no permission to reply in channel %s of guild %s",
                message.channel.id,
                message.guild.id if message.guild else None,
            )


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Photos(bot))
