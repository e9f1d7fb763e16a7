"""Results -> Discord messages: embeds, text and a thumbnail grid, always within Discord's limits.

Plain functions over the recommender's records; nothing here sends anything. Grid drawing is CPU
work, so callers run `results_reply` in a thread. Limits: content 2,000 characters, 10 embeds and
10 files per message, embed title 256, description 4,096, 25 fields, field value 1,024, and 6,000
characters over all embeds of one message.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl

from recommender.config import DEFAULT_GUILD
from recommender.records import GuildSettings, ImportSummary, Item, Match, SimilarResult
from recommender.urls import is_web_url

from .grid import thumbnail_grid

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELD_VALUE = 1024
MAX_EMBED_TOTAL = 6000
EMBED_BUDGET = 5800  # a little under 6,000 for all embeds of one message

COLOUR = discord.Colour(0x5865F2)
OK_COLOUR = discord.Colour(0x57F287)
WARN_COLOUR = discord.Colour(0xFEE75C)


@dataclass
class Reply:
    """What to send: text, embeds and (filename, bytes) files referenced as attachment://filename."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)

    def without_files(self) -> Reply:
        """The same answer with no uploads (where the bot may not attach files): embeds lose their images."""
        embeds = [discord.Embed.from_dict({k: v for k, v in e.to_dict().items() if k != "image"}) for e in self.embeds]
        return Reply(content=self.content, embeds=embeds)

    def _files(self) -> list[discord.File]:
        return [discord.File(io.BytesIO(data), filename=name) for name, data in self.files]  # fresh objects each call

    def send_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a new message: channel.send() or response.send_message()."""
        out: dict[str, Any] = {"content": self.content, "embeds": self.embeds}
        if self.files:
            out["files"] = self._files()
        return out

    def edit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for edit_original_response(): the whole message is replaced."""
        return {"content": self.content, "embeds": self.embeds, "attachments": self._files()}


@dataclass(frozen=True)
class Query:
    """One answered photo (or item) of a reply: its label and the recommender's result."""

    label: str
    result: SimilarResult


# -- text helpers --------------------------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def plain(text: str, limit: int = 100) -> str:
    """User text made safe for markdown (and for masked link labels), then clipped: escaping can
    double the length, so the result, escapes included, is at most `limit` characters."""
    text = " ".join(str(text).split())
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text)).replace("[", "(").replace("]", ")")
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rstrip()
    if (len(cut) - len(cut.rstrip("\\"))) % 2:  # don't leave an escape cut in half
        cut = cut[:-1]
    return cut + "…"


def price(value: float | None, currency: str = "$") -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{currency}{value:,.2f}"


SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def item_price(item: Item, default: str = "$") -> str | None:
    """The item's price in its own currency (a shop feed names it), else in the bot's."""
    code = str(item.attributes.get("currency") or "")[:3]
    return price(item.price, SYMBOLS.get(code, f"{code} " if code else default))


def percent(p: float) -> str:
    return f"{p:.0%}"


def _link(url: str | None) -> str | None:
    """A URL safe to show as a link: http(s) with a host, short, nothing that breaks markdown."""
    if not url or len(url) > 300 or any(c in url for c in " ()<>") or not is_web_url(url):
        return None
    try:
        return url if yarl.URL(url).host else None
    except ValueError:
        return None


def fit_lines(lines: Sequence[str], limit: int, more: str = "… and {n} more", total: int | None = None) -> str:
    """Join lines within `limit` characters; lines that don't fit become one "… and N more" line. `total`: how many
    lines `lines` stands for, when the caller made only the first ones (the rest count as more)."""
    total = len(lines) if total is None else total
    if total == len(lines) and sum(len(line) + 1 for line in lines) - 1 <= limit:
        return "\n".join(lines)
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        after = total - i - 1
        need = len(line) + (1 if out else 0)
        reserve = len(more.format(n=after)) + 1 if after else 0
        if used + need + reserve > limit:
            if after == 0 and used + need <= limit:
                out.append(line)
            else:
                out.append(more.format(n=total - i))
            break
        out.append(line)
        used += need
    else:
        if total > len(lines):
            out.append(more.format(n=total - len(lines)))
    return "\n".join(out)[:limit]


def failure_lines(failed: Sequence[tuple[str, str, str]], limit: int) -> list[str]:
    """The first failures of an import or a sync as lines, as many as `limit` characters could hold (each line is 8
    or more): a feed may fail on all of its 250,000 rows, and formatting them all held the event loop for seconds."""
    return [f"`{clip(i or '?', 60).replace('`', '')}` ({plain(w, 60)}): {plain(r, 200)}" for i, w, r in failed[: limit // 8 + 1]]


def embed_size(embed: discord.Embed) -> int:
    """The characters Discord counts towards the 6,000 of a message's embeds."""
    n = len(embed.title or "") + len(embed.description or "")
    n += len(embed.footer.text or "") if embed.footer else 0
    n += len(embed.author.name or "") if embed.author else 0
    return n + sum(len(f.name or "") + len(f.value or "") for f in embed.fields)


# -- predictions and matches ---------------------------------------------------------------------


NOTHING_LIKE_THIS = "Nothing like this in the catalogue"


def prediction_title(result: SimilarResult) -> str:
    if result.nothing_like_this:
        return NOTHING_LIKE_THIS
    p = result.prediction
    if p is None:
        return "Closest matches"
    if p.sure and p.category:  # a shop's category is text: in a plain-text answer it must not become a link
        return f"Looks like: {plain(p.category, MAX_TITLE - 20)} ({percent(p.probability)})"
    return "Looks like: not sure"


def prediction_hint(result: SimilarResult) -> str | None:
    p = result.prediction
    if p is None or p.sure or not p.ranked:
        return None
    guesses = ", ".join(f"{plain(c, 40)} {percent(q)}" for c, q in p.ranked[:3])
    return f"-# Best guesses: {guesses}"


def match_line(n: int, match: Match, currency: str = "$") -> str:
    item = match.item
    name = plain(item.name, 80)
    url = _link(item.url)
    head = f"**{n}.** [{name}]({url})" if url else f"**{n}.** **{name}**"
    parts = [plain(item.category, 40)]
    if (p := item_price(item, currency)) is not None:
        parts.append(p)
    parts.append(f"{percent(match.score)} similar")
    return f"{head} · {' · '.join(parts)} · `{clip(item.item_id, 60).replace('`', '')}`"


def catalogue_note(result: SimilarResult) -> str:
    return "Searched the shared default catalogue" if result.catalogue_id == DEFAULT_GUILD else "Searched this server's catalogue"


def results_reply(
    queries: Sequence[Query],
    thumbnails: dict[int, bytes],
    *,
    notes: Iterable[str] = (),
    currency: str = "$",
    cell: int = 160,
    rich: bool = True,
) -> Reply:
    """One embed per query (prediction as title, numbered matches), each with a grid image whose
    numbered cells are the stored thumbnails of its matches. Notes (skipped files) go in the text.
    rich=False (the bot may not embed links here): the same answer as text, with the grids attached."""
    queries = list(queries)[:MAX_EMBEDS]
    grids = [_grid(q, thumbnails, cell) for q in queries]
    if not rich:
        return _text_reply(queries, grids, notes, currency)
    reply = Reply(content=_notes(notes))
    share = EMBED_BUDGET // max(len(queries), 1)
    for i, (q, grid) in enumerate(zip(queries, grids), start=1):
        embed = discord.Embed(title=prediction_title(q.result), colour=COLOUR)
        if len(queries) > 1 or q.label:
            embed.set_author(name=clip(q.label or f"Photo {i}", MAX_TITLE))
        footer = catalogue_note(q.result)
        embed.set_footer(text=footer)
        room = min(MAX_DESCRIPTION, share - len(embed.title or "") - len(footer) - len(q.label or "") - 8)
        embed.description = fit_lines(_result_lines(q, currency), max(room, 100))
        if grid is not None:
            name = f"matches-{i}.jpg"
            reply.files.append((name, grid))
            embed.set_image(url=f"attachment://{name}")
        reply.embeds.append(embed)
    return reply


def _result_lines(q: Query, currency: str) -> list[str]:
    if q.result.nothing_like_this and q.result.matches:
        hint: str | None = "-# I don't think the shop has anything like this. The closest items, though none is close:"
    else:
        hint = prediction_hint(q.result)
    lines = [match_line(n, m, currency) for n, m in enumerate(q.result.matches, start=1)]
    if not lines:
        lines = ["No catalogue items match (try without the category or price filters)."]
    return [hint, *lines] if hint else lines


def _grid(q: Query, thumbnails: dict[int, bytes], cell: int) -> bytes | None:
    if not q.result.matches:
        return None
    return thumbnail_grid([thumbnails.get(m.item.pk) for m in q.result.matches], cell=cell)


def _text_reply(queries: list[Query], grids: list[bytes | None], notes: Iterable[str], currency: str) -> Reply:
    """The answer without embeds: a heading per query, its numbered matches, the grids as files."""
    note_text = _notes(notes)
    blocks = []
    share = (MAX_CONTENT - len(note_text or "") - 2) // max(len(queries), 1)
    for i, q in enumerate(queries, start=1):
        label = clip(q.label or (f"Photo {i}" if len(queries) > 1 else ""), 100)
        head = f"**{plain(label, 100)} · {prediction_title(q.result)}**" if label else f"**{prediction_title(q.result)}**"
        lines = [head, *_result_lines(q, currency), f"-# {catalogue_note(q.result)}"]
        blocks.append(fit_lines(lines, max(share - 1, 100)))
    content = "\n\n".join(b for b in [note_text, *blocks] if b)
    reply = Reply(content=fit_lines(content.split("\n"), MAX_CONTENT))
    reply.files = [(f"matches-{i}.jpg", g) for i, g in enumerate(grids, start=1) if g is not None]
    return reply


def _notes(notes: Iterable[str]) -> str | None:
    lines = [n for n in notes if n]
    return fit_lines(lines, MAX_CONTENT) if lines else None


# -- catalogue items -----------------------------------------------------------------------------


def item_embed(item: Item, *, currency: str = "$", thumbnail: bytes | None = None, title: str | None = None) -> Reply:
    embed = discord.Embed(title=clip(title or item.name, MAX_TITLE), colour=COLOUR)
    if title:
        embed.description = f"**{plain(item.name, 200)}**"
    url = _link(item.url)
    if url:
        embed.url = url
    embed.add_field(name="ID", value=f"`{clip(item.item_id, 200).replace('`', '')}`", inline=True)
    embed.add_field(name="Category", value=plain(item.category, 200), inline=True)
    if (p := item_price(item, currency)) is not None:
        embed.add_field(name="Price", value=p, inline=True)
    if url:
        embed.add_field(name="Link", value=clip(url, MAX_FIELD_VALUE), inline=False)
    if item.description:
        embed.add_field(name="Description", value=plain(item.description, 1000), inline=False)
    attributes = [(clip(str(k), 100), v) for k, v in item.attributes.items() if str(k).strip()][:10]
    for key, value in attributes:  # blank keys are skipped: Discord refuses an empty field name
        embed.add_field(name=key, value=plain(str(value), 200) or "-", inline=True)
    who = item.added_by
    embed.add_field(
        name="Added by", value=f"<@{who[5:]}>" if who.startswith("user:") and who[5:].isdigit() else clip(who, 200), inline=True
    )
    embed.set_footer(text=f"Updated {item.updated_at:%Y-%m-%d %H:%M} UTC")
    first_attribute = len(embed.fields) - 1 - len(attributes)
    while embed_size(embed) > MAX_EMBED_TOTAL and attributes:  # the attributes give way first
        embed.remove_field(first_attribute + len(attributes) - 1)
        attributes.pop()
    reply = Reply(embeds=[embed])
    if thumbnail:
        reply.files.append(("item.jpg", thumbnail))
        embed.set_thumbnail(url="attachment://item.jpg")
    return reply


def list_embed(
    items: Sequence[Item],
    total: int,
    page: int,
    per_page: int,
    catalogue_id: int,
    *,
    category: str | None = None,
    currency: str = "$",
) -> discord.Embed:
    pages = max(1, math.ceil(total / per_page))
    which = "Shared default catalogue" if catalogue_id == DEFAULT_GUILD else "This server's catalogue"
    title = which + (f" · {clip(category, 100)}" if category else "")
    embed = discord.Embed(title=title, colour=COLOUR)
    if not items:
        embed.description = "No items on this page." if total else "No items yet: add some with /catalog add or /catalog import."
    else:
        lines = []
        for it in items:
            bits = [plain(it.category, 40)]
            if (p := item_price(it, currency)) is not None:
                bits.append(p)
            lines.append(f"`{clip(it.item_id, 60).replace('`', '')}` **{plain(it.name, 80)}** · {' · '.join(bits)}")
        embed.description = fit_lines(lines, MAX_DESCRIPTION)
    more = " · use the page option for more" if page < pages else ""
    embed.set_footer(text=f"Page {page} of {pages} · {total} item{'s' if total != 1 else ''}{more}")
    return embed


def settings_embed(
    settings: GuildSettings, *, default_k: int, own_catalogue: bool, operator_remembers: bool = True
) -> discord.Embed:
    """/config show: watched channels, items per reply, moderator role, which catalogue is searched, and
    whether members' photos are remembered."""
    embed = discord.Embed(title="lookalike settings", colour=COLOUR)
    watched = fit_lines([f"<#{c}>" for c in sorted(settings.watched)], MAX_FIELD_VALUE)  # whole mentions only
    embed.add_field(name="Watched channels", value=watched or "none", inline=False)
    embed.add_field(name="Items per reply", value=str(settings.k or default_k), inline=True)
    role = f"<@&{settings.moderator_role_id}>" if settings.moderator_role_id else "Manage Server only"
    embed.add_field(name="Moderator role", value=role, inline=True)
    embed.add_field(name="Catalogue", value="this server's own" if own_catalogue else "shared default", inline=True)
    if not operator_remembers:
        kept = "not kept (turned off by the bot's operator)"
    elif settings.remember_photos:
        kept = "remembered as features, never the pictures (`/config remember-photos`)"
    else:
        kept = "not kept (`/config remember-photos`)"
    embed.add_field(name="Members' photos", value=kept, inline=False)
    return embed


def stats_embed(stats: dict[str, Any]) -> discord.Embed:
    which = "shared default" if stats.get("catalogue") == "default" else "this server's"
    embed = discord.Embed(title=f"Catalogue statistics ({which})", colour=COLOUR)
    embed.add_field(name="Items", value=str(stats.get("items", 0)), inline=True)
    model = f"{stats.get('model')}{'' if stats.get('pretrained') else ' (untrained)'}"
    embed.add_field(name="Model", value=clip(model, 200), inline=True)
    clf = stats.get("classifier")
    embed.add_field(
        name="Classifier", value=f"{clf['method']}, trained {clf['trained_at']}" if clf else "not trained yet", inline=True
    )
    cats = stats.get("categories") or {}
    if cats:
        lines = [f"{plain(c, 60)}: {n}" for c, n in cats.items()]
        embed.add_field(name=f"Categories ({len(cats)})", value=fit_lines(lines, MAX_FIELD_VALUE), inline=False)
    emb = stats.get("embeddings") or {}
    if emb:
        embed.add_field(
            name="Embeddings", value=clip(", ".join(f"{m}: {n}" for m, n in emb.items()), MAX_FIELD_VALUE), inline=False
        )
    return embed


# -- imports -------------------------------------------------------------------------------------


def import_progress(done: int, total: int | None, summary: ImportSummary) -> str:
    of = f"{done}/{total} ({done / total:.0%})" if total else str(done)
    return (
        f"Importing… {of} — {summary.added} added, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {len(summary.failed)} failed"
    )


def import_summary(summary: ImportSummary, *, source: str) -> discord.Embed:
    ok = not summary.failed
    embed = discord.Embed(title=clip(f"Import of {source} finished", MAX_TITLE), colour=OK_COLOUR if ok else WARN_COLOUR)
    for name, value in (
        ("Added", summary.added),
        ("Updated", summary.updated),
        ("Unchanged", summary.unchanged),
        ("Failed", len(summary.failed)),
    ):
        embed.add_field(name=name, value=str(value), inline=True)
    if summary.failed:
        lines = failure_lines(summary.failed, 3000)
        embed.description = fit_lines(["**Failed rows**", *lines], 3000, total=1 + len(summary.failed))
    embed.set_footer(text=f"{summary.seconds:.1f}s")
    return embed
