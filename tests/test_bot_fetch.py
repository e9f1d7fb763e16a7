"""The import URL fetcher's private-network guard holds at connection time, not only in a pre-check
that a rebinding DNS answer could get past."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from bot.cogs.utils.attachments import UrlFetcher, fetch_session, is_public


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 (RFC 8215)
        ("64:ff9b:1::a9fe:a9fe", False),
        ("::ffff:0:a00:1", False),  # SIIT ::ffff:0:10.0.0.1
        ("::a9fe:a9fe", False),  # IPv4-compatible ::169.254.169.254
        ("::ffff:0:5db8:d822", True),  # SIIT of a public address
        ("2002:7f00:1::1", False),
        ("224.0.0.1", False),
    ],
)
def test_is_public_sees_through_ipv6_wrappers(address: str, public: bool) -> None:
    assert is_public(address) is public


async def _secret(request: web.Request) -> web.Response:
    return web.Response(body=b"secret", content_type="image/jpeg")


async def _server() -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/x.jpg", _secret)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_the_session_itself_cannot_connect_to_loopback() -> None:
    runner, port = await _server()
    try:
        async with fetch_session(allow_private=False) as session:
            with pytest.raises(aiohttp.ClientError):  # no pre-check here: the resolver refuses
                async with session.get(f"http://localhost:{port}/x.jpg") as resp:
                    await resp.read()
        async with fetch_session(allow_private=True) as session:
            async with session.get(f"http://localhost:{port}/x.jpg") as resp:
                assert await resp.read() == b"secret"
    finally:
        await runner.cleanup()


async def test_the_fetcher_refuses_a_private_host_with_a_sentence() -> None:
    runner, port = await _server()
    try:
        async with fetch_session(allow_private=False) as session:
            fetch = UrlFetcher(session, max_bytes=1 << 20, timeout_s=5, concurrency=2)
            with pytest.raises(Exception, match="private network"):
                await fetch(f"http://localhost:{port}/x.jpg")
    finally:
        await runner.cleanup()
