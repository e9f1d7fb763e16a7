"""Moderator commands: /catalog add/remove/edit/show/list/stats/retrain/import, refusals, the audit
log, guild isolation, and /config."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.sandbox import CommandNotAvailable, InteractionRecord, Message
from bot.sandbox.permissions import Perm

from harness import TRAIN_IDS, Harness, MakeHarness, demo_split, embed_text, held_out, jpeg, listed

pytestmark = pytest.mark.timeout(120)


def ephemeral_text(inter: InteractionRecord) -> str:
    assert inter.messages and all(m.ephemeral for m in inter.messages), inter.describe()
    return "\n".join(embed_text(m) for m in inter.messages)


def field(message: Message, name: str) -> str:
    return next(f["value"] for e in message.embeds for f in e.get("fields") or [] if f["name"] == name)


async def add(h: Harness, user: Any, photo: Any, name: str, category: str, **extra: Any) -> InteractionRecord:
    return await h.slash(user, "catalog add", {"name": name, "category": category, **extra}, attachments={"image": jpeg(photo)})


async def test_non_moderators_are_refused_politely(harness: Harness) -> None:
    h = harness
    photo = held_out("hat")[0]
    for command, options, files in [
        ("catalog add", {"name": "Hat", "category": "hat"}, {"image": jpeg(photo)}),
        ("catalog remove", {"item": "hat/x"}, None),
        ("catalog list", {}, None),
        ("catalog import", {}, {"file": ("items.csv", b"id,category\n", "text/csv")}),
        ("catalog stats", {}, None),
    ]:
        inter = await h.slash(h.alice, command, options, attachments=files)
        assert inter.callback_type == 4 and inter.original is not None and inter.original.ephemeral
        assert inter.original.content.startswith("Sorry, only moderators can manage the catalogue"), inter.original.content
    # /config is hidden from members without Manage Server (default_member_permissions), as on Discord
    with pytest.raises(CommandNotAvailable):
        await h.sandbox.invoke_slash(h.guild, h.channel, h.alice, "config watch", {"channel": h.chat})
    assert await h.audit() == []
    assert (await h.rec.stats(guild_id=h.guild.id))["catalogue"] == "default"  # type: ignore[union-attr]
    h.assert_clean()


async def test_moderator_role_can_be_configured(harness: Harness) -> None:
    h = harness
    before = await h.slash(h.mod, "catalog stats")
    assert "only moderators" in ephemeral_text(before)
    config = await h.slash(h.owner, "config moderator-role", {"role": h.mods})
    assert f"<@&{h.mods.id}>" in ephemeral_text(config)
    after = await h.slash(h.mod, "catalog stats")
    assert "Catalogue statistics" in ephemeral_text(after) and field(after.messages[0], "Items") == str(len(TRAIN_IDS))
    await h.slash(h.owner, "config moderator-role")  # cleared again
    assert "only moderators" in ephemeral_text(await h.slash(h.mod, "catalog stats"))
    h.assert_clean()


async def test_add_show_edit_list_remove_with_audit_log(harness: Harness) -> None:
    h = harness
    rec = h.rec
    assert rec is not None
    photo = held_out("shoes")[0]
    added = await add(
        h,
        h.owner,
        photo,
        "Blue Suede Boots",
        "shoes",
        price=89.5,
        url="https://shop.example/boots",
        description="Soft suede, size 42",
    )
    text = ephemeral_text(added)
    assert "Added to the catalogue" in text and "own catalogue" in text  # the first item switches catalogues
    item_id = field(added.messages[0], "ID").strip("`")
    assert item_id.startswith("blue-suede-boots-") and len(item_id) == len("blue-suede-boots-") + 6
    assert field(added.messages[0], "Price") == "$89.50"
    assert added.messages[0].embeds[0]["thumbnail"]["url"].endswith("/item.jpg")  # the stored thumbnail

    shown = await h.slash(h.owner, "catalog show", {"item": item_id})
    assert "Blue Suede Boots" in ephemeral_text(shown) and field(shown.messages[0], "Category") == "shoes"
    edited = await h.slash(h.owner, "catalog edit", {"item": item_id, "price": 79.0, "name": "Suede Boots"})
    assert field(edited.messages[0], "Price") == "$79.00" and "Suede Boots" in ephemeral_text(edited)
    nothing = await h.slash(h.owner, "catalog edit", {"item": item_id})
    assert "Nothing to change" in ephemeral_text(nothing)
    bad_url = await h.slash(h.owner, "catalog edit", {"item": item_id, "url": "javascript:alert(1)"})
    assert "http://" in ephemeral_text(bad_url)
    no_host = await h.slash(h.owner, "catalog edit", {"item": item_id, "url": "https://"})
    assert "has no web site in it" in ephemeral_text(no_host)

    second = await add(h, h.owner, held_out("hat")[0], "Wool Hat", "hat")
    hat_id = field(second.messages[0], "ID").strip("`")
    listing = await h.slash(h.owner, "catalog list")
    listed_text = ephemeral_text(listing)
    assert "This server's catalogue" in listed_text and item_id in listed_text and hat_id in listed_text
    assert "Page 1 of 1 · 2 items" in listed_text
    only_hats = ephemeral_text(await h.slash(h.owner, "catalog list", {"category": "hat"}))
    assert hat_id in only_hats and item_id not in only_hats

    # the guild now searches its own catalogue: a photo reply lists only its two items
    reply = await h.ask(h.alice, [jpeg(held_out("shoes")[1])])
    assert {i for _, i in listed(reply.embeds[0])} == {item_id, hat_id}

    removed = await h.slash(h.owner, "catalog remove", {"item": hat_id})
    assert f"Removed **Wool Hat** (`{hat_id}`)" in ephemeral_text(removed)
    missing = await h.slash(h.owner, "catalog remove", {"item": hat_id})
    assert "There is no item" in ephemeral_text(missing)

    audit = await h.audit()
    actions = [(a["action"], a["item_id"], a["actor"]) for a in reversed(audit)]
    owner = f"user:{h.owner.id}"
    assert actions == [("add", item_id, owner), ("edit", item_id, owner), ("add", hat_id, owner), ("remove", hat_id, owner)]
    assert audit[2]["detail"] == {"price": 79.0, "name": "Suede Boots"}
    assert await h.audit(h.guild_b) == []
    h.assert_clean()


async def test_guilds_see_only_their_own_catalogue_and_settings(harness: Harness) -> None:
    h = harness
    added = await add(h, h.owner, held_out("dress")[0], "Red Dress", "dress")
    item_id = field(added.messages[0], "ID").strip("`")
    # guild B still searches the shared default catalogue and never sees guild A's item
    b_show = await h.slash(h.owner_b, "catalog show", {"item": item_id}, guild=h.guild_b)
    assert "There is no item" in ephemeral_text(b_show)
    b_similar = await h.slash(h.carol, "similar-item", {"item": item_id}, guild=h.guild_b)
    assert "There is no item" in embed_text(b_similar.messages[-1])
    b_reply = await h.ask(h.carol, [jpeg(held_out("dress")[0])], channel=h.channel_b)
    assert {i for _, i in listed(b_reply.embeds[0])} <= TRAIN_IDS
    b_list = ephemeral_text(await h.slash(h.owner_b, "catalog list", guild=h.guild_b))
    assert "Shared default catalogue" in b_list and item_id not in b_list
    # guild B cannot remove guild A's item either, and A's settings are not B's
    assert "There is no item" in ephemeral_text(await h.slash(h.owner_b, "catalog remove", {"item": item_id}, guild=h.guild_b))
    await h.slash(h.owner, "config k", {"n": 2})
    b_reply = await h.ask(h.carol, [jpeg(held_out("dress")[1])], channel=h.channel_b)
    assert len(listed(b_reply.embeds[0])) == h.settings.k
    assert (await h.rec.guild_settings(h.guild_b.id)).k is None  # type: ignore[union-attr]
    h.assert_clean()


async def test_config_watch_unwatch_and_k(make_harness: MakeHarness) -> None:
    h = await make_harness(watch=False)
    photo = [jpeg(held_out("longsleeve")[0])]
    unanswered = await h.post(h.alice, photo)
    watch = await h.slash(h.owner, "config watch", {"channel": h.chat})
    assert f"I'll answer photos posted in {h.chat.mention}" in ephemeral_text(watch)
    k = await h.slash(h.owner, "config k", {"n": 2})
    assert "2 items" in ephemeral_text(k)
    reply = await h.ask(h.alice, photo, channel=h.chat)
    assert len(listed(reply.embeds[0])) == 2
    shown = ephemeral_text(await h.slash(h.owner, "config show"))
    assert h.chat.mention in shown and "Items per reply: 2" in shown
    await h.slash(h.owner, "config unwatch", {"channel": h.chat})
    after = await h.post(h.alice, photo, channel=h.chat)
    await asyncio.sleep(0.6)
    assert h.replies_to(unanswered) == [] and h.replies_to(after) == []
    actions = [a["action"] for a in await h.audit()]
    assert actions == ["unwatch", "config", "watch"]
    h.assert_clean()


async def test_config_watch_names_missing_permissions_threads_included(harness: Harness) -> None:
    h = harness
    no_threads = h.sandbox.create_text_channel(h.guild, "no-threads", overwrites={h.bot_user: (0, Perm.SEND_MESSAGES_IN_THREADS)})
    text = ephemeral_text(await h.slash(h.owner, "config watch", {"channel": no_threads}))
    assert "missing these permissions there: Send Messages In Threads." in text
    assert "missing" not in ephemeral_text(await h.slash(h.owner, "config watch", {"channel": h.chat}))
    h.assert_clean()


async def test_stats_and_retrain(harness: Harness) -> None:
    h = harness
    refused = ephemeral_text(await h.slash(h.owner, "catalog retrain"))
    assert "no items of its own" in refused
    await add(h, h.owner, held_out("shoes")[0], "Boot", "shoes")
    await add(h, h.owner, held_out("hat")[0], "Cap", "hat")
    retrained = ephemeral_text(await h.slash(h.owner, "catalog retrain"))
    assert retrained.startswith("Retrained: a ") and "2 categories" in retrained
    stats = await h.slash(h.owner, "catalog stats")
    assert field(stats.messages[0], "Items") == "2" and "tiny" in field(stats.messages[0], "Model")
    h.assert_clean()


# -- imports -------------------------------------------------------------------------------------


@pytest.fixture
async def image_server() -> AsyncIterator[str]:
    """Catalogue photos over HTTP on 127.0.0.1: /img/<name>, plus a 404, an oversized and a slow URL."""
    photos = {p.name: p.read_bytes() for p in demo_split()[0]}

    async def img(request: web.Request) -> web.StreamResponse:
        data = photos.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/jpeg")

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\xff\xd8\xff" + bytes(400_000), content_type="image/jpeg")

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(body=b"", content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/img/{name}", img)
    app.router.add_get("/huge.jpg", huge)
    app.router.add_get("/slow.jpg", slow)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def manifest(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["id", "name", "category", "price", "url", "description", "image_url"])
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


async def run_import(h: Harness, user: Any, file: tuple[str, bytes, str]) -> tuple[InteractionRecord, list[tuple[float, str]]]:
    """/catalog import, recording every state of its one message (progress, then the summary) with its time."""
    inter = await h.sandbox.invoke_slash(h.guild, h.channel, user, "catalog import", attachments={"file": file})
    seen: list[tuple[float, str]] = []

    def shown() -> str | None:
        msg = inter.original
        return msg.content if msg is not None and not msg.loading else None

    async def watch() -> None:
        while True:
            text = shown()
            if text:
                seen.append((time.monotonic(), text))
            await h.sandbox.wait_until(lambda text=text: shown() != text, 60)

    watcher = asyncio.create_task(watch())
    try:
        await h.sandbox.wait_until(lambda: inter.original is not None and bool(inter.original.embeds), 60)  # the summary
    finally:
        watcher.cancel()
    return inter, seen


async def test_csv_import_with_image_urls(make_harness: MakeHarness, image_server: str) -> None:
    h = await make_harness(options={"fetch_timeout_s": 1.0, "fetch_private_urls": True}, settings={"max_image_bytes": 300_000})
    photos = demo_split()[0]
    rows = [
        dict(
            id=f"sku-{i}",
            name=f"Item {i}",
            category=p.parent.name,
            price=f"{10 + i}.00",
            url=f"https://shop.example/{i}",
            description="",
            image_url=f"{image_server}/img/{p.name}",
        )
        for i, p in enumerate(photos[::7])
    ]
    good = len(rows)
    rows += [
        dict(id="gone", name="Gone", category="hat", image_url=f"{image_server}/img/nothing.jpg"),
        dict(id="local", name="Local", category="hat", image_url="images/local.jpg"),
        dict(id="big", name="Big", category="hat", image_url=f"{image_server}/huge.jpg"),
        dict(id="slow", name="Slow", category="hat", image_url=f"{image_server}/slow.jpg"),
        dict(id="cheap", name="Cheap", category="hat", price="free", image_url=f"{image_server}/img/{photos[0].name}"),
        dict(id="", name="No id", category="hat", image_url=f"{image_server}/img/{photos[0].name}"),
    ]
    inter, progress = await run_import(h, h.owner, ("items.csv", manifest(rows), "text/csv"))
    assert inter.original is not None and inter.original.ephemeral
    assert progress and progress[-1][1].startswith(f"Imported: {len(rows)}/{len(rows)} (100%) — {good} added")
    summary = inter.original
    assert summary is not None and inter.followups == []  # progress and summary: one message
    assert summary.ephemeral
    s = summary.embeds[0]
    assert field(summary, "Added") == str(good) and field(summary, "Failed") == "6"
    failures = s["description"]
    for expected in (
        "`gone`",
        "HTTP 404",
        "`local`",
        "not a web address",
        "`big`",
        "limit",
        "`slow`",
        "did not answer within 1s",
        "`cheap`",
        "price 'free' is not a number",
        "the id is empty",
    ):
        assert expected in failures, (expected, failures)
    items, total, _ = await h.rec.list_items(guild_id=h.guild.id, per_page=100)  # type: ignore[union-attr]
    assert total == good and {i.item_id for i in items} == {r["id"] for r in rows[:good]}
    assert {i.price for i in items} == {10.0 + i for i in range(good)}
    # importing the same file again changes nothing
    again, _ = await run_import(h, h.owner, ("items.csv", manifest(rows), "text/csv"))
    assert field(again.original, "Unchanged") == str(good) and field(again.original, "Added") == "0"
    audit = [a for a in await h.audit() if a["action"] == "import"]  # type: ignore[union-attr]
    assert [a["detail"]["added"] for a in audit] == [0, good] and audit[0]["actor"] == f"user:{h.owner.id}"
    h.assert_clean()


async def test_csv_import_refuses_private_addresses_by_default(harness: Harness, image_server: str) -> None:
    h = harness
    photo = demo_split()[0][0].name
    rows = [
        dict(id="local", name="Local", category="hat", image_url=f"{image_server}/img/{photo}"),
        dict(id="meta", name="Metadata", category="hat", image_url="http://169.254.169.254/latest/meta-data/"),
        dict(id="ftp", name="Ftp", category="hat", image_url=f"ftp://example.com/{photo}"),
    ]
    inter, _ = await run_import(h, h.owner, ("items.csv", manifest(rows), "text/csv"))
    failures = inter.original.embeds[0]["description"]
    assert field(inter.original, "Added") == "0" and field(inter.original, "Failed") == "3"
    assert failures.count("points into a private network") == 2 and "`ftp`" in failures
    h.assert_clean()


async def test_zip_import_progress_is_throttled(make_harness: MakeHarness) -> None:
    h = await make_harness(options={"progress_interval_s": 1.0})
    photos = demo_split()[0]
    buf = io.BytesIO()
    rows = []
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(150):  # three batches of the importer: several progress updates
            p = photos[i % len(photos)]
            zf.writestr(f"images/{i}-{p.name}", p.read_bytes())
            rows.append(
                dict(id=f"z{i}", name=f"Zip item {i}", category=p.parent.name, image_url="", price="", url="", description="")
            )
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=["id", "name", "category", "path"])
        w.writeheader()
        w.writerows(
            {"id": r["id"], "name": r["name"], "category": r["category"], "path": f"images/{i}-{photos[i % len(photos)].name}"}
            for i, r in enumerate(rows)
        )
        zf.writestr("catalogue.csv", text.getvalue())
    inter, progress = await run_import(h, h.owner, ("catalogue.zip", buf.getvalue(), "application/zip"))
    assert field(inter.original, "Added") == "150" and field(inter.original, "Failed") == "0"
    assert progress[0][1].startswith("Importing… 0/150") and progress[-1][1].startswith("Imported: 150/150")
    times = [t for t, _ in progress]
    assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), progress  # at most ~1 edit per second
    assert (await h.rec.stats(guild_id=h.guild.id))["items"] == 150  # type: ignore[union-attr]
    h.assert_clean()


async def test_import_rejects_unusable_files(harness: Harness) -> None:
    h = harness
    wrong = await h.slash(
        h.owner, "catalog import", attachments={"file": ("items.xlsx", b"PK\x03\x04", "application/octet-stream")}
    )
    assert "Upload a .csv file" in ephemeral_text(wrong)
    not_zip = await h.slash(h.owner, "catalog import", attachments={"file": ("items.zip", b"not a zip", "application/zip")})
    assert "not a valid ZIP" in ephemeral_text(not_zip)
    no_columns = await h.slash(h.owner, "catalog import", attachments={"file": ("items.csv", b"sku,label\n1,hat\n", "text/csv")})
    assert "has no column 'id' or 'category'" in ephemeral_text(no_columns)
    empty = await h.slash(h.owner, "catalog import", attachments={"file": ("items.csv", b"", "text/csv")})
    assert "empty" in ephemeral_text(empty)
    h.assert_clean()


async def test_import_with_too_many_rows_points_to_the_cli(make_harness: MakeHarness) -> None:
    h = await make_harness(options={"import_max_rows": 3})
    rows = [dict(id=f"r{i}", name=f"Row {i}", category="hat", image_url=f"https://img.example/{i}.jpg") for i in range(4)]
    refused = ephemeral_text(
        await h.slash(h.owner, "catalog import", attachments={"file": ("big.csv", manifest(rows), "text/csv")})
    )
    assert "more than 3 rows" in refused and f"lookalike import --guild {h.guild.id}" in refused
    assert (await h.rec.stats(guild_id=h.guild.id))["catalogue"] == "default"  # type: ignore[union-attr]  # nothing imported
    h.assert_clean()


async def test_an_import_that_outlives_its_interaction_token_is_saved_and_logged(
    make_harness: MakeHarness, image_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(options={"fetch_private_urls": True, "fetch_timeout_s": 5.0, "progress_interval_s": 0.2})
    h.sandbox.followup_ttl = 1.0  # Discord's 15 minutes, shortened
    caplog.set_level(logging.INFO)
    photos = demo_split()[0]
    rows = [dict(id="slow", name="Slow", category="hat", image_url=f"{image_server}/slow.jpg")]  # answers after 2 s
    rows += [
        dict(id=f"ok{i}", name=f"Ok {i}", category=p.parent.name, image_url=f"{image_server}/img/{p.name}")
        for i, p in enumerate(photos[:3])
    ]
    inter = await h.sandbox.invoke_slash(
        h.guild, h.channel, h.owner, "catalog import", attachments={"file": ("late.csv", manifest(rows), "text/csv")}
    )
    outlived = [r for r in caplog.records if "outlived its interaction" in r.getMessage()]
    for _ in range(200):
        if outlived:
            break
        await asyncio.sleep(0.05)
        outlived = [r for r in caplog.records if "outlived its interaction" in r.getMessage()]
    [record] = outlived
    assert record.levelno == logging.INFO and "3 added" in record.getMessage()
    assert inter.followups == []  # no summary (it could not be sent) and no apology
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("bot.")]
    assert [a["detail"]["added"] for a in await h.audit() if a["action"] == "import"] == [3]
    # the sandbox recorded the refused late calls; they are this test's point, not a problem
    late = [v for v in h.sandbox.violations if v.kind == "invalid_webhook_token"]
    assert late and len(late) == len(h.sandbox.violations)
    h.sandbox.violations.clear()
    h.assert_clean()
