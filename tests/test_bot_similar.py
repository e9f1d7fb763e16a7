"""/similar (by attachment) and /similar-item (by id), through real interactions."""

from __future__ import annotations

import pytest

from bot.sandbox import MessageFlag

from harness import TRAIN_IDS, Harness, demo_split, embed_text, held_out, jpeg, listed

pytestmark = pytest.mark.timeout(120)

DEFERRED = 5
MESSAGE = 4


async def test_similar_with_an_attachment_defers_then_follows_up(harness: Harness) -> None:
    h = harness
    inter = await h.slash(h.alice, "similar", {"k": 3}, attachments={"image": jpeg(held_out("skirt")[0])})
    assert inter.callback_type == DEFERRED and inter.callback_delay is not None and inter.callback_delay < 3
    [message] = inter.messages
    assert not message.ephemeral and not message.loading
    [embed] = message.embeds
    items = listed(embed)
    assert len(items) == 3 and {i for _, i in items} <= TRAIN_IDS
    assert embed["title"].startswith("Looks like: ")
    assert [a.filename for a in message.attachments] == ["matches-1.jpg"]
    h.assert_clean()


async def test_similar_filters_by_category_and_price(harness: Harness) -> None:
    h = harness
    inter = await h.slash(h.bob, "similar", {"k": 5, "category": "hat"}, attachments={"image": jpeg(held_out("shoes")[1])})
    items = listed(inter.messages[0].embeds[0])
    assert len(items) == 5 and {c for c, _ in items} == {"hat"}
    # the demo catalogue has no prices: a price filter leaves nothing, said in words
    inter = await h.slash(h.bob, "similar", {"min_price": 10.0}, attachments={"image": jpeg(held_out("shoes")[1])})
    assert "No catalogue items match" in embed_text(inter.messages[0])
    h.assert_clean()


async def test_similar_item_by_id(harness: Harness) -> None:
    h = harness
    photo = demo_split()[0][3]
    item_id = f"{photo.parent.name}/{photo.stem}"
    inter = await h.slash(h.alice, "similar-item", {"item": item_id, "k": 4})
    assert inter.callback_type == DEFERRED
    [embed] = inter.messages[0].embeds
    items = listed(embed)
    assert len(items) == 4 and item_id not in {i for _, i in items} and {i for _, i in items} <= TRAIN_IDS
    assert item_id in embed["author"]["name"] and embed["author"]["name"].startswith("Items like ")
    h.assert_clean()


async def test_similar_errors_are_sentences(harness: Harness) -> None:
    h = harness
    unknown = await h.slash(h.alice, "similar-item", {"item": "no-such-item"})
    assert unknown.messages[-1].content == "There is no item 'no-such-item' in this catalogue."
    broken = await h.slash(
        h.alice, "similar", attachments={"image": ("photo.jpg", b"\xff\xd8\xff" + b"\x00" * 500, "image/jpeg")}
    )
    text = broken.messages[-1].content
    assert text and "Traceback" not in text and len(text) < 200
    for inter in (unknown, broken):
        assert all(not m.loading for m in inter.messages)  # the "thinking…" state always ends
        assert not inter.failed
    h.assert_clean()


async def test_similar_works_in_a_second_guild_on_the_default_catalogue(harness: Harness) -> None:
    h = harness
    inter = await h.slash(h.carol, "similar", attachments={"image": jpeg(held_out("pants")[0])}, guild=h.guild_b)
    assert inter.messages[0].channel_id == h.channel_b.id
    assert len(listed(inter.messages[0].embeds[0])) == h.settings.k
    assert not inter.messages[0].flags & MessageFlag.EPHEMERAL
    h.assert_clean()
