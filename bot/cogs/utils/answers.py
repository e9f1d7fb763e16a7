"""Search -> thumbnails -> render: the one path behind photo replies and /similar.

The cogs differ only in where a query comes from (attachments of a message, a slash command's
options) and where the reply goes (a channel message, the interaction's response).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recommender.errors import RecommenderError
from recommender.records import SimilarResult

from ... import render
from .errors import describe
from .votes import INVITE, asks_for_votes

if TYPE_CHECKING:
    from bot.app import LookalikeBot

log = logging.getLogger(__name__)


async def resolve_k(bot: LookalikeBot, guild_id: int, k: int | None = None) -> int:
    """How many items to show: the command's option, else the server's setting, else the default."""
    return k or (await bot.guild_configs.get(guild_id)).k or bot.settings.k


async def remembers(bot: LookalikeBot, guild_id: int) -> bool:
    """Whether members' photos answered here are remembered (features only): the operator's setting
    (remember_photos) and the server's own choice (/config remember-photos) must both allow it."""
    return bot.settings.remember_photos and (await bot.guild_configs.get(guild_id)).remember_photos


@dataclass(frozen=True)
class Answer:
    """The rendered reply and the searches' results (the photos it answered)."""

    reply: render.Reply
    results: list[SimilarResult]
    photo_ids: list[int | None]  # one per search, in order (None: failed or not remembered): photo n stays photo n

    @property
    def asks_for_votes(self) -> bool:
        return asks_for_votes(self.results)


async def similar_reply(
    bot: LookalikeBot,
    searches: Sequence[tuple[str, str, Awaitable[SimilarResult]]],
    *,
    notes: Sequence[str] = (),
    rich: bool = True,
    raise_errors: bool = False,
    votes: bool = False,
) -> Answer:
    """Run the searches (label, name for error notes, the search) side by side and render the reply.

    A search that fails becomes a note naming it, or, with raise_errors, is raised (for a command
    with one search, whose error handler words it). `rich`: embeds allowed (Embed Links) or not.
    `votes`: a reply that predicted a category invites 👍/👎 in one quiet line."""
    outcomes = await asyncio.gather(*(s for _, _, s in searches), return_exceptions=True)
    queries: list[render.Query] = []
    problems: list[str] = []
    photo_ids: list[int | None] = []
    for (label, name, _), outcome in zip(searches, outcomes):
        photo_ids.append(outcome.photo_id if isinstance(outcome, SimilarResult) else None)
        if isinstance(outcome, SimilarResult):
            queries.append(render.Query(label, outcome))
            continue
        if isinstance(outcome, asyncio.CancelledError) or (raise_errors and isinstance(outcome, BaseException)):
            raise outcome
        if isinstance(outcome, RecommenderError):
            problems.append(f"⚠️ **{render.plain(name, 60)}**: {describe(outcome)}")
        else:
            log.error("unexpected error for %s", name, exc_info=outcome)
            problems.append(f"⚠️ **{render.plain(name, 60)}**: sorry, something went wrong with this one.")
    results = [q.result for q in queries]
    if votes and asks_for_votes(results) and any(p is not None for p in photo_ids):  # votes need a remembered photo
        notes = [*notes, INVITE]
    thumbs = await bot.rec.thumbnails([m.item.pk for q in queries for m in q.result.matches])
    reply = await asyncio.to_thread(
        render.results_reply,
        queries,
        thumbs,
        notes=[*problems, *notes],
        currency=bot.options.currency,
        cell=bot.options.grid_cell,
        rich=rich,
    )
    return Answer(reply, results, photo_ids)
