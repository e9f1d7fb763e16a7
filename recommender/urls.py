"""Web addresses: the one test of "is this an http(s) URL" that importers, the bot and the renderer share."""

from __future__ import annotations

WEB_SCHEMES = ("http://", "https://")


def is_web_url(text: str) -> bool:
    """True for an http:// or https:// address (scheme compared case-insensitively)."""
    return text[:8].lower().startswith(WEB_SCHEMES)
