"""/config: server admins (Manage Server) choose watched channels, k and the moderator role."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from .utils.checks import actor, require_admin

if TYPE_CHECKING:
    from bot.app import LookalikeBot

NEEDED = ("view_channel", "send_messages", "send_messages_in_threads", "embed_links", "attach_files", "read_message_history")
T = TypeVar("T")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)  # Discord hides /config from other members
class Config(commands.GroupCog, group_name="config", group_description="Admins: where and how the bot answers."):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # every /config command
        return await require_admin(interaction)

    @staticmethod
    async def _defer(interaction: discord.Interaction) -> None:
        """Settings are written to the database, which may be busy (an import): answer within 3 s first."""
        await interaction.response.defer(ephemeral=True, thinking=True)

    async def _write(self, interaction: discord.Interaction, write: Awaitable[T]) -> T:
        """Run a settings write, then drop the cached settings (also when the write failed half-way);
        GuildConfigs won't keep a copy that a concurrent read fetched before this write."""
        try:
            return await write
        finally:
            self.bot.guild_configs.invalidate(interaction.guild_id or 0)

    @app_commands.command(name="watch", description="Answer photos posted in this channel.")
    @app_commands.describe(channel="The channel to watch")
    async def watch(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self._defer(interaction)
        gid = interaction.guild_id or 0
        changed = await self._write(interaction, self.bot.rec.set_watched(gid, channel.id, True, actor=actor(interaction.user)))
        text = f"I'll answer photos posted in {channel.mention}." if changed else f"I already watch {channel.mention}."
        missing = self._missing_permissions(interaction, channel)
        if missing:
            text += f"\n⚠️ I'm missing these permissions there: {', '.join(missing)}."
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="unwatch", description="Stop answering photos in this channel.")
    @app_commands.describe(channel="The channel to stop watching")
    async def unwatch(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self._defer(interaction)
        changed = await self._write(
            interaction, self.bot.rec.set_watched(interaction.guild_id or 0, channel.id, False, actor=actor(interaction.user))
        )
        text = f"I no longer watch {channel.mention}." if changed else f"I wasn't watching {channel.mention}."
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="k", description="How many items a photo reply shows.")
    @app_commands.describe(n="Number of items (1-25)")
    async def k(self, interaction: discord.Interaction, n: app_commands.Range[int, 1, 25]) -> None:
        await self._defer(interaction)
        await self._write(
            interaction, self.bot.rec.update_guild_settings(interaction.guild_id or 0, actor=actor(interaction.user), k=n)
        )
        await interaction.followup.send(f"Replies will show {n} item{'s' if n != 1 else ''}.", ephemeral=True)

    @app_commands.command(
        name="moderator-role", description="Members with this role may manage the catalogue (leave empty to clear)."
    )
    @app_commands.describe(role="The moderator role; leave empty so only Manage Server can")
    async def moderator_role(self, interaction: discord.Interaction, role: discord.Role | None = None) -> None:
        await self._defer(interaction)
        await self._write(
            interaction,
            self.bot.rec.update_guild_settings(
                interaction.guild_id or 0,
                actor=actor(interaction.user),
                moderator_role_id=role.id if role else None,
            ),
        )
        text = (
            f"Members with {role.mention} can now manage the catalogue."
            if role
            else "Only members with Manage Server can manage the catalogue now."
        )
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="show", description="Show this server's settings.")
    async def show(self, interaction: discord.Interaction) -> None:
        await self._defer(interaction)
        gid = interaction.guild_id or 0
        gs = await self.bot.guild_configs.get(gid)
        cid = await self.bot.rec.catalogue_for(gid)
        embed = discord.Embed(title="lookalike settings", colour=discord.Colour(0x5865F2))
        embed.add_field(
            name="Watched channels", value=" ".join(f"<#{c}>" for c in sorted(gs.watched))[:1024] or "none", inline=False
        )
        embed.add_field(name="Items per reply", value=str(gs.k or self.bot.settings.k), inline=True)
        embed.add_field(
            name="Moderator role",
            value=f"<@&{gs.moderator_role_id}>" if gs.moderator_role_id else "Manage Server only",
            inline=True,
        )
        embed.add_field(name="Catalogue", value="shared default" if cid == 0 else "this server's own", inline=True)
        await interaction.followup.send(embed=embed, ephemeral=True)

    @staticmethod
    def _missing_permissions(interaction: discord.Interaction, channel: discord.TextChannel) -> list[str]:
        me = channel.guild.me
        if me is None:
            return []
        perms = channel.permissions_for(me)
        return [p.replace("_", " ").title() for p in NEEDED if not getattr(perms, p)]


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Config(bot))
