"""A shop feed synced three times, as a schedule would: the work each sync does, and how long it takes.

    .venv/bin/python bench/feed_sync.py --model efficientnet-lite0

The bundled CC0 demo photos (120) are served on loopback by an aiohttp server that sends ETag and
Last-Modified and answers conditional requests with 304, as shop CDNs do; the feed is Google
Merchant Center RSS, one product per photo. Into a fresh SQLite file:
  1. the first sync: every picture downloaded, decoded and embedded;
  2. the same feed again: nothing downloaded (304s), nothing embedded;
  3. after the shop changed 10% of the prices and 10% of the pictures: only those pictures.
Prints a Markdown table: seconds, picture downloads (200s), 304s, embeddings.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import platform
import sys
import tempfile
import time
from collections import Counter
from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "tests" / "data" / "clothing-demo" / "images"


class Shop:
    def __init__(self, photos: dict[str, bytes]) -> None:
        self.photos = photos
        self.prices = {name: 20.0 + i % 50 for i, name in enumerate(sorted(photos))}
        self.full: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.base = ""

    def feed(self) -> bytes:
        items = "".join(
            f"<item><g:id>{escape(name)}</g:id><title>{escape(name)}</title><link>https://shop.example/p/{escape(name)}</link>"
            f"<g:image_link>{self.base}/img/{escape(name)}</g:image_link><g:price>{self.prices[name]:.2f} USD</g:price>"
            f"<g:availability>in_stock</g:availability><g:product_type>Apparel &gt; {name.split('--')[0]}</g:product_type></item>"
            for name in sorted(self.photos)
        )
        return (
            f'<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel>{items}</channel></rss>'
        ).encode()

    async def img(self, request: web.Request) -> web.Response:
        data = self.photos[request.match_info["name"]]
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Last-Modified": formatdate(1_700_000_000, usegmt=True)}
        if request.headers.get("If-None-Match") == etag:
            self.not_modified[request.path] += 1
            return web.Response(status=304, headers=headers)
        self.full[request.path] += 1
        return web.Response(body=data, content_type="image/jpeg", headers=headers)

    async def feed_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self.feed(), content_type="application/xml")


async def main(model: str) -> None:
    from recommender.config import load_settings
    from recommender.engine import Recommender
    from recommender.webfetch import UrlFetcher, fetch_session

    photos = {f"{p.parent.name}--{p.name}": p.read_bytes() for p in sorted(DEMO.glob("*/*.jpg"))}
    shop = Shop(photos)
    app = web.Application()
    app.router.add_get("/img/{name}", shop.img)
    app.router.add_get("/feed", shop.feed_handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    shop.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(env={}, db=Path(tmp) / "c.db", model=model)
        async with await Recommender.open(settings) as rec, fetch_session(allow_private=True) as session:
            fetcher = UrlFetcher(session, max_bytes=settings.max_image_bytes, timeout_s=30, concurrency=8, allow_private=True)
            names = sorted(photos)
            for label in ("first sync (empty catalogue)", "same feed again", "10% prices and 10% pictures changed"):
                if label.startswith("10%"):
                    for name in names[::10]:
                        shop.prices[name] += 1.0
                    for a, b in zip(names[5::10], names[6::10]):  # a picture replaced by another one
                        shop.photos[a] = photos[b]
                shop.full.clear()
                shop.not_modified.clear()
                before = rec.embedder.embedded
                t0 = time.perf_counter()
                summary = await rec.sync_feed(f"{shop.base}/feed", guild_id=1, actor="bench", fetcher=fetcher)
                seconds = time.perf_counter() - t0
                s = summary.imported
                rows.append(
                    (label, seconds, sum(shop.full.values()), sum(shop.not_modified.values()), rec.embedder.embedded - before,
                     f"{s.added}/{s.updated}/{s.unchanged}/{len(s.failed)}")
                )  # fmt: skip
    await runner.cleanup()
    print(f"{len(photos)} products, model {model}, {platform.node()} ({platform.processor() or platform.machine()}), "
          f"{datetime.date.today()}")  # fmt: skip
    print("| sync | seconds | downloads (200) | not modified (304) | embedded | added/updated/unchanged/failed |")
    print("|---|---:|---:|---:|---:|---|")
    for label, seconds, full, nm, embedded, counts in rows:
        print(f"| {label} | {seconds:.2f} | {full} | {nm} | {embedded} | {counts} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet-lite0")
    asyncio.run(main(p.parse_args().model))
