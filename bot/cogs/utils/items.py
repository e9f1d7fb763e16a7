"""Readable, unique item ids for items moderators add by hand."""

from __future__ import annotations

import hashlib
import re
import unicodedata


def slugify(text: str, max_len: int = 40) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "item"


def make_item_id(name: str, image: bytes, salt: str = "") -> str:
    """`blue-denim-jacket-3f9a1c`: the name's slug plus a short hash of the picture (and a salt
    for the rare retry), so the same name with a different photo gets a different id."""
    digest = hashlib.sha256(image + salt.encode()).hexdigest()[:6]
    return f"{slugify(name)}-{digest}"
