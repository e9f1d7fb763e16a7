"""Offers -> products: what the shop-feed readers (feed_google.py, feed_csv.py) share.

Each reader turns its rows into
`Offer`s (one sellable variant each); `fold` groups the offers of one product (Google's
`item_group_id`, Shopify's `Handle`, WooCommerce's `Parent`) into one item whose extra images,
colours and price range come from all of them. Everything in a feed is the shop's data: a row or a
product that cannot become an item is a record with its reason, never an exception; only a feed
that cannot be read at all raises BadManifest. Parsing is synchronous: callers run it in a thread.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TypeVar

from .errors import BadManifest
from .names import fields_nul_problem, manifest_id_problem, shown
from .records import ImportRecord, ItemFields
from .urls import is_web_url

T = TypeVar("T")

FORMATS = ("google", "shopify", "woocommerce")
CATEGORY_LEVELS = ("1", "2", "last")
MAX_EXTRA_IMAGES = 10
MAX_FEED_ROWS = 250_000  # rows (variants, images) or entries of one feed: it is held whole while they are folded
MAX_DESCRIPTION = 4000
MAX_MARKUP = 4 * MAX_DESCRIPTION  # what of a description's HTML is parsed (text, tags and all)
UNCATEGORISED = "uncategorised"
IN_STOCK = "in_stock"
OUT_OF_STOCK = "out_of_stock"
SELLABLE = frozenset({"in_stock", "preorder", "backorder"})


def bounded(rows: Iterable[T], label: str) -> Iterator[T]:
    """`rows` as they come, refused once there are more than MAX_FEED_ROWS: a feed of tiny rows would
    otherwise cost far more memory than its bytes."""
    for n, row in enumerate(rows, 1):
        if n > MAX_FEED_ROWS:
            raise BadManifest(f"The {label} has more than {MAX_FEED_ROWS:,} rows or entries; a feed may have at most that many.")
        yield row


@dataclass(frozen=True)
class FeedOptions:
    format: str = "auto"  # "auto" (from the content) or one of FORMATS
    category_level: str = "last"  # which level of "A > B > C" is the category: "1", "2" or "last"
    currency: str | None = None  # the CSV exports carry no currency: the shop's, e.g. "EUR"
    shop_url: str | None = None  # the CSV exports carry no product link: built from the shop's address

    def check(self) -> FeedOptions:
        if self.format not in ("auto", *FORMATS):
            raise BadManifest(
                f"The feed format must be one of {', '.join(FORMATS)} (or left out), not {shown(self.format, 40)!r}."
            )
        if self.category_level not in CATEGORY_LEVELS:
            raise BadManifest("The category level must be 1, 2 or last.")
        if self.currency is not None and not re.fullmatch(r"[A-Za-z]{3}", self.currency):
            raise BadManifest("The currency must be a three-letter code such as USD or EUR.")
        if self.shop_url is not None and not is_web_url(self.shop_url):
            raise BadManifest("The shop's address must start with http:// or https://.")
        return self


@dataclass
class Offer:
    """One sellable row of a feed (a product, or one variant of it), its cells already named."""

    id: str
    group: str  # the product it belongs to (its own id when it has no variants)
    where: str
    title: str = ""
    description: str = ""
    link: str | None = None
    images: list[str] = field(default_factory=list)
    price: float | None = None
    regular_price: float | None = None
    currency: str | None = None
    availability: str = IN_STOCK
    category_path: list[str] = field(default_factory=list)
    brand: str | None = None
    color: str | None = None
    gender: str | None = None
    error: str | None = None


@dataclass
class Feed:
    """A parsed feed: the records to import (available products, and failures with their reason),
    every product id the feed names, and which of them are not for sale now."""

    format: str
    records: list[ImportRecord]
    ids: set[str]
    unavailable: set[str]


# -- helpers the readers share --------------------------------------------------------------------


class _Text(HTMLParser):
    BLOCKS = frozenset({"p", "br", "div", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


_UNCLOSED = re.compile(r"<(?=[^<>]*(?:<|$))")  # a '<' no '>' closes before the next '<' or the end: no tag ('S<M<L')
_HALF_TAG = re.compile(r"</?(?:[A-Za-z!][^<>]{0,500})?$")  # a tag the cut at MAX_MARKUP went through (tags are short)


def plain_text(markup: str | None) -> str:
    """An HTML description as plain text: tags dropped, entities decoded, blank runs squeezed. Only the
    first MAX_MARKUP characters are read, and a '<' that opens no tag is text: HTMLParser is quadratic on
    markup full of unclosed '<' ('<a' * n)."""
    if not markup:
        return ""
    if len(markup) > MAX_MARKUP:
        markup = _HALF_TAG.sub("", markup[:MAX_MARKUP])
    markup = _UNCLOSED.sub("&lt;", markup)
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts)).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line)[:MAX_DESCRIPTION]


_PRICE = re.compile(r"^\s*([A-Za-z]{3})?\s*([0-9][0-9.,\s]*?)\s*([A-Za-z]{3})?\s*$")


def parse_price(raw: str | None) -> tuple[float | None, str | None]:
    """'15.00 USD', 'USD 15', '1,299.00 EUR', '12,50 EUR', '19.99' -> (amount, currency or None).
    ValueError when the text is not a price."""
    if raw is None or not raw.strip():
        return None, None
    m = _PRICE.match(raw)
    if not m or (m.group(1) and m.group(3)):
        raise ValueError(raw)
    number = re.sub(r"\s", "", m.group(2))
    if "," in number and "." in number:
        number = number.replace(",", "") if number.rfind(".") > number.rfind(",") else number.replace(".", "").replace(",", ".")
    elif "," in number:
        head, _, tail = number.rpartition(",")
        number = f"{head.replace(',', '')}.{tail}" if len(tail) != 3 else number.replace(",", "")
    value = float(number)
    currency = m.group(1) or m.group(3)
    return value, currency.upper() if currency else None


def availability(raw: str | None) -> str:
    """Google's availability words (and older spellings) -> in_stock, out_of_stock, preorder, backorder."""
    word = (raw or "").strip().lower().replace(" ", "_").replace("-", "_")
    if word in ("", "in_stock", "instock", "available_for_order", "1", "true", "yes"):
        return IN_STOCK
    if word in ("preorder", "backorder", "onbackorder"):
        return "backorder" if word == "onbackorder" else word
    return OUT_OF_STOCK


def category_path(raw: str | None) -> list[str]:
    return [p.strip() for p in (raw or "").split(">") if p.strip()]


def at_level(path: list[str], level: str) -> str:
    if not path:
        return UNCATEGORISED
    if level == "last":
        return path[-1][:100]
    return path[min(int(level), len(path)) - 1][:100]


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        if v and v.strip():
            seen.setdefault(v.strip(), None)
    return list(seen)


# -- variants -> products -------------------------------------------------------------------------


def fold(offers: Iterable[Offer], options: FeedOptions, fmt: str) -> Feed:
    """Offers grouped by product, in the order the feed first names each product."""
    groups: dict[str, list[Offer]] = {}
    records: list[ImportRecord] = []
    for offer in offers:
        if offer.error is not None and not offer.group:
            records.append(ImportRecord(shown(offer.id, 100), offer.where, error=offer.error))
            continue
        groups.setdefault(offer.group, []).append(offer)
    ids: set[str] = set()
    unavailable: set[str] = set()
    for group, members in groups.items():
        first = members[0]
        where = first.where if len(members) == 1 else f"{first.where} (+{len(members) - 1} variants)"
        if problem := manifest_id_problem(group):
            records.append(ImportRecord(shown(group, 100), where, error=problem))
            continue
        ids.add(group)
        broken = next((o for o in members if o.error is not None), None)
        if broken is not None:
            records.append(ImportRecord(group, broken.where, error=broken.error))
            continue
        for_sale = [o for o in members if o.availability in SELLABLE]
        if not for_sale:
            unavailable.add(group)
            continue
        images = _unique(img for o in members for img in o.images)  # the product's own pictures first
        if not images:
            records.append(ImportRecord(group, where, error="the product has no image link"))
            continue
        if not is_web_url(images[0]):
            records.append(ImportRecord(group, where, error=f"the image link {shown(images[0], 80)!r} is not a web address"))
            continue
        priced = [o for o in for_sale if o.price is not None]
        cheapest = min(priced, key=lambda o: o.price or 0.0) if priced else None
        currency = (cheapest.currency if cheapest else None) or first.currency or options.currency
        attrs: dict[str, object] = {"availability": for_sale[0].availability}
        for key, values in (
            ("brand", _unique(o.brand for o in members)),
            ("color", _unique(c for o in members for c in (o.color or "").split(","))),
            ("gender", _unique(o.gender for o in members)),
        ):
            if values:
                attrs[key] = ", ".join(values)[:200]
        if currency:
            attrs["currency"] = currency.upper()
        if cheapest is not None and cheapest.regular_price is not None and cheapest.regular_price != cheapest.price:
            attrs["regular_price"] = cheapest.regular_price
        if len(images) > 1:
            attrs["images"] = images[1 : 1 + MAX_EXTRA_IMAGES]
        if len(members) > 1:
            attrs["variants"] = len(members)
        path = next((o.category_path for o in members if o.category_path), [])
        fields = ItemFields(
            item_id=group,
            name=(first.title.strip() or group)[:256],
            category=at_level(path, options.category_level),
            price=cheapest.price if cheapest else None,
            url=first.link if first.link and is_web_url(first.link) else None,
            description=plain_text(first.description) or None,
            attributes=attrs,
        )
        if problem := fields_nul_problem(fields, images[0]):
            records.append(ImportRecord(group, where, error=problem))
            continue
        records.append(ImportRecord(group, where, fields, images[0]))
    return Feed(fmt, records, ids, unavailable)
