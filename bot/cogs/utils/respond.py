"""The one way to answer an interaction.

Deferred interactions are finished by editing the original ("thinking…") response, as Discord
documents (follow-ups are for extra messages only); one that was not acknowledged yet gets its
first response. The deferral decided the visibility: ephemeral after an ephemeral defer.
"""

from __future__ import annotations

import discord

from ... import render


async def respond(interaction: discord.Interaction, reply: render.Reply | str, *, ephemeral: bool = True) -> None:
    if isinstance(reply, str):
        reply = render.Reply(content=reply)
    if interaction.response.is_done():
        await interaction.edit_original_response(**reply.edit_kwargs())
    else:
        await interaction.response.send_message(ephemeral=ephemeral, **reply.send_kwargs())
