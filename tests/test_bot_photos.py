"""Photo replies in watched channels, end to end: sandbox -> real discord.py bot -> recommender."""

from __future__ import annotations

import asyncio
import io
import logging
import os

import pytest
from PIL import Image

from harness import CATEGORIES, TRAIN_IDS, Harness, MakeHarness, demo_split, held_out, jpeg, listed

pytestmark = pytest.mark.timeout(120)


async def quiet_period(h: Harness, seconds: float = 0.6) -> None:
    """Let the bot finish anything it might still send."""
    await asyncio.sleep(seconds)


async def test_photo_in_watched_channel_gets_items_and_category(harness: Harness) -> None:
    h = harness
    msg = await h.post(h.alice, [jpeg(held_out("shoes")[0])])
    reply = await h.reply_to(msg)
    assert reply.author.id == h.bot_user.id and reply.type == 19  # a reply to the member's message
    [embed] = reply.embeds
    assert embed["title"].startswith("Looks like: ")
    items = listed(embed)
    assert len(items) == h.settings.k == len({i for _, i in items})
    assert {i for _, i in items} <= TRAIN_IDS  # catalogue items ...
    assert all(i.split("/")[0] == c for c, i in items)  # ... with their own categories
    assert embed["footer"]["text"] == "Searched the shared default catalogue"
    # the grid of stored thumbnails is uploaded by the bot and shown as the embed image
    [grid] = reply.attachments
    assert grid.filename == "matches-1.jpg" and grid.content_type == "image/jpeg" and grid.size > 1000
    assert embed["image"]["url"] == grid.url
    with Image.open(io.BytesIO(grid.data)) as im:
        assert im.width > im.height > 0  # one row of k cells
    assert h.sandbox.typing and h.sandbox.typing[0][0] == h.channel.id  # "lookalike is typing…"
    h.assert_clean()


async def test_exact_catalogue_photo_is_not_its_own_match(harness: Harness) -> None:
    h = harness
    photo = demo_split()[0][0]  # in the catalogue
    reply = await h.ask(h.alice, [jpeg(photo)])
    items = listed(reply.embeds[0])
    assert len(items) == h.settings.k
    assert f"{photo.parent.name}/{photo.stem}" not in {i for _, i in items}  # the duplicate is excluded by design
    assert {c for c, _ in items} <= set(CATEGORIES)
    h.assert_clean()


async def test_unwatched_channels_text_other_files_and_bots_are_ignored(harness: Harness) -> None:
    h = harness
    other_bot = h.sandbox.create_bot_user("another-bot")
    h.sandbox.add_member(h.guild, other_bot)
    photo = jpeg(held_out("hat")[0])
    ignored = [
        await h.post(h.alice, [photo], channel=h.chat),  # not a watched channel
        await h.post(h.alice, [], content="hello there"),  # no attachment
        await h.post(h.alice, [("notes.txt", b"just text", "text/plain")]),  # not an image
        await h.post(h.alice, [("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")]),
        await h.post(other_bot, [photo]),  # bots (the bot itself included) are ignored
    ]
    answered = await h.post(h.bob, [photo])
    await h.reply_to(answered)
    await quiet_period(h)
    assert all(h.replies_to(m) == [] for m in ignored)
    # the bot's own replies carry images and are echoed back by the gateway: it must not answer itself
    assert len(h.sent()) == 1
    h.assert_clean()


async def test_mentioning_the_bot_is_not_a_command_and_not_an_error(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    caplog.set_level(logging.WARNING)
    mentions = [
        await h.post(h.alice, [], content=f"<@{h.bot_user.id}> thanks!"),
        await h.post(h.alice, [], content=f"<@!{h.bot_user.id}> help", channel=h.chat),
    ]
    answered = await h.ask(h.bob, [jpeg(held_out("hat")[0])])  # photo replies still work
    assert answered.embeds
    await quiet_period(h)
    assert all(h.replies_to(m) == [] for m in mentions) and len(h.sent()) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    h.assert_clean()


async def test_several_photos_in_one_message_get_one_reply(make_harness: MakeHarness) -> None:
    h = await make_harness(options={"max_attachments": 3})
    photos = [jpeg(p) for p in (held_out("dress")[0], held_out("pants")[0], held_out("hat")[0], held_out("skirt")[0])]
    msg = await h.post(h.alice, [*photos[:2], ("readme.txt", b"text", "text/plain"), *photos[2:]])
    reply = await h.reply_to(msg)
    await quiet_period(h)
    assert h.replies_to(msg) == [reply]
    assert len(reply.embeds) == 3 and [a.filename for a in reply.attachments] == [
        "matches-1.jpg",
        "matches-2.jpg",
        "matches-3.jpg",
    ]
    assert [e["author"]["name"].split(" · ")[0] for e in reply.embeds] == ["Photo 1", "Photo 2", "Photo 3"]
    assert all(len(listed(e)) == h.settings.k for e in reply.embeds)
    assert "only look at the first 3 photos" in reply.content
    h.assert_clean()


def png_of_size(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, "PNG")
    return out.getvalue()


async def test_bad_attachments_get_a_friendly_note_and_no_traceback(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = await make_harness(settings={"max_image_bytes": 300_000, "max_image_pixels": 2_000_000})
    good = held_out("shorts")[0].read_bytes()
    bad = {
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + os.urandom(3000),
        "truncated.jpg": good[: len(good) // 2],
        "letter.jpg": b"Dear shop, this is not a photo at all.\n" * 20,
        "huge.jpg": os.urandom(400_000),
        "bomb.png": png_of_size(3000, 3000),
    }
    caplog.set_level(logging.WARNING)
    replies = {}
    for name, data in bad.items():
        replies[name] = await h.ask(h.alice, [(name, data, "image/jpeg" if name.endswith("jpg") else "image/png")])
    empty = await h.ask(h.alice, [("empty.png", b"", "image/png")])
    mixed = await h.ask(h.alice, [("shorts.jpg", good, "image/jpeg"), ("corrupt.jpg", bad["corrupt.jpg"], "image/jpeg")])
    for name, reply in {**replies, "empty.png": empty}.items():
        assert reply.embeds == [] and reply.attachments == []
        assert reply.content.startswith(f"⚠️ **{name}**: ") and len(reply.content) < 300, reply.content
        assert "Traceback" not in reply.content and "Error" not in reply.content
    assert "MB" in replies["huge.jpg"].content or "KB" in replies["huge.jpg"].content
    assert "truncated" in replies["truncated.jpg"].content.lower()
    assert "pixels" in replies["bomb.png"].content.lower() or "large" in replies["bomb.png"].content.lower()
    assert len(mixed.embeds) == 1 and len(listed(mixed.embeds[0])) == h.settings.k  # the good one still answered
    assert "corrupt.jpg" in mixed.content
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # expected problems are not errors
    h.assert_clean()


async def test_per_user_cooldown(make_harness: MakeHarness) -> None:
    h = await make_harness(options={"cooldown_rate": 1, "cooldown_per_s": 60})
    photo = [jpeg(held_out("t-shirt")[0])]
    first = await h.ask(h.alice, photo)
    assert first.embeds
    second = await h.ask(h.alice, photo)
    assert second.embeds == [] and "posting a little fast" in second.content
    third = await h.post(h.alice, photo)
    other = await h.ask(h.bob, photo)  # other members are not affected
    assert other.embeds
    inter = await h.slash(h.alice, "similar", attachments={"image": photo[0]})  # commands share the limit
    assert inter.callback_type == 4 and inter.original is not None and inter.original.ephemeral
    assert "going a little fast" in inter.original.content
    await quiet_period(h)
    assert h.replies_to(third) == []  # the note is not repeated for every photo
    h.assert_clean()


async def test_burst_of_20_photos_all_answered_without_missing_a_heartbeat(make_harness: MakeHarness) -> None:
    h = await make_harness(heartbeat=0.5)
    photos = demo_split()[1]
    users = [h.member(f"shopper{i}") for i in range(20)]
    posted = await asyncio.gather(*(h.post(u, [jpeg(photos[i % len(photos)])]) for i, u in enumerate(users)))
    replies = await asyncio.gather(*(h.reply_to(m, timeout=60) for m in posted))
    assert len({r.id for r in replies}) == 20
    assert all(len(listed(r.embeds[0])) == h.settings.k for r in replies)
    assert h.sandbox.max_heartbeat_gap < 0.5 + h.sandbox.heartbeat_grace
    assert h.sandbox.violations == []
    h.assert_clean()


async def test_a_burst_of_photos_is_downloaded_a_few_at_a_time(make_harness: MakeHarness) -> None:
    """Every member's attachments were downloaded at once (16 here): with 20 MB photos, members × 4 × 20 MB."""
    h = await make_harness(options={"fetch_concurrency": 2, "max_attachments": 4})
    h.sandbox.cdn_delay_s = 0.2  # a slow network: downloads overlap
    photos = demo_split()[1]
    users = [h.member(f"shopper{i}") for i in range(4)]
    posted = await asyncio.gather(
        *(h.post(u, [jpeg(photos[(4 * i + j) % len(photos)]) for j in range(4)]) for i, u in enumerate(users))
    )
    replies = await asyncio.gather(*(h.reply_to(m, timeout=60) for m in posted))
    assert all(len(r.embeds) == 4 for r in replies)
    assert h.sandbox.cdn_peak == 2  # 16 downloads, two at a time
    h.assert_clean()


@pytest.mark.parametrize(
    "filename, content_type, looked_at",
    [
        ("IMG_0042.JFIF", None, True),  # how Windows and Chrome save JPEGs
        ("photo.jpe", "application/octet-stream", True),
        ("phone.heic", None, True),  # answered with why it cannot be read
        ("notes.txt", None, False),
        ("clip.jpg", "video/mp4", False),  # declared as something else
        ("noext", "image/png", True),
    ],
)
def test_which_attachments_are_photos(filename: str, content_type: str | None, looked_at: bool) -> None:
    from types import SimpleNamespace

    from bot.cogs.utils.attachments import looks_like_image

    assert looks_like_image(SimpleNamespace(filename=filename, content_type=content_type)) is looked_at  # type: ignore[arg-type]
