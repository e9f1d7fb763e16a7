"""Errors put into words, at the edge. Library errors (`RecommenderError`) already are sentences;
anything unexpected is logged with its traceback and the member gets a generic apology."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from recommender.errors import Busy, RecommenderError

from .respond import respond

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side. The error has been logged; please try again later."


def describe(error: BaseException, *, context: str = "") -> str:
    """A short sentence for the member. Unexpected errors are logged here (once)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.TransformerError):
        return f"I couldn't understand the value {str(error.value)[:100]!r} for that option."
    if isinstance(error, Busy):
        return "I'm very busy right now. Please try again in a moment."
    if isinstance(error, RecommenderError):
        return str(error)
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "Sorry, you can't use this command here."
    if isinstance(error, discord.Forbidden):
        log.warning("missing permissions %s: %s", context, error)
        return "I don't have the permissions I need for that (View Channel, Send Messages, Embed Links, Attach Files)."
    log.error("unexpected error %s", context, exc_info=error)
    return APOLOGY


def token_expired(error: discord.HTTPException) -> bool:
    """The interaction's token is no longer valid (it lives 15 minutes): its follow-ups and edits
    fail with HTTP 401, Invalid Webhook Token (50027) or Unknown Webhook (10015)."""
    return error.status == 401 or error.code in (10015, 50027)


async def tell(interaction: discord.Interaction, text: str) -> None:
    """Answer with `text` whether or not the interaction was already acknowledged.

    Not acknowledged yet: an ephemeral response. Already deferred: the deferred "thinking…" response
    is edited into the sentence, so it keeps the defer's visibility: ephemeral after an ephemeral
    defer (/catalog, /config), public after a public one (/similar)."""
    try:
        await respond(interaction, text)
    except discord.HTTPException as e:  # expired token, deleted channel: nothing more to do
        log.warning("could not report an error to %s: %s", interaction.user, e)
