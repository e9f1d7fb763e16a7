"""Web addresses: the one test of "is this an http(s) URL" that importers, the bot and the renderer share."""

from __future__ import annotations

import urllib.parse

from .errors import BadOption

WEB_SCHEMES = ("http://", "https://")


def is_web_url(text: str) -> bool:
    """True for an http:// or https:// address (scheme compared case-insensitively)."""
    return text[:8].lower().startswith(WEB_SCHEMES)


def check_url(url: str | None) -> str | None:
    """An item's link as a moderator typed it: an http(s) address with a host, or BadOption."""
    if url is None:
        return None
    url = url.strip()
    if not is_web_url(url) or any(c.isspace() for c in url) or not url.isprintable():
        raise BadOption("The link must be a web address starting with http:// or https://.")
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise BadOption("The link has no web site in it: write the whole address, like https://shop.example/item.")
    return url
