"""Discord attachments and image URLs -> bytes, with size limits and timeouts.

Which attachments count as photos is decided from the declared content type and the file name;
whether they really are images is decided later by the recommender, from the bytes."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import PurePosixPath

import aiohttp
import aiohttp.abc
import discord
import yarl

from recommender.errors import BadImage, ImageTooLarge

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}


def looks_like_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/"):
        return True
    if ctype and ctype != "application/octet-stream":
        return False  # declared as something else (text/plain, video/mp4, ...)
    return PurePosixPath(attachment.filename.lower()).suffix in IMAGE_EXTENSIONS


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


async def read_attachment(attachment: discord.Attachment, max_bytes: int) -> bytes:
    """Download an attachment; BadImage (a sentence) when it is too large, empty or unreachable."""
    if attachment.size > max_bytes:
        raise ImageTooLarge(f"The file is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}.")
    if attachment.size == 0:
        raise BadImage("The file is empty.")
    try:
        return await attachment.read()
    except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as e:
        log.warning("could not download attachment %s: %s", attachment.url, e)
        raise BadImage(f"I couldn't download {attachment.filename}; please try posting it again.") from None


class UrlFetcher:
    """`await fetch(url) -> bytes` for catalogue imports: http(s) only, size-capped, time-limited,
    a bounded number at once, redirects followed by hand (at most 3). Unless `allow_private`, hosts
    that resolve to loopback, private, link-local or reserved addresses are refused (no SSRF into
    the bot's own network). Errors come out as BadImage with the reason, for the import summary."""

    MAX_REDIRECTS = 3

    def __init__(
        self, session: aiohttp.ClientSession, *, max_bytes: int, timeout_s: float, concurrency: int, allow_private: bool = False
    ) -> None:
        self.session = session
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, url: str) -> bytes:
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout_s):  # the whole fetch, redirects and body included
                    return await self._fetch(url)
            except TimeoutError:
                raise BadImage(f"the image URL did not answer within {self.timeout_s:.0f}s") from None
            except aiohttp.ClientError as e:
                raise BadImage(f"the image URL could not be fetched ({type(e).__name__})") from None

    async def _fetch(self, url: str) -> bytes:
        for _ in range(self.MAX_REDIRECTS + 1):
            target = yarl.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise BadImage("only http(s) image URLs can be fetched")
            if not self.allow_private:
                await self._check_public(target)
            async with self.session.get(target, allow_redirects=False) as resp:  # time-limited by __call__
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = str(target.join(yarl.URL(resp.headers["Location"])))
                    continue
                if resp.status != 200:
                    raise BadImage(f"the image URL answered HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise ImageTooLarge(f"the image is {_mb(resp.content_length)}; the limit is {_mb(self.max_bytes)}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageTooLarge(f"the image is larger than {_mb(self.max_bytes)}")
                    chunks.append(chunk)
                return b"".join(chunks)
        raise BadImage("the image URL redirects too many times")

    @staticmethod
    async def _check_public(url: yarl.URL) -> None:
        """A clear answer for the summary. The guarantee is PublicOnlyResolver: it filters the very
        addresses the connection uses, so a DNS answer that changes in between gains nothing."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(url.host, url.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            raise BadImage(f"the image URL's host {url.host} could not be found") from None
        if not any(is_public(str(info[4][0])) for info in infos):
            raise BadImage("the image URL points into a private network, which imports may not reach")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: str) -> bool:
    """A globally routable unicast address, also looking inside IPv6 forms that carry an IPv4
    address (mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """aiohttp resolver that keeps only public addresses: the connection can't reach a private one."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        public = [r for r in await self._inner.resolve(host, port, family) if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to private addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def fetch_session(allow_private: bool) -> aiohttp.ClientSession:
    """The HTTP session for catalogue imports; with allow_private=False it cannot connect to
    loopback, private, link-local or reserved addresses, whatever DNS answers."""
    connector = None if allow_private else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": "lookalike-bot (catalogue import)"})
