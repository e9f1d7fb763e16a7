"""What the bot says about learning from members: a moderator's label, the community counts in
/catalog stats, and /config forget-photos. Plain strings and embed fields, within Discord's limits."""

from __future__ import annotations

import discord

from recommender.records import CommunityStats, Feedback

from .render import plain


def label_done(feedback: Feedback) -> str:
    """The ephemeral thanks for /catalog label."""
    label = plain(feedback.label or "?", 100)
    n = feedback.labelled
    return f"Thanks: that photo is now labelled **{label}**; I'll use it for this server's answers ({n:,} labelled so far)."


def add_community_field(embed: discord.Embed, stats: CommunityStats) -> discord.Embed:
    """/catalog stats: what the server's members have taught the bot."""
    if not stats.remembered:
        value = "None yet: photos I answer here are remembered (their features only) so 👍/👎 and /catalog label can teach me."
    else:
        value = (
            f"{stats.remembered:,} remembered (features only), {stats.labelled:,} labelled "
            f"({stats.by_moderators:,} by moderators) · votes 👍 {stats.thumbs_up:,} / 👎 {stats.thumbs_down:,}"
        )
        if stats.adapting and stats.adapted_on:
            value += f" · adapting to members' photos from {stats.adapted_on:,}"
    embed.add_field(name="Members' photos", value=value, inline=False)
    return embed


def forget_confirm(remembered: int) -> str:
    """/config forget-photos without confirm: what it would delete."""
    if not remembered:
        return "I remember no photos from this server; there is nothing to forget."
    return (
        f"I remember {remembered:,} member photo{'s' if remembered != 1 else ''} from this server (their features, "
        "never the pictures), with their votes and labels. To delete them all, run `/config forget-photos confirm:True`."
    )


def forget_done(deleted: int, remembering: bool) -> str:
    then = (
        "Photos answered from now on are remembered again."
        if remembering
        else "Photos answered from now on are not kept (remembering is off here)."
    )
    if not deleted:
        return f"I remembered no photos from this server; nothing was deleted. {then}"
    return (
        f"Done: I forgot {deleted:,} member photo{'s' if deleted != 1 else ''} of this server, with their votes and labels. "
        + then
    )


def remember_set(enabled: bool, operator_allows: bool, remembered: int) -> str:
    """/config remember-photos: what the server's choice means from now on."""
    if enabled:
        text = (
            "I'll remember the photos members post here again: their features, never the pictures, so 👍/👎 and "
            "`/catalog label` can teach me what this server's photos show."
        )
        if not operator_allows:
            text += " This bot's operator has turned remembering off for every server, so for now nothing is kept."
        return text
    text = "I no longer keep anything of the photos members post here. I still answer every photo; replies won't ask for 👍/👎."
    if remembered:
        text += (
            f" The {remembered:,} photo{'s' if remembered != 1 else ''} I remembered before stay, with their votes and "
            "labels, until `/config forget-photos confirm:True`."
        )
    return text
