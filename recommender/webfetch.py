"""Images (and feeds) from the web, for imports and syncs: `await fetcher(url) -> bytes`.

http(s) only, size-capped (the body is counted as it streams, never held past the limit), time-limited,
a bounded number at once, redirects followed by hand (at most 3), retried with jittered exponential
back-off on 5xx, 429, timeouts and dropped connections. Unless `allow_private`, hosts that resolve to
loopback, private, link-local or reserved addresses are refused, at connection time
(`PublicOnlyResolver`), so a DNS answer that changes between a check and the connection gains nothing.

Conditional requests: given the content hash an item already has, a URL whose `ETag`/`Last-Modified`
were remembered with that same hash is asked with `If-None-Match`/`If-Modified-Since`; a 304 comes
back as `NotModified(hash)` and nothing is downloaded. What the fetcher learns is in `learned`, for the
caller to persist (feedstate.py). Errors come out as BadImage with the reason, for the summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import aiohttp.abc
import yarl

from .errors import BadImage, ImageTooLarge
from .names import shown
from .records import NotModified

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "lookalike-bot (catalogue import)"
_JOIN_ON_LOOP = 4 << 20  # bodies larger than this are joined in a thread


@dataclass(frozen=True)
class Validator:
    """What a server said about a URL's content last time, and the hash of that content."""

    etag: str | None
    last_modified: str | None
    digest: str


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


class UrlFetcher:
    MAX_REDIRECTS = 3

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_bytes: int,
        timeout_s: float,
        concurrency: int,
        allow_private: bool = False,
        retries: int = 2,
        backoff_s: float = 0.5,
        validators: dict[str, Validator] | None = None,
        what: str = "image",
        allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.session = session
        self.allowed = allowed or is_public  # which resolved addresses may be reached (unless allow_private)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.retries = retries
        self.backoff_s = backoff_s
        self.validators = dict(validators or {})
        self.learned: dict[str, Validator] = {}  # new or changed validators, to persist
        self.what = what
        self._slots = asyncio.Semaphore(concurrency)

    def sibling(self, *, validators: dict[str, Validator] | None = None, **changes: object) -> UrlFetcher:
        """A fetcher on the same session and the same slots (the bound holds across both), with its own
        validators and `learned` (one per sync), and any settings changed (`max_bytes`, `what`, ...)."""
        values: dict[str, object] = dict(
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            concurrency=1,
            allow_private=self.allow_private,
            retries=self.retries,
            backoff_s=self.backoff_s,
            what=self.what,
            allowed=self.allowed,
        )
        values.update(changes)
        other = UrlFetcher(self.session, validators=validators, **values)  # type: ignore[arg-type]
        other._slots = self._slots
        return other

    async def __call__(self, url: str, known: str | None = None) -> bytes | NotModified:
        """The body, or NotModified(known) when the server says the content is still what had `known`."""
        for attempt in range(self.retries + 1):
            try:
                async with self._slots:
                    async with asyncio.timeout(self.timeout_s):  # one try, redirects and body included
                        return await self._fetch(url, known)
            except TimeoutError:
                reason = f"the {self.what} URL did not answer within {self.timeout_s:.0f}s"
            except _Retry as e:
                reason = e.reason
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                reason = f"the {self.what} URL could not be fetched ({type(e).__name__})"
            except aiohttp.ClientError as e:
                raise BadImage(f"the {self.what} URL could not be fetched ({type(e).__name__})") from None
            if attempt < self.retries:
                await asyncio.sleep(self.backoff_s * (2**attempt) * random.uniform(0.5, 1.5))
        raise BadImage(f"{reason} (tried {self.retries + 1} times)")

    def _conditions(self, url: str, known: str | None) -> dict[str, str]:
        v = self.validators.get(url)
        if known is None or v is None or v.digest != known:
            return {}
        headers = {"If-None-Match": v.etag} if v.etag else {}
        if v.last_modified:
            headers["If-Modified-Since"] = v.last_modified
        return headers

    async def _fetch(self, url: str, known: str | None) -> bytes | NotModified:
        first = url
        headers = self._conditions(url, known)
        for _ in range(self.MAX_REDIRECTS + 1):
            target = self._address(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise BadImage(f"only http(s) {self.what} URLs can be fetched")
            if not self.allow_private:
                await self._check_public(target)
            async with self.session.get(target, allow_redirects=False, headers=headers) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = str(target.join(self._address(resp.headers["Location"])))
                    continue
                if resp.status == 304 and headers and known is not None:
                    self.learned[first] = self.validators[first]  # still in a feed: remembered from now on too
                    return NotModified(known)
                if resp.status in RETRY_STATUSES:
                    raise _Retry(f"the {self.what} URL answered HTTP {resp.status}")
                if resp.status != 200:
                    raise BadImage(f"the {self.what} URL answered HTTP {resp.status}")
                data = await self._body(resp)
                etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            if etag or modified:
                digest = await asyncio.to_thread(_sha256, data)
                self.validators[first] = self.learned[first] = Validator(etag, modified, digest)
            return data
        raise BadImage(f"the {self.what} URL redirects too many times")

    def _address(self, url: str) -> yarl.URL:
        """`url` parsed, or BadImage when no connection could be made to it: its port is not 0-65535, or its
        host is not a name DNS can look up (an empty label as in a..b, one over 63 characters, a bad xn--)."""
        try:
            target = yarl.URL(url)
            _ = (target.port, target.host)  # yarl checks the port and decodes xn-- labels when asked
            (target.raw_host or "").encode("idna")  # as getaddrinfo will
        except ValueError:  # UnicodeError is one
            raise BadImage(f"the {self.what} URL '{shown(url, 80)}' is not a valid web address") from None
        return target

    async def _body(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise ImageTooLarge(f"the {self.what} is {_mb(resp.content_length)}; the limit is {_mb(self.max_bytes)}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise ImageTooLarge(f"the {self.what} is larger than {_mb(self.max_bytes)}")
            chunks.append(chunk)
        if size > _JOIN_ON_LOOP:  # a feed of up to 256 MB: one copy of it holds the loop 50-100 ms
            return await asyncio.to_thread(b"".join, chunks)
        return b"".join(chunks)

    async def _check_public(self, url: yarl.URL) -> None:
        """A clear answer for the summary. The guarantee is PublicOnlyResolver: it filters the very
        addresses the connection uses, so a DNS answer that changes in between gains nothing."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(url.host, url.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            raise BadImage(f"the {self.what} URL's host {url.host} could not be found") from None
        if not any(self.allowed(str(info[4][0])) for info in infos):
            raise BadImage(f"the {self.what} URL points into a private network, which imports may not reach")


_LAST_32_BITS_V4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "64:ff9b::/96",  # NAT64, well-known prefix
        "::ffff:0:0:0/96",  # SIIT, IPv4-translated ::ffff:0:a.b.c.d
        "::/96",  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
    )
)
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use, the IPv4 may sit anywhere in it


def is_public(address: str) -> bool:
    """A globally routable unicast address, also looking inside IPv6 forms that carry an IPv4
    address (mapped ::ffff:a.b.c.d, SIIT, IPv4-compatible, 6to4, Teredo, NAT64); local-use NAT64 never is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and any(ip in n for n in _LAST_32_BITS_V4):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """aiohttp resolver that keeps only public addresses: the connection can't reach a private one."""

    def __init__(self, allowed: Callable[[str], bool] | None = None) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self.allowed = allowed or is_public

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        public = [r for r in await self._inner.resolve(host, port, family) if self.allowed(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to private addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def fetch_session(allow_private: bool, allowed: Callable[[str], bool] | None = None) -> aiohttp.ClientSession:
    """The HTTP session for catalogue imports; with allow_private=False it cannot connect to
    loopback, private, link-local or reserved addresses, whatever DNS answers (`allowed`: another
    test of an address than `is_public`, for tests that play the public internet on loopback)."""
    connector = None if allow_private else aiohttp.TCPConnector(resolver=PublicOnlyResolver(allowed))
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()  # the content hash the store keeps (images.content_hash)
