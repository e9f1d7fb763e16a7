"""/config: server admins (Manage Server) choose watched channels, k and the moderator role, whether
members' photos are remembered (/config remember-photos), and may delete what the bot remembers of them
(/config forget-photos)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from recommender.config import DEFAULT_GUILD, MAX_K
from recommender.urls import check_url

from .. import render, render_community, render_feeds
from .utils.answers import remembers
from .utils.checks import actor, require_admin
from .utils.feeds import FORMATS, LEVELS
from .utils.respond import respond

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
            if "Embed Links" in missing:
                text += "\nWithout Embed Links my replies there are plain text with the picture grid."
        await respond(interaction, text)

    @app_commands.command(name="unwatch", description="Stop answering photos in this channel.")
    @app_commands.describe(channel="The channel to stop watching")
    async def unwatch(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        await self._defer(interaction)
        changed = await self._write(
            interaction, self.bot.rec.set_watched(interaction.guild_id or 0, channel.id, False, actor=actor(interaction.user))
        )
        text = f"I no longer watch {channel.mention}." if changed else f"I wasn't watching {channel.mention}."
        await respond(interaction, text)

    @app_commands.command(name="k", description="How many items a photo reply shows.")
    @app_commands.describe(n=f"Number of items (1-{MAX_K})")
    async def k(self, interaction: discord.Interaction, n: app_commands.Range[int, 1, MAX_K]) -> None:
        await self._defer(interaction)
        await self._write(
            interaction, self.bot.rec.update_guild_settings(interaction.guild_id or 0, actor=actor(interaction.user), k=n)
        )
        await respond(interaction, f"Replies will show {n} item{'s' if n != 1 else ''}.")

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
        await respond(interaction, text)

    @app_commands.command(name="show", description="Show this server's settings.")
    async def show(self, interaction: discord.Interaction) -> None:
        await self._defer(interaction)
        gid = interaction.guild_id or 0
        gs = await self.bot.guild_configs.get(gid)
        cid = await self.bot.rec.catalogue_for(gid)
        embed = render.settings_embed(
            gs,
            default_k=self.bot.settings.k,
            own_catalogue=cid != DEFAULT_GUILD,
            operator_remembers=self.bot.settings.remember_photos,
        )
        if (feed := await self.bot.rec.feed(gid)) is not None:
            embed.add_field(name="Shop feed", value=render_feeds.feed_line(feed), inline=False)
        await respond(interaction, render.Reply(embeds=[embed]))

    @app_commands.command(name="feed", description="Sync the catalogue from a shop's product feed on a schedule.")
    @app_commands.describe(
        url="The feed's address (Google Merchant Center, Shopify or WooCommerce export); 'off' stops the schedule",
        every="Hours between syncs (default 24)",
        format="The feed's format (default: told from its content)",
        category_level="Which level of 'Apparel > Women > Dresses' is the category (default: the last)",
        currency="The prices' currency, for CSV exports that name none (e.g. EUR)",
        shop_url="The shop's address, for product links in CSV exports",
    )
    @app_commands.choices(format=FORMATS, category_level=LEVELS)
    async def feed(
        self,
        interaction: discord.Interaction,
        url: app_commands.Range[str, 1, 500],
        every: app_commands.Range[int, 1, 168] = 24,
        format: str = "auto",
        category_level: str = "last",
        currency: app_commands.Range[str, 3, 3] | None = None,
        shop_url: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        await self._defer(interaction)
        gid, who = interaction.guild_id or 0, actor(interaction.user)
        if url.strip().lower() == "off":
            dropped = await self.bot.rec.drop_feed(gid, actor=who)
            await respond(interaction, "The scheduled sync is off." if dropped else "No feed was scheduled.")
            return
        url = check_url(url) or url
        options = {"format": format, "category_level": category_level}
        options |= {k: v for k, v in (("currency", currency), ("shop_url", shop_url)) if v}
        await self.bot.rec.set_feed(gid, url, every * 3600, options=options, channel_id=interaction.channel_id, actor=who)
        text = render_feeds.feed_scheduled(url, every * 3600) + " If a sync fails, I'll say so in this channel, once."
        await respond(interaction, text)

    @app_commands.command(
        name="forget-photos", description="Delete everything I remember of members' photos here (features, votes, labels)."
    )
    @app_commands.describe(confirm="True to delete them; without it I only say how many there are")
    async def forget_photos(self, interaction: discord.Interaction, confirm: bool = False) -> None:
        await self._defer(interaction)
        gid = interaction.guild_id or 0
        if not confirm:
            stats = await self.bot.rec.community(guild_id=gid)
            await respond(interaction, render_community.forget_confirm(stats.remembered))
            return
        deleted = await self.bot.rec.forget_photos(guild_id=gid, actor=actor(interaction.user))
        await respond(interaction, render_community.forget_done(deleted, await remembers(self.bot, gid)))

    @app_commands.command(
        name="remember-photos", description="Keep members' photos as features (never the pictures) so votes can teach me."
    )
    @app_commands.describe(enabled="False: keep nothing of the photos posted here; True: remember them again")
    async def remember_photos(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._defer(interaction)
        gid = interaction.guild_id or 0
        await self._write(
            interaction, self.bot.rec.update_guild_settings(gid, actor=actor(interaction.user), remember_photos=enabled)
        )
        remembered = 0 if enabled else (await self.bot.rec.community(guild_id=gid)).remembered
        await respond(interaction, render_community.remember_set(enabled, self.bot.settings.remember_photos, remembered))

    @staticmethod
    def _missing_permissions(interaction: discord.Interaction, channel: discord.TextChannel) -> list[str]:
        me = channel.guild.me
        if me is None:
            return []
        perms = channel.permissions_for(me)
        return [p.replace("_", " ").title() for p in NEEDED if not getattr(perms, p)]


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Config(bot))
