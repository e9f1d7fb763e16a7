"""`Recommender.sync_feed` against a shop on loopback (tests/shop_feeds.py): a first sync imports the
feed, a second one after changes does exactly the work the changes call for (counted on the shop's
requests and the model's embeddings), and hostile feeds and pictures each fail with a reason
without losing anything."""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from shop_feeds import BILLION_LAUGHS, Product, Shop, demo_photo, google_rss, google_tsv, shopify_csv, woocommerce_csv

from recommender.errors import BadManifest, SyncInProgress
from recommender.webfetch import UrlFetcher, fetch_session

from helpers import open_rec, run_cli

GUILD = 4242


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    s = await Shop().start()
    yield s
    await s.stop()


def stock(shop: Shop) -> dict[str, Product]:
    def photo(category: str, n: int = 0) -> str:
        return shop.photo(f"{category}-{n}.jpg", demo_photo(category, n).read_bytes())

    products = [
        Product("DR-1", "Linen dress", photo("dress"), price="49.00 USD", product_type="Apparel > Women > Dresses"),
        Product(
            "TS-1-S",
            "Crew tee",
            photo("t-shirt"),
            group="TS-1",
            product_type="Apparel > Men > T-shirts",
            extra_images=[photo("t-shirt", 1)],
            price="20.00 USD",
            sale_price="15.00 USD",
        ),  # fmt: skip
        Product("TS-1-M", "Crew tee", photo("t-shirt", 2), group="TS-1", color="Red", product_type="Apparel > Men > T-shirts"),
        Product("HAT-1", "Bucket hat", photo("hat"), price="19.00 USD", product_type="Apparel > Accessories > Hats"),
        Product("SH-1", "Runner", photo("shoes"), price="89.00 USD", product_type="Apparel > Shoes"),
        Product("SR-1", "Cargo shorts", photo("shorts"), price="35.00 USD", product_type="Apparel > Men > Shorts"),
        Product("PA-1", "Chinos", photo("pants"), availability="out_of_stock", product_type="Apparel > Men > Trousers"),
        Product("SK-1", "Pleated skirt", "/img/missing.jpg", product_type="Apparel > Women > Skirts"),
        Product("OW-1", "Parka", photo("outwear"), price="twelve dollars", product_type="Apparel > Outerwear"),
    ]
    return {p.id: p for p in products}


def pixel_bomb() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, "PNG")
    return out.getvalue()


async def sync(rec, shop: Shop, fetcher: UrlFetcher, **kw):  # type: ignore[no-untyped-def]
    return await rec.sync_feed(f"{shop.base}/feed", guild_id=GUILD, actor="test", fetcher=fetcher, **kw)


def failures(summary) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {item_id: reason for item_id, _, reason in summary.imported.failed}


async def test_a_second_sync_does_only_the_work_the_changes_call_for(db: str, shop: Shop) -> None:
    products = stock(shop)
    shop.feed = google_rss(shop, products.values())
    rec = await open_rec(db)
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=4, allow_private=True, backoff_s=0.01)
        first = await sync(rec, shop, fetcher, options={"category_level": "last"})
        s = first.imported
        assert first.format == "google"
        assert (s.added, s.updated, s.unchanged, first.removed, first.unavailable) == (5, 0, 0, 0, 1)
        assert set(failures(first)) == {"SK-1", "OW-1"}
        assert "HTTP 404" in failures(first)["SK-1"] and "twelve dollars" in failures(first)["OW-1"]
        assert rec.embedder.embedded == 5
        assert sum(shop.full.values()) == 5 and shop.hits["/img/missing.jpg"] == 1  # a 404 is not retried
        tee = await rec.get_item("TS-1", guild_id=GUILD)
        assert (tee.name, tee.category, tee.price, tee.url) == (
            "Crew tee",
            "T-shirts",
            15.0,
            "https://shop.example/products/TS-1",
        )
        assert tee.attributes["currency"] == "USD" and tee.attributes["regular_price"] == 20.0
        assert tee.attributes["color"] == "Blue, Red" and tee.attributes["variants"] == 2
        assert tee.attributes["images"] == [shop.url("/img/t-shirt-1.jpg"), shop.url("/img/t-shirt-2.jpg")]
        assert tee.description == "A soft cotton piece."
        dress = await rec.get_item("DR-1", guild_id=GUILD)
        assert dress.attributes["brand"] == "Northwind" and dress.attributes["gender"] == "female"

        # the shop changes: a price, a picture (same URL), a product gone, one sold out, a new variant
        products["DR-1"] = products["DR-1"].but(price="59.00 USD")
        shop.photo("hat-0.jpg", demo_photo("hat", 1).read_bytes())
        del products["SH-1"]
        products["SR-1"] = products["SR-1"].but(availability="out_of_stock")
        green = shop.photo("t-shirt-3.jpg", demo_photo("t-shirt", 3).read_bytes())
        products["TS-1-L"] = Product(
            "TS-1-L", "Crew tee", green, group="TS-1", color="Green", product_type="Apparel > Men > T-shirts"
        )
        shop.feed = google_rss(shop, products.values())
        shop.full.clear()
        shop.not_modified.clear()
        second = await sync(rec, shop, fetcher)
        s = second.imported
        assert (s.added, s.updated, s.unchanged, second.removed, second.unavailable) == (0, 3, 0, 2, 2)
        assert rec.embedder.embedded == 6  # only the hat's new picture
        assert dict(shop.full) == {"/img/hat-0.jpg": 1}  # downloaded: only the changed picture
        assert dict(shop.not_modified) == {"/img/dress-0.jpg": 1, "/img/t-shirt-0.jpg": 1}
        assert "/img/shorts-0.jpg" not in shop.hits or shop.hits["/img/shorts-0.jpg"] == 1  # sold out: not fetched again
        assert (await rec.get_item("DR-1", guild_id=GUILD)).price == 59.0
        assert (await rec.get_item("TS-1", guild_id=GUILD)).attributes["color"] == "Blue, Red, Green"
        items, total, _ = await rec.list_items(guild_id=GUILD, per_page=50)
        assert total == 3 and {i.item_id for i in items} == {"DR-1", "TS-1", "HAT-1"}

        # nothing changed: nothing downloaded, nothing embedded
        shop.full.clear()
        third = await sync(rec, shop, fetcher)
        assert (third.imported.unchanged, third.imported.updated, third.removed) == (3, 0, 0)
        assert rec.embedder.embedded == 6 and sum(shop.full.values()) == 0

        # the validators survive a restart: a new fetcher (a new process) still sends conditional requests
        fresh = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=4, allow_private=True)
        await sync(rec, shop, fresh)
        assert sum(shop.full.values()) == 0


@pytest.mark.parametrize("writer, fmt", [(google_tsv, "google"), (shopify_csv, "shopify"), (woocommerce_csv, "woocommerce")])
async def test_each_format_gives_the_same_catalogue(tmp_path: Path, shop: Shop, writer, fmt: str) -> None:  # type: ignore[no-untyped-def]
    products = [p for p in stock(shop).values() if p.id not in ("SK-1", "OW-1")]
    shop.feed = writer(shop, products)
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=4, allow_private=True)
        opts = {"currency": "EUR", "shop_url": "https://shop.example"} if fmt != "google" else {}
        summary = await sync(rec, shop, fetcher, options=opts)
        assert summary.format == fmt
        assert (summary.imported.added, summary.imported.failed, summary.unavailable) == (5, [], 1)
        tee = await rec.get_item("TS-1", guild_id=GUILD)
        assert tee.price == 15.0 and tee.attributes["currency"] == ("USD" if fmt == "google" else "EUR")
        assert tee.attributes["color"] == "Blue, Red" and tee.description == "A soft cotton piece."
        assert shop.url("/img/t-shirt-2.jpg") in tee.attributes["images"]
        link = {"google": "https://shop.example/products/TS-1", "shopify": "https://shop.example/products/TS-1"}
        assert tee.url == link.get(fmt, "https://shop.example/?post_type=product&p=102")  # DR-1 is 101, the tee 102
        assert (await rec.get_item("DR-1", guild_id=GUILD)).category == "Dresses"
        assert rec.embedder.embedded == 5


async def test_hostile_feeds_and_pictures_fail_alone_with_a_reason(tmp_path: Path) -> None:
    """127.0.0.2 plays the public internet; 127.0.0.1 and 10.0.0.1 are the shop's private network."""
    shop = await Shop().start("127.0.0.2")
    try:
        good = Product("DR-1", "Linen dress", shop.photo("dress-0.jpg", demo_photo("dress").read_bytes()))
        hostile = [
            good,
            Product("BIG-1", "Huge", "/huge.jpg"),
            Product("LO-1", "Loopback", f"/redirect?to=http://127.0.0.1:{shop.base.rsplit(':', 1)[1]}/img/dress-0.jpg"),
            Product("TEN-1", "Ten", "/redirect?to=http://10.0.0.1/x.jpg"),
            Product("NF-1", "Missing", "/img/nothing.jpg"),
            Product("PX-1", "Pixels", shop.photo("pixels.png", pixel_bomb())),
        ]
        rec = await open_rec(tmp_path / "c.db")
        async with rec, fetch_session(allow_private=False, allowed=lambda ip: ip == "127.0.0.2") as session:
            fetcher = UrlFetcher(
                session, max_bytes=1_000_000, timeout_s=20, concurrency=4, allowed=lambda ip: ip == "127.0.0.2", backoff_s=0.01
            )
            shop.feed = google_rss(shop, [good, Product("HAT-1", "Hat", shop.photo("hat-0.jpg", demo_photo("hat").read_bytes()))])
            assert (await sync(rec, shop, fetcher)).imported.added == 2

            tsv = google_tsv(shop, hostile).decode().splitlines()
            tsv.insert(2, "BAD-1\tBroken\ttoo\tmany\tcells\there\tand\tmore\tthan\tthe\theader\thas\tat\tall\tyes\tno")
            shop.feed = ("\n".join(tsv) + "\n").encode()
            summary = await sync(rec, shop, fetcher)
            why = failures(summary)
            assert summary.imported.unchanged == 1 and summary.removed == 0
            assert "larger than" in why["BIG-1"] and shop.streamed < 64 * 1024 * 1024  # never 2 GB
            assert "private network" in why["LO-1"] and "private network" in why["TEN-1"]
            assert "HTTP 404" in why["NF-1"]
            assert "9000×9000 pixels" in why["PX-1"]  # small on the wire, 81 megapixels decoded: refused from its header
            assert "cells" in why[""]  # the malformed row, by its line
            assert any("could not be read" in w for w in summary.warnings)
            assert (await rec.list_items(guild_id=GUILD))[1] == 2  # HAT-1, not in this feed, was kept

            shop.feed = BILLION_LAUGHS
            with pytest.raises(BadManifest, match="entities"):
                await sync(rec, shop, fetcher)
            assert (await rec.list_items(guild_id=GUILD))[1] == 2
    finally:
        await shop.stop()


async def test_a_feed_file_and_keep_missing(tmp_path: Path, shop: Shop) -> None:
    products = [p for p in stock(shop).values() if p.id in ("DR-1", "HAT-1")]
    feed = tmp_path / "products.xml"
    feed.write_bytes(google_rss(shop, products))
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher)
        feed.write_bytes(google_rss(shop, products[:1]))
        kept = await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher, keep_missing=True)
        assert kept.removed == 0 and (await rec.list_items(guild_id=GUILD))[1] == 2
        feed.write_bytes(google_rss(shop, [products[0].but(availability="out_of_stock")]))
        sold_out = await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher, keep_missing=True)
        assert sold_out.removed == 1  # out of stock: taken out even so, never recommended
        assert {i.item_id for i in (await rec.list_items(guild_id=GUILD))[0]} == {products[1].id}
        feed.write_bytes(google_rss(shop, products[:1]))
        gone = await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher)
        assert gone.removed == 1 and (await rec.list_items(guild_id=GUILD))[1] == 1


async def test_a_feed_that_names_no_products_leaves_the_catalogue_as_it_is(tmp_path: Path, shop: Shop) -> None:
    """A shop's export that answers with its header alone (it is being rebuilt) used to take out every item."""
    products = [p for p in stock(shop).values() if p.id in ("DR-1", "HAT-1")]
    feed = tmp_path / "products"
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        feed.write_bytes(google_rss(shop, products))
        await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher)
        for empty in (google_rss(shop, []), google_tsv(shop, []), shopify_csv(shop, []), woocommerce_csv(shop, [])):
            feed.write_bytes(empty)
            with pytest.raises(BadManifest, match="names no products"):
                await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher)
            assert {i.item_id for i in (await rec.list_items(guild_id=GUILD))[0]} == {"DR-1", "HAT-1"}


async def test_lookalike_sync_fetches_loopback_only_when_the_environment_says_so(tmp_path: Path, shop: Shop) -> None:
    products = [p for p in stock(shop).values() if p.id in ("DR-1", "HAT-1", "PA-1")]
    shop.feed = google_rss(shop, products)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    args = ("sync", f"{shop.base}/feed", "--db", str(tmp_path / "c.db"), "--guild", "7", "--model", "tiny", "--no-train")
    refused = await asyncio.to_thread(run_cli, *args, env=env)  # the shop keeps serving meanwhile
    assert refused.returncode == 1 and "private network" in refused.stderr
    done = await asyncio.to_thread(run_cli, *args, env=env | {"LOOKALIKE_FETCH_PRIVATE_URLS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("google feed: added 2, updated 0, unchanged 0, failed 0, removed 0 (1 not for sale)")


async def test_a_server_error_is_retried_and_a_lasting_one_fails_its_item(tmp_path: Path, shop: Shop) -> None:
    products = [p for p in stock(shop).values() if p.id in ("DR-1", "HAT-1")]
    shop.outages.update({"dress-0.jpg": 2, "hat-0.jpg": 99})
    shop.feed = google_rss(shop, products)
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True, backoff_s=0.01)
        summary = await sync(rec, shop, fetcher)
    assert summary.imported.added == 1 and shop.hits["/img/dress-0.jpg"] == 3  # two 503s, then the picture
    assert failures(summary) == {"HAT-1": "the image URL answered HTTP 503 (tried 3 times)"}
    assert shop.hits["/img/hat-0.jpg"] == 3


async def test_two_syncs_of_one_catalogue_never_run_at_once(tmp_path: Path, shop: Shop) -> None:
    shop.feed = google_rss(shop, [stock(shop)["DR-1"]])
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        await rec.set_feed(GUILD, f"{shop.base}/feed", 3600, channel_id=None, actor="test")
        assert await rec.claim_feed(GUILD, 600)  # another process's scheduled sync holds the catalogue
        with pytest.raises(SyncInProgress, match="scheduled sync"):
            await sync(rec, shop, fetcher)
        assert shop.hits["/feed"] == 0
        await rec.release_feed(GUILD)
        shop.feed_open.clear()  # this one waits for the feed ...
        first = asyncio.create_task(sync(rec, shop, fetcher))
        for _ in range(1000):  # until it holds the lease and waits for the feed
            if shop.hits["/feed"]:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(SyncInProgress, match="already running"):  # ... so a second one here is refused
            await sync(rec, shop, fetcher)
        assert not await rec.claim_feed(GUILD, 600)  # and other processes are kept out
        shop.feed_open.set()
        assert (await first).imported.added == 1
        assert await rec.claim_feed(GUILD, 600)  # given back at the end


async def test_validators_of_urls_no_feed_names_any_more_are_forgotten(tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from recommender.feedstate import FeedState
    from recommender.rows import now
    from recommender.schema import ImageValidatorRow
    from recommender.webfetch import Validator

    rec = await open_rec(tmp_path / "c.db")
    async with rec:
        state = FeedState(rec.store.session)
        await state.save_validators({"https://cdn.example/old.jpg": Validator('"a"', None, "0" * 64)})
        await state.save_validators({"https://cdn.example/new.jpg": Validator(None, "Tue, 01 Dec 2026 00:00:00 GMT", "1" * 64)})
        async with rec.store.session() as s, s.begin():
            old = ImageValidatorRow.url == "https://cdn.example/old.jpg"
            await s.execute(update(ImageValidatorRow).where(old).values(seen_at=now() - timedelta(days=31)))
        await state.prune_validators()
        assert set(await state.validators(["https://cdn.example/old.jpg", "https://cdn.example/new.jpg"])) == {
            "https://cdn.example/new.jpg"
        }


async def test_a_picture_the_server_says_is_unchanged_stays_remembered(tmp_path: Path, shop: Shop) -> None:
    """A 304 did not refresh its validator, so every unchanged picture of a live feed was forgotten 30 days after
    it was first downloaded, and downloaded again in full, all of them in one sync."""
    from datetime import timedelta

    from sqlalchemy import update

    from recommender.feedstate import FeedState
    from recommender.rows import now
    from recommender.schema import ImageValidatorRow

    products = [p for p in stock(shop).values() if p.id in ("DR-1", "HAT-1")]
    shop.feed = google_rss(shop, products)
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        await sync(rec, shop, fetcher)
        urls = [shop.url(p.image) for p in products]
        async with rec.store.session() as s, s.begin():  # learned 31 days ago, and still in the feed since
            await s.execute(update(ImageValidatorRow).values(seen_at=now() - timedelta(days=31)))
        shop.full.clear()
        await sync(rec, shop, fetcher)
        assert sum(shop.full.values()) == 0 and sum(shop.not_modified.values()) == 2  # unchanged, and answered so
        assert set(await FeedState(rec.store.session).validators(urls)) == set(urls)  # so still remembered
        shop.not_modified.clear()
        await sync(rec, shop, fetcher)
        assert sum(shop.full.values()) == 0 and sum(shop.not_modified.values()) == 2


async def test_a_last_modified_longer_than_any_http_date_is_dropped_not_fatal(db: str) -> None:
    """An image server's odd Last-Modified (300 characters) is not stored: before, PostgreSQL refused the whole
    save ('value too long for type character varying(100)') and with it every sync of that feed."""
    from recommender.feedstate import FeedState
    from recommender.webfetch import Validator

    odd, date = "x" * 300, "Tue, 01 Dec 2026 00:00:00 GMT"
    rec = await open_rec(db)
    async with rec:
        state = FeedState(rec.store.session)
        await state.save_validators({
            "https://cdn.example/a.jpg": Validator('"etag-a"', odd, "0" * 64),  # the ETag is still worth keeping
            "https://cdn.example/b.jpg": Validator(None, odd, "1" * 64),  # nothing left to revalidate with
            "https://cdn.example/c.jpg": Validator(None, date, "2" * 64),
        })  # fmt: skip
        urls = ["https://cdn.example/a.jpg", "https://cdn.example/b.jpg", "https://cdn.example/c.jpg"]
        assert await state.validators(urls) == {
            "https://cdn.example/a.jpg": Validator('"etag-a"', None, "0" * 64),
            "https://cdn.example/c.jpg": Validator(None, date, "2" * 64),
        }


async def test_two_syncs_learning_one_picture_url_at_once_both_save(db: str) -> None:
    """Two catalogues' feeds may name one CDN picture: their syncs save its validator together. One
    INSERT ... ON CONFLICT each; before, the second's INSERT hit the key and failed its sync."""
    from recommender.feedstate import FeedState
    from recommender.store import Store
    from recommender.webfetch import Validator

    one, two = await Store.open(db), await Store.open(db)
    try:
        for n in range(12):
            url = f"https://cdn.example/{n}.jpg"
            await asyncio.gather(
                FeedState(one.session).save_validators({url: Validator('"a"', None, "0" * 64)}),
                FeedState(two.session).save_validators({url: Validator('"b"', None, "1" * 64)}),
            )
            assert (await FeedState(one.session).validators([url]))[url].etag in {'"a"', '"b"'}
    finally:
        await one.close()
        await two.close()


async def test_a_sync_longer_than_its_lease_keeps_it_renewed(tmp_path: Path, shop: Shop) -> None:
    """The lease is renewed while the sync runs: another process cannot take a catalogue whose sync outlasts
    the lease (before, after `lease_s` a second sync got in, and the first one's end freed the second's lease)."""
    shop.feed = google_rss(shop, [stock(shop)["DR-1"]])
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        await rec.set_feed(GUILD, f"{shop.base}/feed", 3600, channel_id=None, actor="test")
        shop.feed_open.clear()  # the sync waits for its feed three leases long
        first = asyncio.create_task(sync(rec, shop, fetcher, lease_s=1.5))
        await asyncio.sleep(4.5)  # renewed every 0.5 s: one renewal more than 1 s late (a loaded machine) is tolerated
        assert not await rec.claim_feed(GUILD, 600)  # another process is still kept out
        assert await rec.feed_sync.state.due([GUILD]) == []
        shop.feed_open.set()
        assert (await first).imported.added == 1
        await asyncio.sleep(0.5)  # past a renewal time: the finished sync renews nothing
        assert await rec.claim_feed(GUILD, 600)  # given back at the end


async def test_an_address_no_connection_can_be_made_to_is_a_sentence_not_a_traceback(tmp_path: Path, shop: Shop) -> None:
    """Addresses urlsplit accepts but yarl or IDNA refuse (an empty label, a port over 65535, a bad
    redirect): a feed's fails the sync with a sentence, an image's fails its product."""
    good = stock(shop)["DR-1"]
    feed = tmp_path / "products.xml"
    feed.write_bytes(
        google_rss(
            shop,
            [
                good,
                good.but(id="DOTS-1", image="http://a..b/x.jpg"),
                good.but(id="PORT-1", image="https://shop.example:99999/x.jpg"),
                good.but(id="MOVED-1", image="/redirect?to=http://a..b/y.jpg"),
            ],
        )
    )
    rec = await open_rec(tmp_path / "c.db")
    async with rec, fetch_session(allow_private=True) as session:
        fetcher = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2, allow_private=True)
        summary = await rec.sync_feed(feed, guild_id=GUILD, actor="test", fetcher=fetcher)
        assert summary.imported.added == 1 and failures(summary) == {
            "DOTS-1": "the image URL 'http://a..b/x.jpg' is not a valid web address",
            "PORT-1": "the image URL 'https://shop.example:99999/x.jpg' is not a valid web address",
            "MOVED-1": "the image URL 'http://a..b/y.jpg' is not a valid web address",
        }
        public_only = UrlFetcher(session, max_bytes=2_000_000, timeout_s=10, concurrency=2)
        for url in ("http://a..b/feed.xml", "https://shop.example:99999/feed.xml"):
            with pytest.raises(BadManifest, match=f"could not be downloaded: the feed URL '{re.escape(url)}' is not a valid"):
                await rec.sync_feed(url, guild_id=GUILD, actor="test", fetcher=public_only)
