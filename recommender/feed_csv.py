"""The shop platforms' own CSV exports, one row per variant (or per extra image):

* Shopify's products export (`Handle`, `Title`, `Body (HTML)`, `Vendor`, `Type`, `Product Category`,
  `Option1 Name`/`Value`, `Variant Price`, `Variant Compare At Price`, `Variant Inventory Tracker`/
  `Qty`/`Policy`, `Image Src`, `Image Position`, `Variant Image`, `Published`, `Status`): rows of one
  `Handle` are one product, the first carries the product's own cells.
* WooCommerce's product export (`ID`, `Type`, `SKU`, `Name`, `Published`, `Description`, `In stock?`,
  `Stock`, `Regular price`, `Sale price`, `Categories`, `Images`, `Parent`, `Brands`, `Attribute 1 name`/
  `value(s)`): a `variation` row belongs to the product its `Parent` names (`id:12` or a SKU).

Neither carries a currency or a product page: FeedOptions.currency and .shop_url supply them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

from .manifests import rows_csv
from .names import shown
from .offers import OUT_OF_STOCK, FeedOptions, Offer, availability, bounded, category_path, parse_price

Cells = dict[str, str]


def _rows(data: bytes, label: str, read: Callable[[str], bool]) -> Iterator[tuple[str, Cells | str]]:
    """The rows, each cut to the columns its reader reads (`read(name)`): a row may be held until the whole
    export is read, and an export may have hundreds of columns."""
    for line, row in bounded(rows_csv(io.BytesIO(data), label), label):
        where = f"{label} line {line}"
        yield where, row if isinstance(row, str) else {k.strip(): (v or "").strip() for k, v in row.items() if read(k.strip())}


def _price(offer: Offer, raw: str, regular: str = "") -> None:
    """Sets the offer's price (or its error): `raw` is what it sells for, `regular` the price before a sale."""
    try:
        price, currency = parse_price(raw)
        before, _ = parse_price(regular)
    except ValueError as e:
        offer.error = f"the price {shown(str(e), 40)!r} is not an amount"
        return
    offer.price = price
    offer.regular_price = before if before is not None and price is not None and before > price else None
    offer.currency = currency


def _link(options: FeedOptions, path: str) -> str | None:
    return f"{options.shop_url.rstrip('/')}{path}" if options.shop_url else None


# -- Shopify --------------------------------------------------------------------------------------

SHOPIFY_COLUMNS = frozenset(
    ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Product Category", "Variant Price", "Variant Compare At Price"]
    + ["Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy", "Image Src", "Image Position"]
    + ["Variant Image", "Published", "Status"]
    + [f"Option{i} {part}" for i in (1, 2, 3) for part in ("Name", "Value")]
)


def _shopify_reads(name: str) -> bool:
    return name in SHOPIFY_COLUMNS or _gender_column(name)


def _gender_column(name: str) -> bool:
    return name.lower().startswith("gender") or name.lower().endswith("/ gender")


def shopify_offers(data: bytes, label: str, options: FeedOptions) -> list[Offer]:
    products: dict[str, tuple[Cells, list[tuple[int, str]], list[Offer]]] = {}
    out: list[Offer] = []
    for where, row in _rows(data, label, _shopify_reads):
        if isinstance(row, str):
            out.append(Offer("", "", where, error=row))
            continue
        handle = row.get("Handle", "")
        if not handle:
            out.append(Offer("", "", where, error="the row has no Handle"))
            continue
        if handle not in products:
            products[handle] = (row, [], [])
        head, images, variants = products[handle]
        if src := row.get("Image Src"):
            try:
                position = int(row.get("Image Position") or 1_000_000)
            except ValueError:
                position = 1_000_000
            images.append((position, src))
        if row.get("Variant Price") or row.get("Option1 Value") or row is head:
            variants.append(_shopify_variant(handle, row, head, where, len(variants), options))
    for head, images, variants in products.values():
        if not variants:
            continue
        ordered = [src for _, src in sorted(images, key=lambda pi: pi[0])]
        variants[0].images = [*ordered, *variants[0].images]
        hidden = head.get("Status", "active").lower() not in ("active", "") or head.get("Published", "").lower() == "false"
        for v in variants:
            if hidden:
                v.availability = OUT_OF_STOCK
            out.append(v)
    return out


def _shopify_variant(handle: str, row: Cells, head: Cells, where: str, n: int, options: FeedOptions) -> Offer:
    offer = Offer(f"{handle}#{n}", handle, where)
    _price(offer, row.get("Variant Price", ""), row.get("Variant Compare At Price", ""))
    offer.currency = offer.currency or options.currency
    offer.title = head.get("Title", "")
    offer.description = head.get("Body (HTML)", "")
    offer.link = _link(options, f"/products/{handle}")
    if img := row.get("Variant Image"):
        offer.images = [img]
    tracker, policy = row.get("Variant Inventory Tracker", ""), row.get("Variant Inventory Policy", "deny").lower()
    try:
        qty = int(float(row.get("Variant Inventory Qty") or "1"))
    except (ValueError, OverflowError):  # not a count ('inf' is a float, not an int): unknown
        qty = 1
    offer.availability = "in_stock" if not tracker or policy == "continue" or qty > 0 else OUT_OF_STOCK
    offer.category_path = category_path(head.get("Type")) or category_path(head.get("Product Category"))
    offer.brand = head.get("Vendor") or None
    for i in (1, 2, 3):
        if head.get(f"Option{i} Name", "").lower() in ("color", "colour"):
            offer.color = row.get(f"Option{i} Value") or None
    gender = next((k for k in head if _gender_column(k)), None)
    offer.gender = head.get(gender, "") or None if gender else None
    return offer


# -- WooCommerce ----------------------------------------------------------------------------------


_COMMA = re.compile(r"(?<!\\),")
WOOCOMMERCE_COLUMNS = frozenset(
    ["ID", "Type", "SKU", "Name", "Published", "Description", "Short description", "In stock?", "Stock"]
    + ["Regular price", "Sale price", "Categories", "Images", "Parent", "Brands"]
    + [f"Attribute {i} {part}" for i in range(1, 6) for part in ("name", "value(s)")]
)


def _list(cell: str) -> list[str]:
    return [part.replace("\\,", ",").strip() for part in _COMMA.split(cell) if part.strip()]


def _count(cell: str) -> int:
    """A stock count, 0 when the cell is not one ('²' passes str.isdigit(), int() refuses it)."""
    try:
        return int(cell)
    except ValueError:
        return 0


def woocommerce_offers(data: bytes, label: str, options: FeedOptions) -> list[Offer]:
    rows: list[tuple[str, Cells]] = []
    out: list[Offer] = []
    for where, row in _rows(data, label, WOOCOMMERCE_COLUMNS.__contains__):
        if isinstance(row, str):
            out.append(Offer("", "", where, error=row))
        elif not row.get("ID") and not row.get("SKU"):
            out.append(Offer("", "", where, error="the row has neither an ID nor a SKU"))
        else:
            rows.append((where, row))
    by_id = {r["ID"]: r for _, r in rows if r.get("ID")}
    by_sku = {r["SKU"]: r for _, r in rows if r.get("SKU")}

    def key(r: Cells) -> str:
        return r.get("SKU") or r["ID"]

    for where, row in rows:
        kind = row.get("Type", "").lower()
        parent = row
        if "variation" in kind:
            ref = row.get("Parent", "")
            found = by_id.get(ref[3:]) if ref.startswith("id:") else by_sku.get(ref)
            if found is None:
                out.append(Offer(key(row), "", where, error=f"the variation's parent {shown(ref, 40)!r} is not in the export"))
                continue
            parent = found
        offer = Offer(key(row), key(parent), where)
        _price(offer, row.get("Sale price") or row.get("Regular price", ""), row.get("Regular price", ""))
        offer.currency = offer.currency or options.currency
        offer.title = parent.get("Name", "")
        offer.description = parent.get("Description") or parent.get("Short description", "")
        offer.link = _link(options, f"/?post_type=product&p={parent['ID']}") if parent.get("ID") else None
        offer.images = _list(row.get("Images", ""))
        stock = row.get("In stock?", "")
        if not stock and row.get("Stock"):
            stock = "1" if _count(row["Stock"]) > 0 else "0"
        offer.availability = availability(stock)
        if "variable" in kind or parent.get("Published", "1") not in ("1", ""):
            offer.availability = OUT_OF_STOCK  # a variable product sells through its variations; a draft not at all
        cats = _list(parent.get("Categories", ""))
        offer.category_path = category_path(cats[0]) if cats else []
        offer.brand = next(iter(_list(parent.get("Brands", ""))), None)
        for i in range(1, 6):
            name = (row.get(f"Attribute {i} name") or parent.get(f"Attribute {i} name") or "").lower()
            value = row.get(f"Attribute {i} value(s)") or ""
            if name in ("color", "colour") and value:
                offer.color = value
            elif name == "gender" and value:
                offer.gender = value
            elif name == "brand" and value and not offer.brand:
                offer.brand = value
        out.append(offer)
    return out
