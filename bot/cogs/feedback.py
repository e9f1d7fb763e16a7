"""Members' 👍/👎 on the bot's answers are votes on the category it predicted.

A reaction on a reply (or on the member's photo message it answers) goes to the recommender as a
vote: +1 or -1; a moderator's 👍 confirms the category as a label. When a member takes a reaction
back, their vote becomes what their remaining 👍/👎 on the photo message and the reply say (a removal
event names only the emoji removed, so they are read over REST, for remembered messages only): one
kind left is that vote, none (or both) is none. Nothing is said back for a vote, other emojis and bots
(the bot itself included) are ignored, and a message the recommender does not remember is ignored
silently (a vote on an answer sent but not yet linked to its photos waits for the link). A failure is
logged, never shown and never stops the listener. /catalog label (bot/cogs/catalog.py) is the other way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from recommender.errors import RecommenderError

from .utils.checks import member_is_moderator
from .utils.votes import verdict

if TYPE_CHECKING:
    from bot.app import LookalikeBot

log = logging.getLogger(__name__)

LINK_WAIT_S = 30.0  # how long a vote waits for its answer to be linked to the photos (a busy database)


class Feedback(commands.Cog):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot
        # one member's votes on one message reach the recommender one at a time, in the order they came
        # (discord.py runs each event in its own task; 👍 then 👎 at once must not arrive as 👎 then 👍)
        self._queues: dict[tuple[int, int], tuple[asyncio.Lock, int]] = {}

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        vote = verdict(event.emoji)
        if vote is None or event.guild_id is None or self._from_a_bot(event):
            return
        await self._vote(event, event.guild_id, vote)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        if verdict(event.emoji) is None or event.guild_id is None or self._from_a_bot(event):
            return
        await self._vote(event, event.guild_id, None)

    def _from_a_bot(self, event: discord.RawReactionActionEvent) -> bool:
        """The bot's own 👍/👎 under its replies, and other bots' reactions (a removal names no member:
        only the bot itself is known then; another bot's removal finds no vote of its to undo)."""
        me = self.bot.user
        return (me is not None and event.user_id == me.id) or (event.member is not None and event.member.bot)

    async def _moderator(self, member: discord.Member) -> bool:
        try:
            return await member_is_moderator(self.bot, member)
        except RecommenderError as e:  # the settings could not be read: count a plain vote
            log.warning("moderator check for %s in guild %s failed: %s", member.id, member.guild.id, e)
            return False

    @contextlib.asynccontextmanager
    async def _in_turn(self, key: tuple[int, int]) -> AsyncIterator[None]:
        """Wait for the earlier votes of this member on this message; the entry goes with its last user."""
        lock, users = self._queues.get(key, (asyncio.Lock(), 0))
        self._queues[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._queues[key]
            if users == 1:
                del self._queues[key]
            else:
                self._queues[key] = (lock, users - 1)

    async def _left(self, event: discord.RawReactionActionEvent, guild_id: int) -> tuple[int, discord.Member | None]:
        """After a removal: the vote the member's remaining 👍/👎 say, on the photo message and on the bot's
        reply alike (one vote per photo), and the member when it is a 👍 (a moderator's is a label). Read only
        for a message the recommender remembers; if they cannot be read, the vote is taken back."""
        channel = self.bot.get_partial_messageable(event.channel_id, guild_id=guild_id)
        held: set[int] = set()
        try:
            for message_id in await self.bot.rec.vote_messages(guild_id=guild_id, message_id=event.message_id):
                for reaction in (await channel.fetch_message(message_id)).reactions:
                    kind = verdict(discord.PartialEmoji(name=reaction.emoji)) if isinstance(reaction.emoji, str) else None
                    if kind is None or kind in held:
                        continue
                    async for user in reaction.users(limit=1, after=discord.Object(event.user_id - 1)):
                        if user.id == event.user_id:
                            held.add(kind)
        except discord.HTTPException as e:  # deleted meanwhile, no Read Message History
            log.info("reactions left by %s on message %s unread (%s): vote taken back", event.user_id, event.message_id, e)
            return 0, None
        vote, guild = sum(held), self.bot.get_guild(guild_id)  # both kinds left: no vote
        if vote <= 0 or guild is None:
            return vote, None
        try:
            return vote, await guild.fetch_member(event.user_id)
        except discord.HTTPException:  # left the server: a plain vote
            return vote, None

    async def _vote(self, event: discord.RawReactionActionEvent, guild_id: int, vote: int | None) -> None:
        """Pass the vote on (None, a removal: what the member's remaining reactions say, see _left)."""
        moderator = False
        try:
            async with self._in_turn((event.message_id, event.user_id)):
                member = event.member
                if vote is None:
                    vote, member = await self._left(event, guild_id)
                if vote and member is not None:
                    moderator = await self._moderator(member)
                await self.bot.linking.wait(event.message_id, LINK_WAIT_S)  # an answer sent, not yet linked
                feedback = await self.bot.rec.react(
                    guild_id=guild_id, message_id=event.message_id, user_id=event.user_id, verdict=vote, moderator=moderator
                )
        except Exception as e:  # a vote must never take the listener down, nor be answered
            if isinstance(e, RecommenderError):
                log.warning("vote %+d by %s on message %s not recorded: %s", vote or 0, event.user_id, event.message_id, e)
            else:
                log.exception("vote %+d by %s on message %s failed", vote or 0, event.user_id, event.message_id)
            return
        if feedback is not None:
            log.debug(
                "vote %+d by %s%s on message %s: %d photo(s) now %s",
                vote,
                event.user_id,
                " (moderator)" if moderator else "",
                event.message_id,
                feedback.photos,
                feedback.label or "unlabelled",
            )


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Feedback(bot))
