"""/catalog: moderators keep the guild's own catalogue (Manage Server, or the configured role).

Every change goes through the recommender with actor="user:<id>", which writes the audit log.
Answers are ephemeral: the channel sees none of the housekeeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from recommender.config import DEFAULT_GUILD
from recommender.errors import BadManifest, BadOption, DuplicateItem, RecommenderError
from recommender.records import ImportNotes, ImportSummary, ItemFields
from recommender.urls import check_url

from .. import render, render_community, render_feeds
from .utils.attachments import read_attachment
from .utils.checks import actor, is_moderator, require_moderator
from .utils.feeds import FORMATS, LEVELS
from .utils.items import make_item_id
from .utils.progress import progress_message, report
from .utils.respond import respond
from .utils.votes import message_id_from

if TYPE_CHECKING:
    from bot.app import LookalikeBot
    from recommender.engine import Recommender
    from recommender.records import Item

log = logging.getLogger(__name__)

STOPPED = (
    "Stopped: the bot restarted before the {work} finished. What was done is kept; {again} again to finish "
    "(what is already there is skipped)."
)
Name = app_commands.Range[str, 1, 200]
Category = app_commands.Range[str, 1, 100]
Price = app_commands.Range[float, 0.0, 1e9]
Url = app_commands.Range[str, 1, 500]
Description = app_commands.Range[str, 1, 1000]
ItemId = app_commands.Range[str, 1, 200]


@app_commands.guild_only()
class Catalog(commands.GroupCog, group_name="catalog", group_description="Moderators: keep this server's catalogue."):
    def __init__(self, bot: LookalikeBot) -> None:
        self.bot = bot
        self._importing: set[int] = set()  # guilds with an import running
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # every /catalog command
        return await require_moderator(interaction)

    @property
    def rec(self) -> Recommender:
        return self.bot.rec

    async def _item_reply(
        self, interaction: discord.Interaction, item: Item, content: str | None = None, title: str | None = None
    ) -> None:
        thumbs = await self.rec.thumbnails([item.pk])
        reply = render.item_embed(item, currency=self.bot.options.currency, thumbnail=thumbs.get(item.pk), title=title)
        reply.content = content
        await respond(interaction, reply)

    @app_commands.command(name="add", description="Add an item to this server's catalogue.")
    @app_commands.describe(
        image="A clear photo of the item",
        name="Item name",
        category="Category (e.g. shoes)",
        price="Price",
        url="Link to the item's page",
        description="Short description",
    )
    async def add(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        name: Name,
        category: Category,
        price: Price | None = None,
        url: Url | None = None,
        description: Description | None = None,
    ) -> None:
        url = check_url(url)
        await interaction.response.defer(ephemeral=True, thinking=True)
        gid = interaction.guild_id or 0
        async with self.bot.downloads:  # from the download until the photo is stored: its bytes are held
            data = await read_attachment(image, self.bot.settings.max_image_bytes)
            was_default = await self.rec.catalogue_for(gid) == DEFAULT_GUILD
            item_id = await asyncio.to_thread(make_item_id, name, data)  # hashes up to max_image_bytes: off the loop
            fields = ItemFields(item_id, name.strip(), category.strip(), price, url, description)
            try:
                item = await self.rec.add_item(data, fields, guild_id=gid, actor=actor(interaction.user))
            except DuplicateItem:  # same name and same photo: try once more with a salted id
                salted = await asyncio.to_thread(make_item_id, name, data, str(interaction.id))
                fields = dataclasses.replace(fields, item_id=salted)
                item = await self.rec.add_item(data, fields, guild_id=gid, actor=actor(interaction.user))
        note = (
            "This server now has its own catalogue; searches here no longer use the shared default one." if was_default else None
        )
        await self._item_reply(interaction, item, note, title="Added to the catalogue")

    @app_commands.command(name="remove", description="Remove an item from this server's catalogue.")
    @app_commands.describe(item="The item's id")
    async def remove(self, interaction: discord.Interaction, item: ItemId) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        gid = interaction.guild_id or 0
        removed = await self.rec.remove_item(item.strip(), guild_id=gid, actor=actor(interaction.user))
        text = f"Removed **{render.plain(removed.name)}** (`{removed.item_id}`)."
        if await self.rec.catalogue_for(gid) == DEFAULT_GUILD:
            text += "\nThis server's catalogue is now empty, so searches use the shared default catalogue again."
        await respond(interaction, text)

    @app_commands.command(name="edit", description="Change an item's details.")
    @app_commands.describe(
        item="The item's id",
        name="New name",
        category="New category",
        price="New price",
        url="New link",
        description="New description",
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        item: ItemId,
        name: Name | None = None,
        category: Category | None = None,
        price: Price | None = None,
        url: Url | None = None,
        description: Description | None = None,
    ) -> None:
        changes = {"name": name, "category": category, "price": price, "url": check_url(url), "description": description}
        await interaction.response.defer(ephemeral=True, thinking=True)
        edited = await self.rec.edit_item(
            item.strip(), changes, guild_id=interaction.guild_id or 0, actor=actor(interaction.user)
        )
        await self._item_reply(interaction, edited, title="Item updated")

    @app_commands.command(name="show", description="Show one item.")
    @app_commands.describe(item="The item's id")
    async def show(self, interaction: discord.Interaction, item: ItemId) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self.rec.get_item(item.strip(), guild_id=interaction.guild_id or 0)
        await self._item_reply(interaction, found)

    @app_commands.command(name="list", description="List the catalogue, a page at a time.")
    @app_commands.describe(category="Only this category", page="Page number")
    async def list_(
        self, interaction: discord.Interaction, category: Category | None = None, page: app_commands.Range[int, 1, 100000] = 1
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        per_page = self.bot.options.page_size
        items, total, cid = await self.rec.list_items(
            guild_id=interaction.guild_id or 0, category=category, page=page, per_page=per_page
        )
        embed = render.list_embed(items, total, page, per_page, cid, category=category, currency=self.bot.options.currency)
        await respond(interaction, render.Reply(embeds=[embed]))

    @app_commands.command(name="stats", description="Catalogue statistics.")
    async def stats(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        gid = interaction.guild_id or 0
        stats = await self.rec.stats(guild_id=gid)
        embed = render_community.add_community_field(render.stats_embed(stats), await self.rec.community(guild_id=gid))
        await respond(interaction, render.Reply(embeds=[embed]))

    @app_commands.command(name="label", description="Tell me the right category of a photo I answered.")
    @app_commands.describe(
        message="The photo's message or my reply to it: its link (Copy Message Link) or id",
        category="The right category (one of the catalogue's)",
        photo="Which photo of that message (1 = the first)",
    )
    async def label(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, 200],
        category: Category,
        photo: app_commands.Range[int, 1, 10] = 1,
    ) -> None:
        gid = interaction.guild_id or 0
        message_id = message_id_from(message, gid)
        await interaction.response.defer(ephemeral=True, thinking=True)
        feedback = await self.rec.label_photo(
            guild_id=gid, message_id=message_id, category=category.strip(), actor=actor(interaction.user), photo=photo
        )
        await respond(interaction, render_community.label_done(feedback))

    @label.autocomplete("category")
    async def _label_categories(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """The categories containing what was typed (those starting with it first), 25 at most: of the
        catalogue that answered the message typed in `message`, else of the server's catalogue now. None for
        members who may not label (discord.py runs no cog check before an autocomplete)."""
        gid = interaction.guild_id or 0
        try:
            message_id: int | None = message_id_from(str(getattr(interaction.namespace, "message", None) or ""), gid)
        except BadOption:  # not typed yet, or not a message of this server
            message_id = None
        try:
            if not await is_moderator(interaction):
                return []
            names = await self.rec.categories(guild_id=gid, message_id=message_id)
        except RecommenderError as e:
            log.warning("category autocomplete for guild %s: %s", interaction.guild_id, e)
            return []
        typed = current.strip().casefold()
        hits = sorted((c for c in names if typed in c.casefold()), key=lambda c: (not c.casefold().startswith(typed), c))
        return [app_commands.Choice(name=c[:100], value=c[:100]) for c in hits[:25]]

    @app_commands.command(name="retrain", description="Retrain the category classifier of this server's catalogue now.")
    async def retrain(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        gid = interaction.guild_id or 0
        self.rec.refresh(gid)  # also picks up items a `lookalike import --guild` added while the bot ran
        if await self.rec.catalogue_for(gid) == DEFAULT_GUILD:
            await respond(
                interaction,
                "This server has no items of its own yet (it uses the shared default catalogue), so there is nothing to retrain.",
            )
            return
        head = await self.rec.retrain(gid)
        text = (
            f"Retrained: a {head.classifier.method} classifier over {len(head.classifier.labels)} categories."
            if head
            else "The catalogue is empty."
        )
        await respond(interaction, text)

    @app_commands.command(
        name="import", description="Import items from a CSV (with image URLs) or a ZIP (images plus a CSV, or category folders)."
    )
    @app_commands.describe(file="A .csv with columns id, name, category, price, url, description, image_url; or a .zip")
    async def import_(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        gid = interaction.guild_id or 0
        limit = self.bot.options.import_max_bytes
        self.rec.check_upload(file.filename)
        if file.size > limit:
            raise BadManifest(
                f"{render.plain(file.filename, 80)} is {file.size / 1e6:.1f} MB; imports are limited to {limit / 1e6:.0f} MB. "
                "Split it into smaller files."
            )
        if gid in self._importing:
            await interaction.response.send_message(
                "An import is already running for this server; wait for it to finish.", ephemeral=True
            )
            return
        self._importing.add(gid)
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self._import(interaction, file, gid)
        finally:
            self._importing.discard(gid)

    async def _import(self, interaction: discord.Interaction, file: discord.Attachment, gid: int) -> None:
        try:
            data = await file.read()
        except discord.HTTPException:
            raise BadManifest(f"I couldn't download {render.plain(file.filename, 80)}; please upload it again.") from None
        max_rows = self.bot.options.import_max_rows
        notes = ImportNotes()
        records = await self.rec.upload_records(data, file.filename, max_rows=max_rows, notes=notes)
        if len(records) > max_rows:
            raise BadManifest(
                f"{render.plain(file.filename, 80)} has more than {max_rows:,} rows; /catalog import takes at most "
                f"{max_rows:,}. For big catalogues, run `lookalike import --guild {gid} "
                f"{file.filename.replace('`', '')[:80]}` where the bot runs."
            )
        total = len(records)
        interval = self.bot.options.progress_interval_s
        editor = await progress_message(interaction, render.import_progress(0, total, ImportSummary()), interval)
        try:
            summary = await self.rec.import_items(
                records,
                guild_id=gid,
                actor=actor(interaction.user),
                total=total,
                fetch=self.bot.fetcher,
                progress=lambda done, n, s: editor.update(render.import_progress(done, n, s)),
            )
            if summary.added or summary.updated:
                self.rec.schedule_retrain(gid)  # once, in the background, after the whole import
            done = render.import_progress(summary.done, total, summary).replace("Importing…", "Imported:")
            await editor.finish(done)
        except asyncio.CancelledError:  # the bot is stopping: say so, or the message stays at "Importing… 120/5,000"
            await asyncio.shield(editor.abandon(STOPPED.format(work="import", again="upload the file to `/catalog import`")))
            raise
        finally:  # an error or a cancellation must not orphan a pending progress edit
            await editor.close()
        content = render.clip("\n".join(t for t in (done, _notes_line(notes)) if t), render.MAX_CONTENT)
        embed = render.import_summary(summary, source=file.filename)
        await report(interaction, editor, render.Reply(content=content, embeds=[embed]), f"import of {file.filename!r} ({done})")

    @app_commands.command(name="sync", description="Make this server's catalogue equal to a shop's product feed.")
    @app_commands.describe(
        url="The feed's address: a Google Merchant Center feed, or a Shopify / WooCommerce product CSV export",
        format="The feed's format (default: told from its content)",
        category_level="Which level of 'Apparel > Women > Dresses' is the category (default: the last)",
        currency="The prices' currency, for CSV exports that name none (e.g. EUR)",
        shop_url="The shop's address, for product links in CSV exports (https://shop.example)",
        keep_missing="Keep items the feed no longer names (out-of-stock ones are still taken out)",
    )
    @app_commands.choices(format=FORMATS, category_level=LEVELS)
    async def sync_(
        self,
        interaction: discord.Interaction,
        url: Url,
        format: str = "auto",
        category_level: str = "last",
        currency: app_commands.Range[str, 3, 3] | None = None,
        shop_url: Url | None = None,
        keep_missing: bool = False,
    ) -> None:
        gid = interaction.guild_id or 0
        check_url(url)
        if gid in self._importing:
            await interaction.response.send_message(
                "An import or a sync is already running for this server; wait for it to finish.", ephemeral=True
            )
            return
        self._importing.add(gid)
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            options = {"format": format, "category_level": category_level, "currency": currency, "shop_url": shop_url}
            await self._sync(interaction, gid, url, options, keep_missing)
        finally:
            self._importing.discard(gid)

    async def _sync(
        self, interaction: discord.Interaction, gid: int, url: str, options: dict[str, str | None], keep_missing: bool
    ) -> None:
        editor = await progress_message(interaction, "Syncing… reading the feed", self.bot.options.progress_interval_s)
        try:
            summary = await self.rec.sync_feed(
                url,
                guild_id=gid,
                actor=actor(interaction.user),
                fetcher=self.bot.fetcher,
                options=options,
                keep_missing=keep_missing,
                progress=lambda done, n, s: editor.update(render_feeds.sync_progress(done, n, s)),
            )
            s = summary.imported
            if s.added or s.updated or summary.removed:
                self.rec.schedule_retrain(gid)
            done = render_feeds.sync_progress(s.done, s.done, s).replace("Syncing…", "Synced:")
            await editor.finish(done)
        except asyncio.CancelledError:
            await asyncio.shield(editor.abandon(STOPPED.format(work="sync", again="run `/catalog sync`")))
            raise
        finally:
            await editor.close()
        embed = render_feeds.sync_summary(summary, source=url)
        await report(interaction, editor, render.Reply(content=done, embeds=[embed]), f"sync of {url} ({done})")


def _notes_line(notes: ImportNotes) -> str | None:
    """Warnings about the file, and which item ids differ from their file names (None: nothing to say)."""
    if not notes.count and not notes.warnings:
        return None
    text = " ".join(render.plain(w, 400) for w in notes.warnings)
    if notes.count:
        shown = "; ".join(
            f"{render.plain(where, 60)} → `{item_id.replace('`', '')[:60]}` ({why})" for where, item_id, why in notes.renamed[:3]
        )
        more = f" and {notes.count - 3:,} more" if notes.count > 3 else ""
        text += f" {notes.count:,} item ids differ from their file names: {shown}{more}."
    return render.clip(text.strip(), 1900)


async def setup(bot: LookalikeBot) -> None:
    await bot.add_cog(Catalog(bot))
