"""Photo replies: a member posts a photo in a watched channel; the bot answers with the catalogue
items that look most like it and the predicted category.

Each answered photo is remembered by the recommender (its feature vector, never the photo) and
linked to the reply, so 👍/👎 on the reply (bot/cogs/feedback.py) and /catalog label can teach the
server's category prediction. A reply that predicted a category invites those votes and carries
the two reactions to click, where the bot may add reactions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from recommender.records import SimilarResult

from .. import render
from .utils.answers import remembers, resolve_k, similar_reply
from .utils.attachments import looks_like_image, read_attachment
from .utils.errors import describe
from .utils.votes import add_vote_buttons
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
        except ShuttingDown:
            return
        except Exception:  # not knowing which channels are watched, say nothing: this one may be #general
            log.warning(
                "no settings for guild %s (photo message %s left unanswered)", message.guild.id, message.id, exc_info=True
            )
            return
        channel = message.channel
        parent = getattr(channel, "parent_id", None)  # threads of a watched channel count too
        if channel.id not in config.watched and parent not in config.watched:
            return
        if not self._may_send(message):  # no work, no refused request (Discord counts those against the bot)
            log.info("no permission to send in channel %s of guild %s: photos not looked at", channel.id, message.guild.id)
            return
        try:
            verdict = self.bot.cooldown.hit(message.author.id)
            if not verdict.allowed:
                if verdict.first_refusal:
                    await self._reply(
                        message, content=f"You're posting a little fast; I'll look at photos again in {verdict.retry_after:.0f}s."
                    )
                return
            async with self.bot.work.slot():
                await self.answer(message, photos)
        except ShuttingDown:
            return
        except Exception as e:  # never let one message take the listener down, never show a traceback
            text = describe(e, context=f"answering message {message.id} in guild {message.guild.id}")
            try:
                await self._reply(message, content=text)
            except Exception:
                log.exception("could not send the apology for message %s", message.id)

    async def answer(self, message: discord.Message, photos: list[discord.Attachment]) -> None:
        limit = self.bot.options.max_attachments
        skipped = len(photos) - limit
        photos = photos[:limit]
        guild_id = message.guild.id  # type: ignore[union-attr]
        k = await resolve_k(self.bot, guild_id)
        remember = await remembers(self.bot, guild_id)
        await self._typing(message.channel)
        many = len(photos) > 1
        searches = [
            (f"Photo {n} · {a.filename}"[:200] if many else "", a.filename, self._similar(a, guild_id, k, remember))
            for n, a in enumerate(photos, start=1)
        ]
        notes = [f"-# I only look at the first {limit} photos of a message."] if skipped > 0 else []
        embed, attach = self._may(message)
        with self.bot.linking.of(message.id) as also:  # a vote may come before the link: it waits for it
            answer = await similar_reply(self.bot, searches, notes=notes, rich=embed, votes=True)
            reply = answer.reply if attach else answer.reply.without_files()
            sent = await self._reply(message, **reply.send_kwargs())
            if sent is not None:
                also(sent.id)
            if all(p is None for p in answer.photo_ids):
                return
            try:  # no reply sent (no permission to send): nobody can vote on the photos, so they are not kept
                await self.bot.rec.link_reply(
                    answer.photo_ids,
                    guild_id=guild_id,
                    channel_id=message.channel.id,
                    photo_message_id=message.id,
                    reply_message_id=None if sent is None else sent.id,
                )
            except Exception:  # the member has the answer; only the votes on it would be lost
                log.exception("could not link the reply to the photos of message %s", message.id)
                return
        if sent is not None and answer.asks_for_votes:
            await add_vote_buttons(sent)

    async def _similar(self, attachment: discord.Attachment, guild_id: int, k: int, remember: bool) -> SimilarResult:
        async with self.bot.downloads:  # from the download until the photo is looked at: its bytes are held
            data = await read_attachment(attachment, self.bot.settings.max_image_bytes)
            return await self.bot.rec.similar(data, guild_id=guild_id, k=k, remember=remember)

    @staticmethod
    def _perms(message: discord.Message) -> discord.Permissions:
        """The bot's permissions in the message's channel (all of them where it cannot tell)."""
        me = message.guild.me if message.guild else None
        return message.channel.permissions_for(me) if me is not None else discord.Permissions.all()

    @classmethod
    def _may_send(cls, message: discord.Message) -> bool:
        perms = cls._perms(message)
        return perms.send_messages_in_threads if isinstance(message.channel, discord.Thread) else perms.send_messages

    @classmethod
    def _may(cls, message: discord.Message) -> tuple[bool, bool]:
        """(Embed Links, Attach Files) in this channel. Without Embed Links Discord drops embeds, so the
        reply is text + grid; without Attach Files an upload is refused, so the reply has no grid."""
        perms = cls._perms(message)
        return perms.embed_links, perms.attach_files

    @staticmethod
    async def _typing(channel: discord.abc.Messageable) -> None:
        try:
            await channel.typing()  # one "lookalike is typing…" while the photos are looked at
        except discord.HTTPException:
            pass

    async def _reply(self, message: discord.Message, **kwargs: Any) -> discord.Message | None:
        """A reply to the member's message; where the bot may not read the channel's history Discord refuses
        replies, so the answer is a message that names the member instead (without pinging them)."""
        if self._perms(message).read_message_history:
            how: dict[str, Any] = {"reference": message.to_reference(fail_if_not_exists=False), "mention_author": False}
        else:
            content = kwargs.pop("content", None)
            named = f"{message.author.mention} {content}" if content else message.author.mention
            kwargs["content"] = render.fit_lines(named.split("\n"), render.MAX_CONTENT)
            how = {"allowed_mentions": discord.AllowedMentions.none()}
        try:
            return await message.channel.send(**how, **kwargs)
        except discord.Forbidden:
            log.warning(
                "no permission to reply in channel %s of guild %s",
                message.channel.id,
                message.guild.id if message.guild else None,
            )
            return None


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Photos(bot))
