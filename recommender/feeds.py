"""Shop feeds -> one item per product: the Google Merchant Center feed (RSS 2.0 / Atom with the `g:`
namespace, or tab-separated), Shopify's products CSV export and WooCommerce's product CSV export.

The format is detected from the content (`detect`), or named; the readers are feed_google.py and
feed_csv.py, the folding of variants into products is offers.py. Parsing is synchronous and the
whole feed is held (a shop's feed is megabytes): callers run it in a thread.
"""

from __future__ import annotations

from . import feed_csv, feed_google
from .errors import BadManifest
from .offers import FORMATS, Feed, FeedOptions, fold

__all__ = ["FORMATS", "Feed", "FeedOptions", "detect", "read_feed"]


# -- detection and dispatch -----------------------------------------------------------------------


def _header(data: bytes) -> list[str]:
    line = data[:65536].split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").strip("\r")
    sep = "\t" if "\t" in line else ","
    return [c.strip().strip('"').strip().lower() for c in line.split(sep)]


def detect(data: bytes) -> str:
    """The feed's format from its first bytes: XML is Google's; CSV/TSV by its header row."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        return "google"
    cols = set(_header(data))
    if "handle" in cols and ("variant price" in cols or "title" in cols):
        return "shopify"
    if "regular price" in cols or {"id", "sku", "name", "in stock?"} <= cols:
        return "woocommerce"
    if "id" in cols and ({"image_link", "image link"} & cols):
        return "google"
    raise BadManifest(
        "This does not look like a Google Merchant Center feed, a Shopify products export or a WooCommerce "
        "product export (its first line is not one of their headers); name the format with --format."
    )


def read_feed(data: bytes, options: FeedOptions | None = None, label: str = "feed") -> Feed:
    """The whole feed, parsed (synchronously: run it in a thread)."""
    options = (options or FeedOptions()).check()
    if not data.strip():
        raise BadManifest(f"The {label} is empty.")
    fmt = detect(data) if options.format == "auto" else options.format
    if fmt == "google":
        offers = feed_google.offers(data, label)
    elif fmt == "shopify":
        offers = feed_csv.shopify_offers(data, label, options)
    else:
        offers = feed_csv.woocommerce_offers(data, label, options)
    return fold(offers, options, fmt)
