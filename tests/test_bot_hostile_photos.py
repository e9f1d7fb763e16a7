"""Hostile photos through the sandbox (issue #11): every crafted photo of the issue's table gets a
reply in words or an answer, and a normal photo posted at the same moment never waits for them."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from test_hostile_photos import CASES, GREY16, STUCK_SIZE, WHITE, crafted, hold_png_open, transparent_png

from harness import Harness, MakeHarness, held_out, jpeg, listed

pytestmark = pytest.mark.timeout(120)

MIME = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "webp": "image/webp",
    "gif": "image/gif",
    "tif": "image/tiff",
}


async def test_every_crafted_photo_gets_words_or_an_answer_and_a_normal_one_its_answer(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.WARNING)
    normal = jpeg(held_out("shoes")[0])
    made = await asyncio.to_thread(lambda: [crafted(name) for name in CASES])  # off the bot's loop
    posts = {name: (name, data, MIME[name.rsplit(".", 1)[1]]) for name, data in zip(CASES, made)}
    members = {name: h.member(f"member-{i}") for i, name in enumerate([*posts, "normal"])}
    messages = await asyncio.gather(
        *(h.post(members[name], [file]) for name, file in posts.items()), h.post(members["normal"], [normal])
    )
    replies = await asyncio.gather(*(h.reply_to(m, timeout=60) for m in messages))
    answer = replies[-1]
    assert len(answer.embeds) == 1 and len(listed(answer.embeds[0])) == h.settings.k
    for (name, _), reply in zip(posts.items(), replies):
        expected = CASES[name][1]
        if expected in (WHITE, GREY16):  # accepted: searched like any photo
            assert len(reply.embeds) == 1 and len(listed(reply.embeds[0])) == h.settings.k, (name, reply.content)
        else:  # refused in words: the sentence of recommender.images, not a traceback
            assert reply.embeds == [] and reply.attachments == [], name
            sentence = re.sub(r"^\^\w+: ", "", expected).rstrip("$")  # the regex of the message alone
            assert reply.content.startswith(f"⚠️ **{name}**: "), reply.content
            assert re.search(sentence, reply.content), (name, reply.content)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    h.assert_clean()


async def test_a_normal_photo_is_answered_while_another_is_stuck_in_its_decoder(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness()
    entered, release = hold_png_open(monkeypatch)
    try:
        data = await asyncio.to_thread(transparent_png, *STUCK_SIZE)
        stuck = await h.post(h.alice, [("stuck.png", data, "image/png")])
        assert await asyncio.to_thread(entered.wait, 30)  # the bot is inside Pillow's PNG reader for it
        normal = await h.reply_to(await h.post(h.bob, [jpeg(held_out("hat")[0])]), timeout=30)
        assert len(listed(normal.embeds[0])) == h.settings.k
        assert h.replies_to(stuck) == []  # still being decoded: the answer above did not wait for it
    finally:
        release.set()
    late = await h.reply_to(stuck, timeout=30)
    assert len(late.embeds) == 1 and len(listed(late.embeds[0])) == h.settings.k
    h.assert_clean()
