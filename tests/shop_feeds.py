"""A small shop on loopback for the feed tests: product photos with ETag/Last-Modified (answering
conditional requests with 304), a feed of whatever format the test writes, and hostile URLs (a
2 GB picture streamed lazily, redirects into private networks, a 404). It counts every request.

The feeds are written here from the formats' published specifications (Google Merchant Center's
product data specification, Shopify's and WooCommerce's product CSV column references): no shop's
real data.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

from helpers import DEMO

GIGABYTES_2 = 2 * 1024**3


def demo_photo(category: str, n: int = 0) -> Path:
    return sorted((DEMO / category).glob("*.jpg"))[n]


@dataclass
class Product:
    """One sellable variant, in Google's terms (the CSV writers map it to their columns)."""

    id: str
    title: str
    image: str  # a path on the shop server, e.g. "/img/dress-0.jpg", or a whole URL
    price: str = "25.00 USD"
    sale_price: str = ""
    availability: str = "in_stock"
    product_type: str = "Apparel & Accessories > Clothing > Dresses"
    description: str = "<p>A <b>soft</b> cotton piece.</p>"
    group: str = ""
    extra_images: list[str] = field(default_factory=list)
    brand: str = "Northwind"
    color: str = "Blue"
    gender: str = "female"

    def but(self, **changes: object) -> Product:
        return replace(self, **changes)  # type: ignore[arg-type]


class Shop:
    """The shop's web server: photos by name, the feed at /feed, hostile URLs, request counts."""

    def __init__(self) -> None:
        self.photos: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self.feed: bytes = b""
        self.feed_type = "application/xml"
        self.hits: Counter[str] = Counter()  # path -> requests
        self.full: Counter[str] = Counter()  # path -> 200 answers with a body
        self.not_modified: Counter[str] = Counter()  # path -> 304 answers
        self.streamed = 0  # bytes of the 2 GB picture actually sent
        self.outages: Counter[str] = Counter()  # photo name -> how many more requests get a 503
        self.feed_open = asyncio.Event()  # cleared: the feed does not answer until it is set again
        self.feed_open.set()
        self.base = ""
        self._runner: web.AppRunner | None = None

    def photo(self, name: str, data: bytes) -> str:
        self.photos[name] = data
        self.modified[name] = 1_700_000_000 + len(self.modified)
        return f"/img/{name}"

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}{path}"

    async def _img(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[request.path] += 1
        data = self.photos.get(name)
        if data is None:
            raise web.HTTPNotFound()
        if self.outages[name] > 0:
            self.outages[name] -= 1
            raise web.HTTPServiceUnavailable()
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Last-Modified": formatdate(self.modified[name], usegmt=True)}
        if request.headers.get("If-None-Match") == etag:
            self.not_modified[request.path] += 1
            return web.Response(status=304, headers=headers)
        self.full[request.path] += 1
        return web.Response(body=data, content_type="image/jpeg", headers=headers)

    async def _feed(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await self.feed_open.wait()
        return web.Response(body=self.feed, content_type=self.feed_type)

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """2 GB of "JPEG", produced 64 KB at a time as the client reads, never held (no length sent)."""
        self.hits[request.path] += 1
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await resp.prepare(request)
        chunk = b"\xff\xd8\xff" + bytes(64 * 1024 - 3)
        try:
            while self.streamed < GIGABYTES_2:
                await resp.write(chunk)
                self.streamed += len(chunk)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def _redirect(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        raise web.HTTPFound(request.query["to"])

    async def start(self, host: str = "127.0.0.1") -> Shop:
        app = web.Application()
        app.router.add_get("/img/{name}", self._img)
        app.router.add_get("/feed", self._feed)
        app.router.add_get("/huge.jpg", self._huge)
        app.router.add_get("/redirect", self._redirect)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.base = f"http://{host}:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- feeds, written from the specifications -------------------------------------------------------


def google_rss(shop: Shop, products: Iterable[Product]) -> bytes:
    """Google Merchant Center's RSS 2.0 feed: <item>s with g: attributes."""

    def item(p: Product) -> str:
        cells = [
            f"<g:id>{escape(p.id)}</g:id>",
            f"<title>{escape(p.title)}</title>",
            f"<description>{escape(p.description)}</description>",
            f"<link>https://shop.example/products/{escape(p.group or p.id)}</link>",
            f"<g:image_link>{escape(shop.url(p.image))}</g:image_link>",
            *(f"<g:additional_image_link>{escape(shop.url(x))}</g:additional_image_link>" for x in p.extra_images),
            f"<g:price>{escape(p.price)}</g:price>",
            f"<g:sale_price>{escape(p.sale_price)}</g:sale_price>" if p.sale_price else "",
            f"<g:availability>{p.availability}</g:availability>",
            f"<g:product_type>{escape(p.product_type)}</g:product_type>",
            "<g:google_product_category>2271</g:google_product_category>",
            f"<g:brand>{escape(p.brand)}</g:brand>",
            f"<g:color>{escape(p.color)}</g:color>",
            f"<g:gender>{p.gender}</g:gender>",
            "<g:condition>new</g:condition>",
            f"<g:item_group_id>{escape(p.group)}</g:item_group_id>" if p.group else "",
            "<g:shipping><g:country>US</g:country><g:price>4.95 USD</g:price></g:shipping>",
        ]
        return "<item>" + "".join(cells) + "</item>"

    body = "\n".join(item(p) for p in products)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">\n'
        f"<channel><title>Northwind</title><link>https://shop.example</link><description>Products</description>\n{body}\n"
        "</channel></rss>\n"
    ).encode()


def google_atom(shop: Shop, products: Iterable[Product]) -> bytes:
    entries = "".join(
        f'<entry><g:id>{escape(p.id)}</g:id><title>{escape(p.title)}</title><link href="https://shop.example/p/{escape(p.id)}"/>'
        f"<summary>{escape(p.description)}</summary><g:image_link>{escape(shop.url(p.image))}</g:image_link>"
        f"<g:price>{p.price}</g:price><g:availability>{p.availability}</g:availability>"
        f"<g:product_type>{escape(p.product_type)}</g:product_type><g:item_group_id>{escape(p.group)}</g:item_group_id>"
        "</entry>"
        for p in products
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        f'xmlns:g="http://base.google.com/ns/1.0"><title>Northwind</title>{entries}</feed>'
    ).encode()


def google_tsv(shop: Shop, products: Iterable[Product]) -> bytes:
    cols = ["id", "title", "description", "link", "image_link", "additional_image_link", "price", "sale_price"]
    cols += ["availability", "product_type", "brand", "color", "gender", "item_group_id"]
    lines = ["\t".join(cols)]
    for p in products:
        lines.append(
            "\t".join(
                [
                    p.id,
                    p.title,
                    p.description,
                    f"https://shop.example/products/{p.group or p.id}",
                    shop.url(p.image),
                    ",".join(shop.url(x) for x in p.extra_images),
                    p.price,
                    p.sale_price,
                    p.availability.replace("_", " "),
                    p.product_type,
                    p.brand,
                    p.color,
                    p.gender,
                    p.group,
                ]
            )
        )
    return ("\n".join(lines) + "\n").encode()


def _csv(header: list[str], rows: Iterable[dict[str, str]]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


SHOPIFY = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable", "Image Src",
    "Image Position", "Image Alt Text", "Variant Image", "Status",
]  # fmt: skip


def shopify_csv(shop: Shop, products: Iterable[Product]) -> bytes:
    """Shopify's products export: the first row of a Handle carries the product, the others a
    variant (Option values, price, stock) or one more image."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for p in products:
        handle = p.group or p.id
        first = handle not in seen
        seen.add(handle)
        price = p.sale_price or p.price
        row = {
            "Handle": handle,
            "Option1 Value": p.color,
            "Option2 Value": p.id.rsplit("-", 1)[-1],
            "Variant SKU": p.id,
            "Variant Inventory Tracker": "shopify",
            "Variant Inventory Qty": "0" if p.availability == "out_of_stock" else "7",
            "Variant Inventory Policy": "deny",
            "Variant Fulfillment Service": "manual",
            "Variant Price": price.split()[0],
            "Variant Compare At Price": p.price.split()[0] if p.sale_price else "",
            "Variant Image": "" if first else shop.url(p.image),
        }
        if first:
            row |= {
                "Title": p.title,
                "Body (HTML)": p.description,
                "Vendor": p.brand,
                "Product Category": p.product_type,
                "Type": p.product_type.split(" > ")[-1],
                "Tags": "summer, cotton",
                "Published": "TRUE",
                "Option1 Name": "Color",
                "Option2 Name": "Size",
                "Image Src": shop.url(p.image),
                "Image Position": "1",
                "Status": "active",
            }
        rows.append(row)
        for n, extra in enumerate(p.extra_images, start=2):
            rows.append({"Handle": handle, "Image Src": shop.url(extra), "Image Position": str(n)})
    return _csv(SHOPIFY, rows)


WOOCOMMERCE = [
    "ID", "Type", "SKU", "Name", "Published", "Is featured?", "Visibility in catalog", "Short description",
    "Description", "In stock?", "Stock", "Regular price", "Sale price", "Categories", "Tags", "Images", "Parent",
    "Brands", "Attribute 1 name", "Attribute 1 value(s)", "Attribute 1 visible", "Attribute 1 global",
]  # fmt: skip


def woocommerce_csv(shop: Shop, products: list[Product]) -> bytes:
    """WooCommerce's product export: `simple` products, and `variable` ones whose `variation` rows
    name their parent as id:<ID>."""
    rows: list[dict[str, str]] = []
    parents: dict[str, int] = {}
    next_id = 100
    groups = {p.group for p in products if p.group}
    for p in products:
        if p.group and p.group not in parents:
            next_id += 1
            parents[p.group] = next_id
            rows.append(
                {
                    "ID": str(next_id),
                    "Type": "variable",
                    "SKU": p.group,
                    "Name": p.title,
                    "Published": "1",
                    "Visibility in catalog": "visible",
                    "Description": p.description,
                    "In stock?": "1",
                    "Categories": p.product_type,
                    "Images": ", ".join(shop.url(x) for x in [p.image, *p.extra_images]),
                    "Brands": p.brand,
                    "Attribute 1 name": "Color",
                    "Attribute 1 value(s)": ", ".join(q.color for q in products if q.group == p.group),
                }
            )
        next_id += 1
        own = {
            "ID": str(next_id),
            "SKU": p.id,
            "Published": "1",
            "In stock?": "0" if p.availability == "out_of_stock" else "1",
            "Regular price": p.price.split()[0],
            "Sale price": p.sale_price.split()[0] if p.sale_price else "",
            "Attribute 1 name": "Color",
            "Attribute 1 value(s)": p.color,
        }
        if p.group in groups:
            rows.append(own | {"Type": "variation", "Name": f"{p.title} - {p.color}", "Parent": f"id:{parents[p.group]}",
                               "Images": shop.url(p.image)})  # fmt: skip
        else:
            rows.append(
                own
                | {
                    "Type": "simple",
                    "Name": p.title,
                    "Description": p.description,
                    "Categories": p.product_type,
                    "Images": ", ".join(shop.url(x) for x in [p.image, *p.extra_images]),
                    "Brands": p.brand,
                }
            )
    return _csv(WOOCOMMERCE, rows)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel><title>&lol9;</title>
<item><g:id>bomb</g:id><title>&lol9;</title></item></channel></rss>
"""
