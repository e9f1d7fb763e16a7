"""Discord attachments -> bytes, with size limits and timeouts. Image URLs are fetched by the
recommender's UrlFetcher (recommender/webfetch.py, shared with `lookalike sync`), re-exported here.

Which attachments count as photos is decided from the declared content type and the file name;
whether they really are images is decided later by the recommender, from the bytes."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

import aiohttp
import discord

from recommender.config import PHOTO_EXTENSIONS  # a HEIC photo is answered with why it cannot be read
from recommender.errors import BadImage, ImageTooLarge
from recommender.webfetch import PublicOnlyResolver, UrlFetcher, fetch_session, is_public

log = logging.getLogger(__name__)


def looks_like_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/"):
        return True
    if ctype and ctype != "application/octet-stream":
        return False  # declared as something else (text/plain, video/mp4, ...)
    return PurePosixPath(attachment.filename.lower()).suffix in PHOTO_EXTENSIONS


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


async def read_attachment(attachment: discord.Attachment, max_bytes: int) -> bytes:
    """Download an attachment; BadImage (a sentence) when it is too large, empty or unreachable. Callers hold
    one of the bot's `downloads` slots from before the download until its bytes are used (a burst of members'
    photos must not hold GBs at once)."""
    if attachment.size > max_bytes:
        raise ImageTooLarge(f"The file is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}.")
    if attachment.size == 0:
        raise BadImage("The file is empty.")
    try:
        return await attachment.read()
    except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
        log.warning("could not download attachment %s: %s", attachment.url, e)
        raise BadImage(f"I couldn't download {attachment.filename}; please try posting it again.") from None


__all__ = ["PublicOnlyResolver", "UrlFetcher", "fetch_session", "is_public", "looks_like_image", "read_attachment"]
