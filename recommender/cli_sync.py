"""`lookalike sync FEED_URL_OR_FILE`: the catalogue made equal to a shop's feed (sync.py). Web
fetching follows the bot's options, read the same way: `LOOKALIKE_FETCH_PRIVATE_URLS=1` (or
`fetch_private_urls = true` in the config file) lets it reach loopback and private addresses."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from .errors import BadOption
from .feeds import FORMATS
from .names import shown
from .offers import CATEGORY_LEVELS

FETCH_DEFAULTS: dict[str, Any] = {"fetch_private_urls": False, "fetch_timeout_s": 15.0, "fetch_concurrency": 8}


def fetch_options(extra: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fetch options as the bot reads them: LOOKALIKE_<KEY>, else the config file, else defaults."""
    env = os.environ if env is None else env
    out = dict(FETCH_DEFAULTS)
    for key, default in FETCH_DEFAULTS.items():
        raw = env.get(f"LOOKALIKE_{key.upper()}", extra.get(key, extra.get(key.replace("_", "-"))))
        if raw is None:
            continue
        if isinstance(default, bool):
            out[key] = raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            out[key] = type(default)(raw)
        except (TypeError, ValueError):
            raise BadOption(f"{key} has an invalid value {shown(str(raw), 40)!r}.") from None
    if not 0 < out["fetch_timeout_s"] < math.inf or out["fetch_concurrency"] < 1:  # 0 at once: waits for ever
        raise BadOption("fetch_timeout_s must be a positive number of seconds and fetch_concurrency at least 1.")
    return out


async def cmd_sync(args: argparse.Namespace) -> int:
    from .cli import _actor, _open, _settings, _where, print_failures
    from .names import shown
    from .progress import Progress
    from .webfetch import UrlFetcher, fetch_session

    settings = _settings(args)
    opts = fetch_options(settings.extra)
    async with await _open(args) as rec, fetch_session(opts["fetch_private_urls"]) as session:
        fetcher = UrlFetcher(
            session,
            max_bytes=settings.max_image_bytes,
            timeout_s=opts["fetch_timeout_s"],
            concurrency=opts["fetch_concurrency"],
            allow_private=opts["fetch_private_urls"],
        )
        print(f"syncing {shown(args.source)} into the {_where(args.guild)} catalogue with {rec.model}", file=sys.stderr)
        bar = Progress(None, "sync")
        try:
            summary = await rec.sync_feed(
                args.source,
                guild_id=args.guild,
                actor=_actor(),
                fetcher=fetcher,
                options={
                    "format": args.format,
                    "category_level": args.category_level,
                    "currency": args.currency,
                    "shop_url": args.shop_url,
                },
                keep_missing=args.keep_missing,
                progress=bar.update,
            )
        finally:
            bar.close()
        s = summary.imported
        print(
            f"{summary.format} feed: added {s.added}, updated {s.updated}, unchanged {s.unchanged}, failed {len(s.failed)}, "
            f"removed {summary.removed} ({summary.unavailable} not for sale) in {s.seconds:.1f}s"
        )
        print_failures(s.failed, args.show_failures)
        for warning in summary.warnings:
            print(f"warning: {shown(warning)}")
        if not args.no_train and (s.added or s.updated or summary.removed):
            print("fitting the catalogue's head (category classifier, search order, open set) ...", file=sys.stderr)
            await rec.retrain(args.guild, force=False)
    return 0


def add_sync(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser, model: argparse.ArgumentParser
) -> None:
    from .cli import count

    s = sub.add_parser(
        "sync",
        parents=[common, model],
        help="make a catalogue equal to a shop's feed (Google Merchant Center, Shopify, WooCommerce)",
        description="Import a shop's product feed: new products added, changed ones updated (re-embedded only when "
        "their picture changed), products out of stock removed, and those gone from the feed (--keep-missing keeps these). "
        "Re-running resumes; unchanged pictures are neither downloaded again nor embedded.",
    )
    s.add_argument("source", metavar="FEED_URL_OR_FILE", help="an http(s) address or a file")
    s.add_argument("--format", choices=["auto", *FORMATS], default="auto", help="the feed's format (default: from its content)")
    s.add_argument(
        "--category-level",
        choices=CATEGORY_LEVELS,
        default="last",
        help="which level of the product type ('A > B > C') is the category (default last)",
    )
    s.add_argument("--currency", help="the prices' currency, for CSV exports that carry none (e.g. EUR)")
    s.add_argument("--shop-url", help="the shop's address, for product links in CSV exports (https://shop.example)")
    s.add_argument(
        "--keep-missing", action="store_true", help="keep items the feed no longer names (out-of-stock ones are still taken out)"
    )
    s.add_argument(
        "--no-train",
        action="store_true",
        help="skip fitting the catalogue's head (category classifier, search order, open set) at the end",
    )
    s.add_argument("--show-failures", type=count, default=20, help="failures listed in the summary (default 20)")
    s.set_defaults(func=cmd_sync, resumable=True)
