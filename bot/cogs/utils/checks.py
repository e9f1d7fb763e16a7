"""Who may do what. Checks raise `app_commands.CheckFailure` subclasses whose `str()` is the
sentence the member sees; the tree's error handler (bot/app.py) sends it ephemerally."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bot.app import LookalikeBot

T = TypeVar("T")


class Refused(app_commands.CheckFailure):
    """A check said no; the message is for the member."""


class NotModerator(Refused):
    pass


class NotAdmin(Refused):
    pass


class OnCooldown(Refused):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"You're going a little fast. Try again in {retry_after:.0f}s.")


def actor(user: discord.abc.User) -> str:
    """How a Discord member appears in the audit log."""
    return f"user:{user.id}"


async def is_moderator(interaction: discord.Interaction) -> bool:
    """Manage Server, or the moderator role the guild configured with /config moderator-role."""
    member = interaction.user
    if interaction.guild is None or not isinstance(member, discord.Member):
        return False
    if interaction.permissions.manage_guild:
        return True
    bot: LookalikeBot = interaction.client  # type: ignore[assignment]
    return await member_is_moderator(bot, member)


async def member_is_moderator(bot: LookalikeBot, member: discord.Member) -> bool:
    """The same test for a member outside a command (one who reacted): Manage Server or the role."""
    if member.guild_permissions.manage_guild:
        return True
    config = await bot.guild_configs.get(member.guild.id)
    return config.moderator_role_id is not None and any(r.id == config.moderator_role_id for r in member.roles)


async def require_moderator(interaction: discord.Interaction) -> bool:
    """The /catalog gate (a cog's interaction_check): moderators pass, others get a polite NotModerator."""
    if interaction.guild is None:
        raise NotModerator("The catalogue commands only work in a server.")
    if not await is_moderator(interaction):
        raise NotModerator(
            "Sorry, only moderators can manage the catalogue: you need the Manage Server permission "
            "or the moderator role set with /config moderator-role."
        )
    return True


async def require_admin(interaction: discord.Interaction) -> bool:
    """The /config gate: Manage Server (Discord also hides /config from others by default)."""
    member = interaction.user
    if interaction.guild is None or not isinstance(member, discord.Member):
        raise NotAdmin("These settings only exist in a server.")
    if not (member.guild_permissions.manage_guild or interaction.permissions.manage_guild):
        raise NotAdmin("Sorry, only members with the Manage Server permission can change these settings.")
    return True


def query_cooldown() -> Callable[[T], T]:
    """The per-user limit shared by photo replies and /similar (see BotOptions.cooldown_*)."""

    async def predicate(interaction: discord.Interaction) -> bool:
        bot: LookalikeBot = interaction.client  # type: ignore[assignment]
        verdict = bot.cooldown.hit(interaction.user.id)
        if not verdict.allowed:
            raise OnCooldown(verdict.retry_after)
        return True

    return app_commands.check(predicate)
