"""Shop feeds from Discord, end to end in the sandbox: `/config feed` schedules a sync that runs in
the background and a photo is then answered from the synced items, with their prices (in the
feed's currency) and links; `/catalog sync` by hand, with its summary; a failing feed reported to
the moderators once, not at every run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from shop_feeds import Product, Shop, demo_photo, google_rss, shopify_csv
from sqlalchemy import update

from recommender.rows import now
from recommender.schema import FeedRow

from harness import Harness, MakeHarness, embed_text, held_out, jpeg

OPTIONS = {"fetch_private_urls": True, "feed_check_s": 0.1, "progress_interval_s": 0.2}


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    s = await Shop().start()
    yield s
    await s.stop()


def products(shop: Shop) -> list[Product]:
    out = []
    for n, category in enumerate(("shoes", "dress", "hat", "pants", "t-shirt", "skirt")):
        for i in range(2):
            image = shop.photo(f"{category}-{i}.jpg", demo_photo(category, i).read_bytes())
            out.append(Product(f"{category}-{i}", f"{category.title()} {i}", image, price=f"{20 + n * 10 + i}.50 EUR",
                               product_type=f"Apparel > {category}"))  # fmt: skip
    return out


async def eventually(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return result


def scheduler(h: Harness) -> Any:
    assert h.bot is not None
    cog = h.bot.get_cog("Feeds")  # an extension's module is loaded apart: its class is not this process's import
    assert cog is not None
    return cog.scheduler  # type: ignore[attr-defined]


async def due_now(h: Harness) -> None:
    assert h.rec is not None
    async with h.rec.store.session() as s, s.begin():
        await s.execute(update(FeedRow).values(next_run_at=now()))


async def test_a_scheduled_feed_syncs_and_photos_are_answered_from_it(make_harness: MakeHarness, shop: Shop) -> None:
    h = await make_harness(options=OPTIONS)
    assert h.rec is not None
    shop.feed = google_rss(shop, products(shop))
    inter = await h.slash(h.owner, "config feed", {"url": f"{shop.base}/feed", "every": 12})
    assert inter.original is not None and "every 12 hours" in inter.original.content
    await eventually(lambda: scheduler(h).runs >= 1)
    items, total, cid = await h.rec.list_items(guild_id=h.guild.id, per_page=50)
    assert cid == h.guild.id and total == 12
    feed = await h.rec.feed(h.guild.id)
    assert feed is not None and feed.last_error is None and feed.next_run_at is not None
    assert 10.5 * 3600 < (feed.next_run_at - now()).total_seconds() < 13.5 * 3600  # 12 h, jittered
    shown = await h.slash(h.owner, "config show")
    assert shown.original is not None
    [line] = [f["value"] for f in shown.original.embeds[0]["fields"] if f["name"] == "Shop feed"]
    assert line.startswith(f"<{shop.base}/feed> · every 12 hours · last synced ") and "failed" not in line

    reply = await h.ask(h.alice, [jpeg(held_out("shoes")[0])])
    text = embed_text(reply)
    assert "€" in text and "$" not in text  # the feed's currency, not the bot's
    assert "https://shop.example/products/" in text  # links to the product pages
    assert reply.embeds[0]["footer"]["text"] == "Searched this server's catalogue"
    assert [a["action"] for a in await h.audit()][:2] == ["sync", "import"]  # done by the scheduler
    h.assert_clean()


async def test_catalog_sync_by_hand_shows_its_summary(make_harness: MakeHarness, shop: Shop) -> None:
    h = await make_harness(options=OPTIONS)
    shop.feed = shopify_csv(shop, products(shop)[:4])
    inter = await h.sandbox.invoke_slash(
        h.guild,
        h.channel,
        h.owner,
        "catalog sync",
        {"url": f"{shop.base}/feed", "currency": "EUR", "shop_url": "https://shop.example"},
    )
    await h.sandbox.wait_until(lambda: inter.original is not None and bool(inter.original.embeds), 60)
    assert inter.original is not None and inter.original.ephemeral and inter.followups == []
    assert inter.original.content.startswith("Synced: 4/4")
    fields = {f["name"]: f["value"] for f in inter.original.embeds[0]["fields"]}
    assert fields["Added"] == "4" and fields["Removed"] == "0" and "Shopify" in inter.original.embeds[0]["title"]
    assert h.rec is not None
    item = await h.rec.get_item("shoes-0", guild_id=h.guild.id)
    assert item.url == "https://shop.example/products/shoes-0" and item.attributes["currency"] == "EUR"
    refused = await h.slash(h.alice, "catalog sync", {"url": f"{shop.base}/feed"})
    assert refused.original is None or "Synced" not in (refused.original.content or "")
    h.assert_clean()


async def test_a_failing_feed_is_reported_once(make_harness: MakeHarness, shop: Shop) -> None:
    h = await make_harness(options=OPTIONS)
    await h.slash(h.owner, "config feed", {"url": f"{shop.base}/nowhere", "every": 1}, channel=h.chat)
    await eventually(lambda: scheduler(h).runs >= 1)

    def reports() -> list[str]:
        return [m.content for m in h.sent() if m.channel_id == h.chat.id and "failed" in m.content]

    await eventually(reports)
    assert "HTTP 404" in reports()[0]
    await due_now(h)
    await eventually(lambda: scheduler(h).runs >= 2)
    await asyncio.sleep(0.3)
    assert len(reports()) == 1  # the same failure an hour later is not news
    h.assert_clean()


async def test_a_sync_cut_short_by_a_restart_runs_after_it(make_harness: MakeHarness, shop: Shop) -> None:
    h = await make_harness(options=OPTIONS)
    shop.feed = google_rss(shop, products(shop)[:3])
    shop.feed_open.clear()
    await h.slash(h.owner, "config feed", {"url": f"{shop.base}/feed", "every": 24})
    await eventually(lambda: shop.hits["/feed"] >= 1)  # the sync is under way, waiting for the feed
    await h.restart()  # the schedule and the lease are in the database: the new process takes over
    shop.feed_open.set()
    await eventually(lambda: scheduler(h).runs >= 1)
    assert h.rec is not None and (await h.rec.list_items(guild_id=h.guild.id))[1] == 3
    h.assert_clean()


async def test_a_moderators_sync_cut_short_by_a_restart_says_so(make_harness: MakeHarness, shop: Shop) -> None:
    """A restart cancelled a running /catalog sync (or import) after the grace period, and its progress message
    stayed at "Syncing…" for good: the moderator could not know that it stopped, nor that running it again
    finishes it."""
    h = await make_harness(options={**OPTIONS, "shutdown_grace_s": 0.2})
    shop.feed = google_rss(shop, products(shop)[:3])
    shop.feed_open.clear()
    inter = await h.sandbox.invoke_slash(h.guild, h.channel, h.owner, "catalog sync", {"url": f"{shop.base}/feed"})
    await eventually(lambda: shop.hits["/feed"] >= 1)  # the sync is under way, waiting for the feed
    await h.restart()
    shop.feed_open.set()
    [message] = inter.messages
    assert message.content.startswith("Stopped: the bot restarted before the sync finished. What was done is kept")
    assert "`/catalog sync` again" in message.content
    h.assert_clean()
