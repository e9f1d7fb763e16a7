"""Shop-feed syncs in words: progress, the summary embed, a schedule, a failure report."""

from __future__ import annotations

import discord

from recommender.records import FeedSchedule, ImportSummary, SyncSummary

from .render import MAX_TITLE, OK_COLOUR, WARN_COLOUR, clip, failure_lines, fit_lines, plain

FORMAT_NAMES = {"google": "Google Merchant Center", "shopify": "Shopify", "woocommerce": "WooCommerce"}


def sync_progress(done: int, total: int | None, summary: ImportSummary) -> str:
    of = f"{done}/{total} ({done / total:.0%})" if total else str(done)
    return (
        f"Syncing… {of} — {summary.added} added, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {len(summary.failed)} failed"
    )


def sync_summary(summary: SyncSummary, *, source: str) -> discord.Embed:
    s = summary.imported
    ok = not s.failed and not summary.warnings
    title = f"Sync of the {FORMAT_NAMES.get(summary.format, summary.format)} feed finished"
    embed = discord.Embed(title=clip(title, MAX_TITLE), colour=OK_COLOUR if ok else WARN_COLOUR)
    for name, value in (
        ("Added", s.added),
        ("Updated", s.updated),
        ("Unchanged", s.unchanged),
        ("Removed", summary.removed),
        ("Not for sale", summary.unavailable),
        ("Failed", len(s.failed)),
    ):
        embed.add_field(name=name, value=str(value), inline=True)
    lines = [plain(w, 300) for w in summary.warnings]
    total = len(lines) + (1 + len(s.failed) if s.failed else 0)
    if s.failed:
        lines += ["**Failed products**", *failure_lines(s.failed, 3000)]
    if lines:
        embed.description = fit_lines(lines, 3000, total=total)
    embed.set_footer(text=clip(f"{source} · {s.seconds:.1f}s", 200))
    return embed


def every(seconds: int) -> str:
    hours = seconds / 3600
    return "every hour" if hours == 1 else f"every {hours:g} hours"


def feed_scheduled(url: str, every_s: int) -> str:
    return f"I'll sync this server's catalogue from <{plain(url, 300)}> {every(every_s)}, starting now."


def feed_line(feed: FeedSchedule) -> str:
    """A scheduled feed for /config show: where, how often, how the last sync went."""
    parts = [f"<{plain(feed.url, 300)}>", every(feed.every_s)]
    if feed.last_run_at is not None:
        parts.append(f"last synced {feed.last_run_at:%Y-%m-%d %H:%M} UTC")
    if feed.last_error:
        parts.append(f"⚠️ last sync failed: {plain(feed.last_error, 300)}")
    return clip(" · ".join(parts), 1000)


def feed_failed(feed: FeedSchedule, error: str) -> str:
    return (
        f"⚠️ The scheduled sync of the shop feed <{plain(feed.url, 300)}> failed: {plain(error, 600)}\n"
        f"I'll keep trying {every(feed.every_s)}, and won't repeat this message until a sync works again."
    )
