"""Members' votes on the bot's answers: the two reactions, the line that invites them, and how a
moderator names a message (a link or an id) in /catalog label.

A vote is a 👍 or 👎 on the bot's reply (or on the member's photo message): it says whether the
predicted category was right. The recommender keeps the votes and the labels (features only, never
the photo); the bot only passes them on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence

import discord

from recommender.errors import BadOption
from recommender.records import SimilarResult

log = logging.getLogger(__name__)

UP, DOWN = "👍", "👎"
VERDICTS = {UP: 1, DOWN: -1}
INVITE = "-# React 👍 or 👎 to tell me if I got the kind right."

# https://discord.com/channels/<guild>/<channel>/<message> (also ptb./canary., discordapp.com)
_LINK = re.compile(r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+|@me)/(\d+)/(\d+)/?")


class Linking:
    """Answers sent but not yet linked to their photos. The reply is sent first, so a quick 👍 on it (or on the
    photo message) can come before the recommender knows the message: such a vote waits for the link."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Event] = {}

    @contextlib.contextmanager
    def of(self, *message_ids: int) -> Iterator[Callable[[int], None]]:
        """While the block links the answer, votes on these messages wait; the block may add more (its reply)."""
        done, ids = asyncio.Event(), list(message_ids)

        def add(message_id: int) -> None:
            self._pending[message_id] = done
            ids.append(message_id)

        for message_id in message_ids:
            self._pending[message_id] = done
        try:
            yield add
        finally:
            done.set()
            for message_id in ids:
                self._pending.pop(message_id, None)

    async def wait(self, message_id: int, timeout: float) -> None:
        """Until the message's answer is linked (at most `timeout`); at once for any other message."""
        if (done := self._pending.get(message_id)) is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)


def verdict(emoji: discord.PartialEmoji) -> int | None:
    """+1 for 👍, -1 for 👎 (any skin tone), None for every other emoji."""
    if emoji.id is not None or not emoji.name:
        return None
    return VERDICTS.get(emoji.name.rstrip("\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff"))


def asks_for_votes(results: Sequence[SimilarResult]) -> bool:
    """Whether a reply invites votes: some photo of it was given a category (not 'not sure', not
    'nothing like this'), so 👍/👎 have something to judge."""
    return any(r.prediction is not None and r.prediction.sure and not r.nothing_like_this for r in results)


def message_id_from(text: str, guild_id: int) -> int:
    """The message a moderator names: its link (Copy Message Link) or its id. Raises BadOption in words."""
    text = text.strip().strip("<>")
    if text.isdigit() and 15 <= len(text) <= 20 and int(text) < 1 << 63:  # a snowflake is a 64-bit integer
        return int(text)
    match = _LINK.fullmatch(text)
    if match is None:
        raise BadOption(
            f"Give the message as its link (right-click the photo or my reply > Copy Message Link) or its id, not {text[:80]!r}."
        )
    if match.group(1) != str(guild_id):
        raise BadOption("That message is not in this server; label photos posted here.")
    if int(match.group(3)) >= 1 << 63:
        raise BadOption(f"{match.group(3)} is no message id: ids are below {1 << 63}.")
    return int(match.group(3))


async def add_vote_buttons(message: discord.Message, perms: discord.Permissions | None = None) -> None:
    """Put 👍 and 👎 under the bot's reply, where it may (Add Reactions and Read Message History in
    the channel; `perms`: the bot's there, e.g. an interaction's app_permissions): members then vote
    with one click. Never fails the reply."""
    if perms is None:
        me = message.guild.me if message.guild else None
        if me is None:
            return
        perms = message.channel.permissions_for(me)
    if not (perms.add_reactions and perms.read_message_history):
        return
    for emoji in (UP, DOWN):
        try:
            await message.add_reaction(emoji)
        except discord.HTTPException as e:  # deleted meanwhile, permissions changed meanwhile
            log.info("could not add %s to message %s: %s", emoji, message.id, e)
            return
