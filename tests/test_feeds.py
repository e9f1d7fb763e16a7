"""The shop-feed readers on feeds written from the formats' specifications (tests/shop_feeds.py):
detection, folding of variants, categories at a level, prices with their currency, HTML to text,
and XML that tries entity expansion or external entities."""

from __future__ import annotations

import pytest
from shop_feeds import BILLION_LAUGHS, Product, Shop, google_atom, google_rss, google_tsv, shopify_csv, woocommerce_csv

from recommender.errors import BadManifest
from recommender.feeds import FeedOptions, detect, read_feed
from recommender.offers import MAX_DESCRIPTION, parse_price, plain_text

SHOP = Shop()
SHOP.base = "https://cdn.example"
PRODUCTS = [
    Product("DR-1", "Linen dress", "/img/d.jpg", product_type="Apparel > Women > Dresses"),
    Product("TS-1-S", "Crew tee", "/img/t.jpg", group="TS-1", product_type="Apparel > Men > T-shirts"),
    Product("TS-1-M", "Crew tee", "/img/t2.jpg", group="TS-1", color="Red", availability="out_of_stock"),
    Product("PA-1", "Chinos", "/img/p.jpg", availability="out_of_stock"),
]


@pytest.mark.parametrize(
    "writer, fmt", [(google_rss, "google"), (google_atom, "google"), (google_tsv, "google"), (shopify_csv, "shopify"),
                    (woocommerce_csv, "woocommerce")],
)  # fmt: skip
def test_the_format_is_told_from_the_content_and_variants_fold(writer, fmt: str) -> None:  # type: ignore[no-untyped-def]
    data = writer(SHOP, PRODUCTS)
    assert detect(data) == fmt
    feed = read_feed(data, FeedOptions(category_level="1"))
    assert feed.format == fmt and feed.ids == {"DR-1", "TS-1", "PA-1"} and feed.unavailable == {"PA-1"}
    by_id = {r.item_id: r for r in feed.records}
    assert set(by_id) == {"DR-1", "TS-1"} and all(r.error is None for r in by_id.values())
    assert by_id["TS-1"].image == "https://cdn.example/img/t.jpg"  # the in-stock variant's own picture first
    level_1 = "Dresses" if fmt == "shopify" else "Apparel"  # Shopify's Type is one level (the writer's last one)
    assert by_id["DR-1"].fields is not None and by_id["DR-1"].fields.category == level_1


def test_category_levels() -> None:
    data = google_rss(SHOP, PRODUCTS[:1])
    levels = {lv: read_feed(data, FeedOptions(category_level=lv)).records[0].fields.category for lv in ("1", "2", "last")}  # type: ignore[union-attr]
    assert levels == {"1": "Apparel", "2": "Women", "last": "Dresses"}


@pytest.mark.parametrize(
    "raw, expected",
    [("15.00 USD", (15.0, "USD")), ("USD 15", (15.0, "USD")), ("1,299.00 EUR", (1299.0, "EUR")), ("12,50 EUR", (12.5, "EUR")),
     ("1.299,00 EUR", (1299.0, "EUR")), ("19.99", (19.99, None)), ("", (None, None))],
)  # fmt: skip
def test_prices_keep_their_currency(raw: str, expected: tuple[float | None, str | None]) -> None:
    assert parse_price(raw) == expected


def test_a_price_that_is_not_one_fails_its_product_only() -> None:
    feed = read_feed(google_rss(SHOP, [PRODUCTS[0], PRODUCTS[3].but(price="call us", availability="in_stock")]))
    errors = {r.item_id: r.error for r in feed.records}
    assert errors["DR-1"] is None and "call us" in (errors["PA-1"] or "")


def test_html_descriptions_become_plain_text() -> None:
    html = "<p>Soft&nbsp;<b>organic</b> cotton.</p><ul><li>Machine wash</li><li>Made in Portugal</li></ul><script>x()</script>"
    assert plain_text(html) == "Soft organic cotton.\n- Machine wash\n- Made in Portugal"


@pytest.mark.timeout(10)  # the whole markup used to be parsed: 30 s for 160 K characters, quadratic beyond
def test_a_hostile_html_description_is_parsed_only_as_far_as_it_is_kept() -> None:
    hostile = [PRODUCTS[0].but(id=f"h{i}", description=("<a " if i % 2 else "<a") * 140_000) for i in range(20)]
    records = read_feed(google_rss(SHOP, hostile)).records  # 20 descriptions of 280-420 KB of unfinished tags
    assert all(r.error is None and r.fields is not None for r in records)
    assert records[0].fields.description == "<a" * (MAX_DESCRIPTION // 2)  # a '<' that opens no tag is text
    assert plain_text("<p>kept</p>" + "<b></b>" * 5_000) == "kept"  # the cut leaves no half tag in the text
    sizes = "Sizes: S<M<L. " + "Soft organic cotton, made in Portugal. " * 450  # plain text, longer than the cut
    assert plain_text(sizes) == sizes[:MAX_DESCRIPTION]
    assert plain_text("Fits 3<4 sizes, <b>bold</b> 5 > 2") == "Fits 3<4 sizes, bold 5 > 2"


def test_xml_entities_and_external_references_are_refused() -> None:
    with pytest.raises(BadManifest, match="entities"):
        read_feed(BILLION_LAUGHS)
    external = b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "http://169.254.169.254/x.dtd"><rss><channel/></rss>'
    with pytest.raises(BadManifest, match="DTD"):
        read_feed(external)
    with pytest.raises(BadManifest, match="well-formed"):
        read_feed(b"<rss><channel><item>")


def test_a_google_text_feed_naming_one_attribute_twice_is_refused() -> None:
    """`id` and `g:id` are one attribute to Google: the later column was read silently."""
    data = b"id\ttitle\tg:id\tprice\tlink\timage_link\n1\tCap\t2\t5 EUR\thttps://s.example/1\thttps://s.example/1.jpg\n"
    with pytest.raises(BadManifest, match=r"names one attribute twice \('id', 'g:id'\)"):
        read_feed(data, FeedOptions(format="google"))


def test_an_unknown_layout_says_what_it_expected() -> None:
    with pytest.raises(BadManifest, match="--format"):
        read_feed(b"sku,label\n1,x\n")


def test_a_shopify_draft_is_not_for_sale_and_a_woocommerce_orphan_variation_fails() -> None:
    draft = shopify_csv(SHOP, PRODUCTS[:1]).decode().replace(",active", ",draft").encode()
    assert read_feed(draft).unavailable == {"DR-1"}
    orphan = woocommerce_csv(SHOP, PRODUCTS[1:3]).decode().replace("id:101", "id:999").encode()
    errors = [r.error for r in read_feed(orphan).records if r.error]
    assert errors and all("parent" in e for e in errors)


@pytest.mark.parametrize("writer", [google_tsv, shopify_csv, woocommerce_csv])
def test_a_nul_byte_in_a_product_fails_that_product_alone(writer) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses NUL in text (the whole sync's batch failed there): the product fails on every database."""
    feed = read_feed(writer(SHOP, [PRODUCTS[0], PRODUCTS[1].but(title="Crew\0tee", group="", id="TS-9")]))
    errors = {r.item_id: r.error for r in feed.records}
    assert errors == {"DR-1": None, "TS-9": "the name 'Crew\\0tee' contains a NUL byte"}


def test_a_stock_cell_that_is_no_count_affects_its_row_only() -> None:
    """WooCommerce 'Stock' '²' (str.isdigit() but not int()) and Shopify 'Variant Inventory Qty' 'inf' (a float,
    not an int) stopped the whole sync with an exception."""
    woo = (
        "ID,Type,SKU,Name,Published,In stock?,Stock,Regular price,Categories,Images\n"
        "1,simple,A1,Good hat,1,,5,10,Hats,https://shop.example/a.jpg\n"
        "2,simple,B2,Odd hat,1,,²,10,Hats,https://shop.example/b.jpg\n"
    )
    feed = read_feed(woo.encode(), FeedOptions(currency="EUR"))
    assert [(r.item_id, r.error) for r in feed.records] == [("A1", None)] and feed.unavailable == {"B2"}
    shop = (
        "Handle,Title,Variant Price,Variant Inventory Tracker,Variant Inventory Qty,Image Src\n"
        "good-hat,Good hat,10,shopify,3,https://shop.example/a.jpg\n"
        "odd-hat,Odd hat,10,shopify,inf,https://shop.example/b.jpg\n"
    )
    feed = read_feed(shop.encode(), FeedOptions(currency="EUR"))
    assert [(r.item_id, r.error) for r in feed.records] == [("good-hat", None), ("odd-hat", None)]  # unknown: for sale


def test_a_header_wider_than_the_limit_is_refused() -> None:
    """A 1 MB header names 120,000 columns, and every row was padded to them (a feed of 30 short rows: 180 MB)."""
    wide = "ID,Regular price," + ",".join(f"c{i}" for i in range(20_000)) + "\n1\n"
    with pytest.raises(BadManifest, match="20,002 columns; at most 2,000"):
        read_feed(wide.encode())


@pytest.mark.parametrize("writer", [shopify_csv, woocommerce_csv])
def test_an_export_with_many_columns_holds_only_the_columns_it_reads(writer) -> None:  # type: ignore[no-untyped-def]
    """An export of 1,000 extra columns held every row padded to them until the whole export was read: 28 MB
    traced for 1,000 rows of 1 MB of text, 4 MB now (this test's own tracemalloc peak, before and after)."""
    import tracemalloc

    header, *rows = writer(SHOP, [PRODUCTS[0]]).decode().splitlines()
    extra = 1000
    wide = [f"{header},{','.join(f'x{i}' for i in range(extra))}", *(row + "," * extra for row in rows)]
    copies = [rows[0].replace("DR-1", f"DR-{n}") + "," * extra for n in range(2, 1001)]
    tracemalloc.start()
    try:
        feed = read_feed("\n".join(wide + copies).encode(), FeedOptions(currency="EUR"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(feed.ids) == 1000 and all(r.error is None for r in feed.records)
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("writer", [google_rss, google_atom, google_tsv, shopify_csv, woocommerce_csv])
def test_a_feed_of_more_rows_than_the_limit_is_refused(writer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A feed of tiny entries (`<item/>`) was held whole as offers and records: 10.5 MB took 889 MB (docs/SECURITY.md)."""
    from recommender import offers

    monkeypatch.setattr(offers, "MAX_FEED_ROWS", 3)
    products = [PRODUCTS[0].but(id=f"DR-{n}", group="") for n in range(4)]
    assert len(read_feed(writer(SHOP, products[:3])).ids) == 3
    with pytest.raises(BadManifest, match="more than 3 "):
        read_feed(writer(SHOP, products))
