"""Details a check against Discord's published API found: deferred interactions are finished by
editing the original response, and replies still read well where the bot may not embed links."""

from __future__ import annotations

import pytest

from bot.sandbox import Perm

from harness import TRAIN_IDS, Harness, held_out, jpeg

pytestmark = pytest.mark.timeout(120)

EDIT_ORIGINAL = "PATCH /webhooks/{app_id}/{token}/messages/@original"
FOLLOW_UP = "POST /webhooks/{app_id}/{token}"


def numbered(text: str) -> list[tuple[str, str]]:
    """(category, item id) of each numbered match line of a text reply."""
    out = []
    for line in text.splitlines():
        if line.startswith("**") and "% similar" in line:
            parts = line.split(" · ")
            out.append((parts[1], line.rsplit("`", 2)[-2]))
    return out


async def test_deferred_answers_edit_the_original_response_and_send_no_follow_up(harness: Harness) -> None:
    h = harness
    cases = [
        (h.alice, "similar", {"k": 2}, {"image": jpeg(held_out("hat")[0])}),  # public, with files
        (h.owner, "catalog stats", None, None),  # ephemeral, embed only
        (h.owner, "config show", None, None),
        (h.alice, "similar-item", {"item": "no-such-item"}, None),  # an error, worded by the error handler
    ]
    for user, command, options, attachments in cases:
        inter = await h.slash(user, command, options, attachments=attachments)
        endpoints = [r.endpoint for r in inter.requests]
        assert endpoints[-1] == EDIT_ORIGINAL, (command, endpoints)
        assert FOLLOW_UP not in endpoints, (command, endpoints)
        assert len(inter.messages) == 1 and not inter.messages[0].loading
    assert "no-such-item" in inter.messages[0].content
    h.assert_clean()


async def test_without_embed_links_a_photo_is_answered_in_text_with_the_picture_grid(harness: Harness) -> None:
    h = harness
    with_embeds = await h.ask(h.alice, [jpeg(held_out("shoes")[0])])
    assert with_embeds.embeds
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.EMBED_LINKS, channel=h.channel)
    reply = await h.ask(h.bob, [jpeg(held_out("shoes")[0])])
    assert reply.embeds == []
    assert reply.content.startswith("**Looks like: ")
    items = numbered(reply.content)
    assert len(items) == h.settings.k and {i for _, i in items} <= TRAIN_IDS
    assert items == numbered("\n".join(_lines(with_embeds)))  # the same answer, as text
    assert [a.filename for a in reply.attachments] == ["matches-1.jpg"]
    assert "Searched the shared default catalogue" in reply.content
    h.assert_clean()


def _lines(message) -> list[str]:
    return (message.embeds[0].get("description") or "").splitlines()


async def test_config_watch_says_what_missing_embed_links_means(harness: Harness) -> None:
    h = harness
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.EMBED_LINKS, channel=h.chat)
    inter = await h.slash(h.owner, "config watch", {"channel": h.chat})
    text = inter.messages[0].content
    assert "Embed Links" in text and "plain text" in text
    h.assert_clean()


async def test_without_attach_files_a_photo_is_answered_without_the_grid(harness: Harness) -> None:
    h = harness
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.ATTACH_FILES, channel=h.channel)
    reply = await h.ask(h.alice, [jpeg(held_out("hat")[0])])
    assert reply.attachments == [] and len(reply.embeds) == 1
    assert "image" not in reply.embeds[0] and len(numbered(reply.embeds[0]["description"])) == h.settings.k
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.EMBED_LINKS, channel=h.channel)
    reply = await h.ask(h.bob, [jpeg(held_out("hat")[1])])  # neither: the answer as plain text
    assert reply.attachments == [] and reply.embeds == [] and len(numbered(reply.content)) == h.settings.k
    h.assert_clean()


async def test_without_read_message_history_a_photo_is_answered_in_a_message_naming_the_member(harness: Harness) -> None:
    """Discord refuses a reply where the bot may not read the channel's history: the photo was looked at, and the
    answer refused, so the member heard nothing."""
    h = harness
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.READ_MESSAGE_HISTORY, channel=h.channel)
    before = len(h.sent())
    await h.post(h.alice, [jpeg(held_out("shoes")[0])])
    [answer] = await h.sandbox.wait_until(lambda: h.sent()[before:], 30, "the bot's answer")
    assert answer.reference_id is None and answer.content.startswith(f"<@{h.alice.id}>")
    assert answer.embeds and len(numbered(answer.embeds[0]["description"])) == h.settings.k
    await h.settled()
    h.assert_clean()
