"""The Google Merchant Center product feed: XML (RSS 2.0 `<item>`s or Atom `<entry>`s, attributes in
the `g:` namespace http://base.google.com/ns/1.0) or text (tab-separated, a header row of attribute
names). XML goes through defusedxml: a DTD that declares entities (a "billion laughs") or refers
to an external one is refused before anything is expanded or fetched.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml  # iterparse with entity, DTD and external guards
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from .errors import BadManifest
from .manifests import rows_csv
from .names import shown
from .offers import Offer, availability, bounded, category_path, parse_price

G = "{http://base.google.com/ns/1.0}"
ATOM = "{http://www.w3.org/2005/Atom}"


def offers(data: bytes, label: str) -> list[Offer]:
    head = data[:4096].lstrip(b"\xef\xbb\xbf").lstrip()
    return _xml_offers(data, label) if head.startswith(b"<") else list(_text_offers(data, label))


# -- XML ------------------------------------------------------------------------------------------


def _xml_offers(data: bytes, label: str) -> list[Offer]:
    return list(bounded(_xml_entries(data, label), label))


def _xml_entries(data: bytes, label: str) -> Iterator[Offer]:
    """Streamed: each <item>/<entry> is read, turned into an offer and cleared, so a large feed never
    stands in memory as a tree."""
    root: str | None = None
    n = 0
    try:
        for event, elem in safe_xml.iterparse(
            io.BytesIO(data), events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        ):
            if root is None:
                root = elem.tag
                if root not in ("rss", f"{ATOM}feed"):
                    raise BadManifest(f"The {label} is XML but neither RSS 2.0 nor Atom (its root is <{shown(root, 60)}>).")
            elif event == "end" and elem.tag == ("item" if root == "rss" else f"{ATOM}entry"):
                n += 1
                yield _offer(_xml_fields(elem), f"{label} item {n}")
                elem.clear()
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden):
        raise BadManifest(
            f"The {label} has a DTD (<!DOCTYPE ...>), which product feeds never need and which is refused: "
            "its entities could expand without end or fetch external documents."
        ) from None
    except DefusedXmlException as e:
        raise BadManifest(f"The {label} uses XML features that are refused: {type(e).__name__}.") from None
    except ParseError as e:
        raise BadManifest(f"The {label} is not well-formed XML: {e}.") from None


def _xml_fields(entry: Element) -> dict[str, list[str]]:
    """An entry's attributes by plain name: g:x, RSS's own <x>, Atom's <x> (and its <link href>)."""
    out: dict[str, list[str]] = {}
    for child in entry:
        tag = child.tag if isinstance(child.tag, str) else ""
        name = tag.rsplit("}", 1)[-1]
        if tag.startswith(ATOM) and name == "link":
            value = child.get("href") or ""
            if child.get("rel", "alternate") != "alternate":
                continue
        elif tag.startswith(ATOM) and name in ("summary", "content"):
            name, value = "description", "".join(child.itertext())
        else:
            value = "".join(child.itertext())
        if tag.startswith(G):  # the g: attribute wins over RSS/Atom's own element of that name
            out.setdefault(name, [])
            out[name].insert(0, value.strip())
        else:
            out.setdefault(name, []).append(value.strip())
    return out


# -- tab-separated text ---------------------------------------------------------------------------


def _text_offers(data: bytes, label: str) -> Iterator[Offer]:
    first = data[:65536].split(b"\n", 1)[0]
    delimiter = "\t" if b"\t" in first else ","
    names: dict[str, str] = {}  # header cell -> attribute (`g:ID ` and `id` are one)
    for line, row in bounded(rows_csv(io.BytesIO(data), label, delimiter=delimiter), label):
        where = f"{label} line {line}"
        if isinstance(row, str):
            yield Offer("", "", where, error=row)
            continue
        if not names:
            names = {key: key.strip().lower().replace(" ", "_").removeprefix("g:") for key in row}
            alike: dict[str, list[str]] = {}
            for key, name in names.items():
                alike.setdefault(name, []).append(key)
            if twice := next((keys for name, keys in alike.items() if name and len(keys) > 1), None):
                raise BadManifest(f"{label}'s header names one attribute twice ({', '.join(map(repr, twice))}): keep one.")
        cells: dict[str, list[str]] = {}
        for key, value in row.items():
            name = names[key]
            many = name == "additional_image_link"
            cells[name] = [v.strip() for v in value.split(",")] if many else [value.strip()]
        yield _offer(cells, where)


# -- one entry ------------------------------------------------------------------------------------


def _offer(cells: dict[str, list[str]], where: str) -> Offer:
    def one(name: str) -> str:
        return next((v for v in cells.get(name, []) if v), "")

    item_id = one("id")
    if not item_id:
        return Offer("", "", where, error="the product has no id")
    offer = Offer(item_id, one("item_group_id") or item_id, where)
    try:
        price, currency = parse_price(one("price"))
        sale, sale_currency = parse_price(one("sale_price"))
    except ValueError as e:
        offer.error = f"the price {shown(str(e), 40)!r} is not an amount like '15.00 USD'"
        return offer
    offer.price, offer.regular_price = (sale, price) if sale is not None else (price, None)
    offer.currency = sale_currency or currency
    offer.title = one("title")
    offer.description = one("description")
    offer.link = one("link") or None
    offer.images = [v for v in [one("image_link"), *cells.get("additional_image_link", [])] if v]
    offer.availability = availability(one("availability"))
    offer.category_path = category_path(one("product_type"))
    if not offer.category_path and not one("google_product_category").isdigit():
        offer.category_path = category_path(one("google_product_category"))
    offer.brand = one("brand") or None
    offer.color = one("color").replace("/", ",") or None
    offer.gender = one("gender") or None
    return offer
