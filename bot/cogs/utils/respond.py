"""The one way to answer an interaction.

Deferred interactions are finished by editing the original ("thinking…") response, as Discord
documents (follow-ups are for extra messages only); one that was not acknowledged yet gets its
first response. The deferral decided the visibility: ephemeral after an ephemeral defer.
"""

from __future__ import annotations

import discord

from ... import render


async def respond(
    interaction: discord.Interaction, reply: render.Reply | str, *, ephemeral: bool = True
) -> discord.InteractionMessage | None:
    """Send or finish the answer; returns the message when it edited the deferred response (None
    after a first response, whose message discord.py does not return)."""
    if isinstance(reply, str):
        reply = render.Reply(content=reply)
    if interaction.response.is_done():
        return await interaction.edit_original_response(**reply.edit_kwargs())
    await interaction.response.send_message(ephemeral=ephemeral, **reply.send_kwargs())
    return None
