"""Learning from members, end to end: sandbox -> real discord.py bot -> real recommender (SQLite and
PostgreSQL). A photo reply that predicts a category invites 👍/👎 and carries them; members' votes and
a moderator's /catalog label make labelled member photos of that server only; removing a reaction
takes the vote back; /catalog stats counts them; /config forget-photos deletes them.

The tiny test backbone is never sure of a category at the default threshold (0.5), so the tests that
need a predicted category lower it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.cogs.utils.votes import INVITE
from bot.sandbox import CommandNotAvailable, Message, Perm
from recommender.records import CommunityStats

from harness import CATEGORIES, Harness, MakeHarness, held_out, jpeg

pytestmark = pytest.mark.timeout(120)

UP, DOWN = "👍", "👎"
SURE = {"threshold": 0.15}  # the tiny backbone's probabilities are 0.17-0.36: every photo gets a category


async def community(
    h: Harness, check: Callable[[CommunityStats], bool], *, guild: Any = None, timeout: float = 10.0
) -> CommunityStats:
    """The guild's counts once `check` holds (votes arrive through the gateway, a moment later)."""
    assert h.rec is not None
    gid = (guild or h.guild).id
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stats = await h.rec.community(guild_id=gid)
        if check(stats):
            return stats
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"community counts never matched: {stats}")
        await asyncio.sleep(0.02)


def predicted(reply: Message) -> str | None:
    title = reply.embeds[0]["title"]
    return title.removeprefix("Looks like: ").rsplit(" (", 1)[0] if title.startswith("Looks like: ") else None


async def answered(h: Harness, user: Any, photo: Any, **kw: Any) -> tuple[Message, Message]:
    """(the member's photo message, the bot's reply), once the reply's follow-up work is done."""
    msg = await h.post(user, [jpeg(photo)], **kw)
    reply = await h.reply_to(msg)
    await h.settled()
    return msg, reply


async def test_votes_label_a_photo_and_removing_a_reaction_takes_the_vote_back(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    bot_id = h.bot_user.id
    msg, reply = await answered(h, h.alice, held_out("shoes")[0])
    kind = predicted(reply)
    assert kind in CATEGORIES and INVITE in reply.content
    assert reply.reactions == {UP: {bot_id}, DOWN: {bot_id}}  # one click to vote
    await community(h, lambda s: s.remembered == 1 and s.thumbs_up == s.thumbs_down == s.labelled == 0)  # its own don't count

    await h.react(h.alice, reply, UP)
    await h.react(h.bob, msg, UP)  # a vote on the member's photo message counts the same
    await h.react(h.bob, reply, "🔥")  # other emojis are no votes
    stats = await community(h, lambda s: s.thumbs_up == 2)
    assert (stats.labelled, stats.by_moderators, stats.thumbs_down) == (1, 0, 0)

    await h.react(h.bob, msg, UP, remove=True)
    await community(h, lambda s: s.thumbs_up == 1 and s.labelled == 1)
    await h.react(h.alice, reply, UP, remove=True)
    await community(h, lambda s: s.thumbs_up == 0 and s.labelled == 0)
    await h.react(h.bob, reply, DOWN)
    await community(h, lambda s: s.thumbs_down == 1 and s.labelled == 0)  # 👎 alone says "wrong", not what is right

    await h.react(h.owner, reply, UP)  # a moderator's 👍 is a label, whatever the other votes
    stats = await community(h, lambda s: s.by_moderators == 1)
    assert stats.labelled == 1
    dave = h.member("dave")
    await h.react(dave, reply, UP)  # clicked in a hurry: the votes reach the recommender in order, the last counts
    await h.react(dave, reply, DOWN)
    stats = await community(h, lambda s: s.thumbs_down == 2)
    assert (stats.thumbs_up, stats.labelled) == (1, 1)
    empty = await community(h, lambda s: True, guild=h.guild_b)  # another server learnt nothing
    assert (empty.remembered, empty.labelled, empty.thumbs_up) == (0, 0, 0)
    assert [r.bot_id for r in h.sandbox.requests if r.method == "PUT" and "/reactions/" in r.route] == [bot_id, bot_id]
    h.assert_clean()


async def test_a_vote_that_comes_before_the_reply_is_linked_to_its_photo_still_counts(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply (which asks for votes) is sent before it is linked to the photo. A 👍 in between, on the reply
    or on the photo message, found no message the recommender knew, and was dropped without a word."""
    h = await make_harness(settings=SURE)
    assert h.rec is not None
    real_link = h.rec.link_reply

    async def slow_link(*args: Any, **kw: Any) -> None:  # a database busy with an import: seconds
        await asyncio.sleep(1.0)
        await real_link(*args, **kw)

    monkeypatch.setattr(h.rec, "link_reply", slow_link)
    msg = await h.post(h.alice, [jpeg(held_out("shoes")[0])])
    reply = await h.reply_to(msg)
    await h.react(h.bob, reply, UP)  # before the link
    await h.react(h.alice, msg, UP)
    await community(h, lambda s: s.thumbs_up == 2)
    await h.settled()
    h.assert_clean()


async def test_taking_one_reaction_back_leaves_the_vote_the_other_still_shows(make_harness: MakeHarness) -> None:
    """A member may show 👍 and 👎 at once; taking one back leaves the vote of the one still shown."""
    h = await make_harness(settings=SURE)
    msg, reply = await answered(h, h.alice, held_out("shoes")[0])
    await h.react(h.alice, reply, "👍🏽")  # any skin tone
    await h.react(h.alice, reply, DOWN)  # the last counts
    await community(h, lambda s: s.thumbs_down == 1 and s.thumbs_up == 0)
    await h.react(h.alice, reply, DOWN, remove=True)
    stats = await community(h, lambda s: s.thumbs_down == 0)
    assert stats.thumbs_up == 1  # 👍🏽 is still shown under the reply
    await h.react(h.alice, reply, "👍🏽", remove=True)
    await community(h, lambda s: s.thumbs_up == 0)
    await h.react(h.alice, reply, UP)  # the photo message and the reply carry one vote
    await h.react(h.alice, msg, DOWN)
    await community(h, lambda s: s.thumbs_down == 1)
    await h.react(h.alice, msg, DOWN, remove=True)
    stats = await community(h, lambda s: s.thumbs_down == 0)
    assert stats.thumbs_up == 1  # 👍 is still shown under the reply
    await h.react(h.alice, reply, UP, remove=True)
    await community(h, lambda s: s.thumbs_up == 0)
    chat = await h.post(h.bob, [], content="nice")
    await h.react(h.bob, chat, UP)
    await h.react(h.bob, chat, UP, remove=True)  # a message no photo of which is remembered: nothing read over REST
    await h.settled()

    await h.react(h.owner, msg, UP)  # a moderator's 👍 labels, their 👎 takes the label back ...
    await h.react(h.owner, msg, DOWN)
    await community(h, lambda s: s.thumbs_down == 1 and s.by_moderators == 0)
    await h.react(h.owner, msg, DOWN, remove=True)  # ... and taking the 👎 back leaves the 👍: a label again
    stats = await community(h, lambda s: s.thumbs_down == 0)
    assert (stats.thumbs_up, stats.by_moderators, stats.labelled) == (1, 1, 1)
    assert not any(r.method == "GET" and str(chat.id) in r.path for r in h.sandbox.requests)
    h.assert_clean()


async def test_a_moderator_label_fixes_the_category_for_this_server_only(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    photo = held_out("pants")[1]
    msg, reply = await answered(h, h.alice, photo)
    wrong = predicted(reply)
    right = next(c for c in ("hat", "dress") if c != wrong)

    refused = await h.slash(h.bob, "catalog label", {"message": h.link(reply), "category": right})
    assert refused.original is not None and refused.original.ephemeral
    assert "only moderators" in refused.original.content
    done = await h.slash(h.owner, "catalog label", {"message": h.link(reply), "category": right})
    assert done.original is not None and done.original.ephemeral
    assert done.original.content == (
        f"Thanks: that photo is now labelled **{right}**; I'll use it for this server's answers (1 labelled so far)."
    )
    again = await h.ask(h.bob, [jpeg(photo)])
    assert predicted(again) == right  # the next answer in this server has learnt it
    elsewhere = await h.ask(h.carol, [jpeg(photo)], channel=h.channel_b)
    assert predicted(elsewhere) != right  # another server's answers have not

    stats = await h.slash(h.owner, "catalog stats")
    fields = {f["name"]: f["value"] for f in stats.embeds[0]["fields"]}
    assert "1 labelled (1 by moderators)" in fields["Members' photos"] and "2 remembered" in fields["Members' photos"]
    assert "adapting" not in fields["Members' photos"]  # adaptation is off: the running mean moves no query
    assert [e["action"] for e in await h.audit()][:1] != []  # the label is audit-logged with the member
    h.assert_clean()


async def test_label_mistakes_are_answered_in_words(make_harness: MakeHarness) -> None:
    h = await make_harness()  # default threshold: "not sure", so no invitation and no reactions
    msg, reply = await answered(h, h.alice, held_out("hat")[0])
    assert reply.embeds[0]["title"] == "Looks like: not sure"
    assert INVITE not in (reply.content or "") and reply.reactions == {}

    async def label(options: dict[str, Any], user: Any = None) -> str:
        inter = await h.slash(user or h.owner, "catalog label", options)
        assert inter.original is not None and inter.original.ephemeral
        return inter.original.content

    assert "don't remember that photo" in await label({"message": str(msg.id + 12345), "category": "hat"})
    assert "Copy Message Link" in await label({"message": "yesterday's hat", "category": "hat"})
    other = f"https://discord.com/channels/{h.guild_b.id}/{h.channel_b.id}/{msg.id}"
    assert "not in this server" in await label({"message": other, "category": "hat"})
    assert "'hatt' is not one of this catalogue's categories. Did you mean 'hat'" in await label(
        {"message": str(msg.id), "category": "hatt"}
    )
    assert "photo must be 1 to 1" in await label({"message": str(msg.id), "category": "hat", "photo": 2})
    # the moderator role set with /config moderator-role may label too, by the photo message's id
    assert "only moderators" in await label({"message": str(msg.id), "category": "hat"}, h.mod)
    await h.slash(h.owner, "config moderator-role", {"role": h.mods})
    assert "labelled **hat**" in await label({"message": str(msg.id), "category": "HAT"}, h.mod)

    typed = await h.sandbox.autocomplete(
        h.guild, h.channel, h.owner, "catalog label", {"message": str(msg.id), "category": "sh"}, focused="category"
    )
    await typed.wait_done()
    names = [c["name"] for c in typed.choices or []]
    assert names[:3] == ["shirt", "shoes", "shorts"] and names[3:] == ["t-shirt"]  # those starting with it first
    typed = await h.sandbox.autocomplete(  # discord.py runs no cog check for autocomplete: the command's own gate
        h.guild, h.channel, h.alice, "catalog label", {"message": str(msg.id), "category": "sh"}, focused="category"
    )
    await typed.wait_done()
    assert typed.choices == []  # a member who may not label is not shown the catalogue's categories
    h.assert_clean()


async def test_label_suggests_the_categories_of_the_catalogue_that_answered_the_photo(make_harness: MakeHarness) -> None:
    h = await make_harness()
    msg, _ = await answered(h, h.alice, held_out("hat")[0])  # answered from the shared catalogue
    added = await h.slash(
        h.owner, "catalog add", {"name": "Wool Scarf", "category": "scarf"}, attachments={"image": jpeg(held_out("shirt")[0])}
    )
    assert added.original is not None and "own catalogue" in added.original.content

    async def suggested(options: dict[str, Any]) -> list[str]:
        typed = await h.sandbox.autocomplete(
            h.guild, h.channel, h.owner, "catalog label", {**options, "category": "s"}, focused="category"
        )
        await typed.wait_done()
        return [c["name"] for c in typed.choices or []]

    assert await suggested({}) == ["scarf"]  # no message yet: the server's catalogue now
    assert await suggested({"message": "yesterday's hat"}) == ["scarf"]
    assert await suggested({"message": "9" * 20}) == ["scarf"]  # above any snowflake: no message of this server
    assert set(await suggested({"message": h.link(msg)})) == {c for c in CATEGORIES if "s" in c}  # the catalogue that answered it
    inter = await h.slash(h.owner, "catalog label", {"message": h.link(msg), "category": "shoes"})
    assert inter.original is not None and "labelled **shoes**" in inter.original.content
    h.assert_clean()


async def test_replies_without_add_reactions_and_slash_similar(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.ADD_REACTIONS, channel=h.channel)
    msg, reply = await answered(h, h.alice, held_out("skirt")[0])
    assert reply.embeds and INVITE in reply.content and reply.reactions == {}  # answered all the same
    await h.react(h.bob, reply, UP)  # members may still vote
    await community(h, lambda s: s.labelled == 1)

    inter = await h.slash(h.bob, "similar", attachments={"image": jpeg(held_out("dress")[0])}, channel=h.chat)
    await h.settled()
    answer = inter.original
    assert answer is not None and not answer.ephemeral and INVITE in answer.content
    assert answer.reactions == {UP: {h.bot_user.id}, DOWN: {h.bot_user.id}}
    await h.react(h.alice, answer, UP)
    await community(h, lambda s: s.remembered == 2 and s.labelled == 2)
    item = await h.slash(h.bob, "similar-item", {"item": "dress/" + held_out("dress")[0].stem})  # no photo: nothing remembered
    assert item.original is not None and INVITE not in (item.original.content or "")
    await community(h, lambda s: s.remembered == 2)
    h.assert_clean()


async def test_forget_photos_deletes_what_the_server_taught(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    _, reply = await answered(h, h.alice, held_out("shorts")[0])
    await answered(h, h.bob, held_out("hat")[1])
    await answered(h, h.carol, held_out("hat")[1], channel=h.channel_b)
    await h.react(h.bob, reply, UP)
    await community(h, lambda s: s.remembered == 2 and s.labelled == 1)

    with pytest.raises(CommandNotAvailable):  # Discord hides /config from members without Manage Server
        await h.slash(h.alice, "config forget-photos", {"confirm": True})
    asked = await h.slash(h.owner, "config forget-photos")
    assert asked.original is not None and "I remember 2 member photos" in asked.original.content
    await community(h, lambda s: s.remembered == 2)  # nothing deleted without confirm
    done = await h.slash(h.owner, "config forget-photos", {"confirm": True})
    assert done.original is not None and done.original.content.startswith("Done: I forgot 2 member photos")
    stats = await community(h, lambda s: s.remembered == 0)
    assert (stats.labelled, stats.thumbs_up) == (0, 0)
    assert (await community(h, lambda s: True, guild=h.guild_b)).remembered == 1  # the other server's stay
    assert any(e["actor"] == f"user:{h.owner.id}" for e in await h.audit())
    await h.react(h.alice, reply, UP)  # a vote on a forgotten photo is ignored
    await asyncio.sleep(0.3)
    assert (await community(h, lambda s: True)).thumbs_up == 0
    h.assert_clean()


async def test_photo_n_of_a_message_stays_photo_n_when_an_earlier_one_cannot_be_read(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    bad = ("first.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 3000, "image/jpeg")
    msg = await h.post(h.alice, [bad, jpeg(held_out("shoes")[0])])
    reply = await h.reply_to(msg)
    await h.settled()
    assert "first.jpg" in reply.content  # the unreadable photo is named in the reply
    await community(h, lambda s: s.remembered == 1)

    first = await h.slash(h.owner, "catalog label", {"message": h.link(msg), "category": "hat", "photo": 1})
    assert first.original is not None and "labelled" not in first.original.content  # photo 1 was never remembered
    second = await h.slash(h.owner, "catalog label", {"message": h.link(msg), "category": "hat", "photo": 2})
    assert second.original is not None and "now labelled **hat**" in second.original.content
    await community(h, lambda s: s.labelled == 1 and s.by_moderators == 1)
    h.assert_clean()


async def test_with_remember_photos_off_nothing_is_kept_and_no_vote_is_asked_for(make_harness: MakeHarness) -> None:
    h = await make_harness(settings={**SURE, "remember_photos": False})
    msg, reply = await answered(h, h.alice, held_out("shoes")[0])
    assert predicted(reply) in CATEGORIES  # still answered, with a category
    assert INVITE not in reply.content and not reply.reactions
    await h.react(h.bob, reply, UP)
    assert h.rec is not None
    stats = await h.rec.community(guild_id=h.guild.id)
    assert (stats.remembered, stats.thumbs_up, stats.labelled) == (0, 0, 0)
    refused = await h.slash(h.owner, "catalog label", {"message": h.link(msg), "category": "hat"})
    assert refused.original is not None and "don't remember" in refused.original.content
    h.assert_clean()


async def test_a_server_that_turns_remembering_off_keeps_nothing_new_and_others_are_unchanged(make_harness: MakeHarness) -> None:
    h = await make_harness(settings=SURE)
    await answered(h, h.alice, held_out("shoes")[0])
    await community(h, lambda s: s.remembered == 1)
    with pytest.raises(CommandNotAvailable):  # /config is for Manage Server
        await h.slash(h.alice, "config remember-photos", {"enabled": False})

    off = await h.slash(h.owner, "config remember-photos", {"enabled": False})
    assert off.original is not None and "no longer keep anything" in off.original.content
    assert "The 1 photo I remembered before stay" in off.original.content  # and how to delete it
    msg, reply = await answered(h, h.alice, held_out("hat")[1])
    assert predicted(reply) in CATEGORIES and INVITE not in reply.content and not reply.reactions  # answered, no vote asked
    inter = await h.slash(h.bob, "similar", attachments={"image": jpeg(held_out("dress")[0])}, channel=h.chat)
    await h.settled()
    assert inter.original is not None and INVITE not in inter.original.content and not inter.original.reactions
    await answered(h, h.carol, held_out("hat")[1], channel=h.channel_b)  # another server still remembers
    assert (await community(h, lambda s: s.remembered == 1, guild=h.guild_b)).remembered == 1
    await asyncio.sleep(0.2)
    assert (await community(h, lambda s: True)).remembered == 1  # nothing new kept here
    refused = await h.slash(h.owner, "catalog label", {"message": h.link(msg), "category": "hat"})
    assert refused.original is not None and "don't remember" in refused.original.content
    shown = await h.slash(h.owner, "config show")
    assert shown.original is not None
    assert any(f["name"] == "Members' photos" and f["value"].startswith("not kept") for f in shown.original.embeds[0]["fields"])
    forgot = await h.slash(h.owner, "config forget-photos", {"confirm": True})
    assert forgot.original is not None and "not kept (remembering is off here)" in forgot.original.content

    on = await h.slash(h.owner, "config remember-photos", {"enabled": True})
    assert on.original is not None and "remember the photos members post here again" in on.original.content
    _, again = await answered(h, h.alice, held_out("shoes")[0])
    assert INVITE in again.content
    await community(h, lambda s: s.remembered == 1)
    assert [e["action"] for e in await h.audit()].count("config") == 2  # both choices are in the audit log
    h.assert_clean()


def test_stats_say_adapting_only_when_adaptation_is_on() -> None:
    import discord

    from bot.render_community import add_community_field

    for adapting, shown in ((False, False), (True, True)):
        embed = add_community_field(discord.Embed(), CommunityStats(3, 1, 1, 2, 0, 3, adapting))
        assert ("adapting to members' photos from 3" in str(embed.fields[0].value)) is shown


async def test_a_photo_the_bot_cannot_reply_to_is_not_remembered(make_harness: MakeHarness) -> None:
    """Without Send Messages in the channel no reply goes out, so nobody can vote on the photo or label it: it is
    not kept (before, its features stayed, unlinked, and counted against the server's bound)."""
    from bot.sandbox import Perm

    h = await make_harness(settings=SURE)
    h.sandbox.revoke_permissions(h.guild, h.bot_user, Perm.SEND_MESSAGES, channel=h.channel)
    msg = await h.post(h.alice, [jpeg(held_out("shoes")[0])])
    await h.settled()
    assert h.replies_to(msg) == []
    assert (await h.rec.community(guild_id=h.guild.id)).remembered == 0
