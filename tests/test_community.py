"""Learning from the community (#10 items 4 and 5) through the facade, on the real demo catalogue (tiny
backbone) in SQLite and PostgreSQL: members' photos remembered as features, 👍/👎 votes and moderators'
labels, the guild's category vote and its own catalogue's head, the bounds, forgetting, the domain state,
restarts, and the schema's migration both ways."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageOps
from sqlalchemy import inspect, text

from recommender.adapt import MIN_COUNT
from recommender.errors import BadOption, PhotoNotFound

from helpers import DEMO, DEMO_CATEGORIES, PYTHON, ROOT, demo_db, demo_photos, open_rec

GUILD, OTHER = 111, 222  # two servers that search the shared default catalogue
MOD, ALICE, BOB, CAROL = 1, 2, 3, 4


def mirrored(path: Path) -> bytes:
    """A member's photo made from a demo picture (mirrored): not in the catalogue."""
    with Image.open(path) as im:
        out = io.BytesIO()
        ImageOps.mirror(im.convert("RGB")).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest_asyncio.fixture
async def rec(demo_catalogue: str):
    """Threshold 0.1: the tiny backbone is rarely sure, and votes need a predicted category."""
    r = await open_rec(demo_catalogue, retrain_delay_s=0.1, threshold=0.1)
    yield r
    await r.close()


async def answer(rec, path: Path, *, guild: int = GUILD, message: int, reply: int, **kw):
    """The bot's path: answer and remember the photo, then link it to the two messages."""
    res = await rec.similar(mirrored(path), guild_id=guild, remember=True, **kw)
    assert res.photo_id is not None
    await rec.link_reply([res.photo_id], guild_id=guild, channel_id=7, photo_message_id=message, reply_message_id=reply)
    return res


async def sure_answer(rec, *, message: int, reply: int, guild: int = GUILD):
    for p in demo_photos()[3::11]:
        res = await answer(rec, p, guild=guild, message=message, reply=reply)
        if res.prediction is not None and res.prediction.category is not None:
            return res
    raise AssertionError("no demo photo got a sure category")


async def test_votes_label_a_photo_with_its_predicted_category_and_removing_one_takes_it_back(rec) -> None:
    res = await sure_answer(rec, message=1000, reply=1001)
    predicted = res.prediction.category
    first = await rec.react(guild_id=GUILD, message_id=1001, user_id=ALICE, verdict=1)
    assert (first.photos, first.label, first.labelled) == (1, predicted, 1)
    both = await rec.react(guild_id=GUILD, message_id=1000, user_id=BOB, verdict=1)  # on the photo message too
    assert (both.label, both.labelled) == (predicted, 1)
    again = await rec.react(guild_id=GUILD, message_id=1001, user_id=BOB, verdict=1)  # one vote per member
    stats = await rec.community(guild_id=GUILD)
    assert (stats.thumbs_up, stats.thumbs_down, stats.labelled, stats.by_moderators) == (2, 0, 1, 0)
    assert again.label == predicted
    await rec.react(guild_id=GUILD, message_id=1001, user_id=CAROL, verdict=-1)
    await rec.react(guild_id=GUILD, message_id=1001, user_id=ALICE, verdict=-1)  # changed their mind: 1 up, 2 down
    assert (await rec.react(guild_id=GUILD, message_id=1001, user_id=ALICE, verdict=-1)).label is None
    gone = await rec.react(guild_id=GUILD, message_id=1001, user_id=CAROL, verdict=0)  # reaction removed: 1 up, 1 down
    assert (gone.label, gone.labelled) == (None, 0)
    assert (await rec.react(guild_id=GUILD, message_id=1001, user_id=ALICE, verdict=0)).label == predicted  # 1 up, 0 down
    stats = await rec.community(guild_id=GUILD)
    assert (stats.remembered, stats.thumbs_up, stats.thumbs_down, stats.labelled) == (stats.remembered, 1, 0, 1)
    assert await rec.react(guild_id=GUILD, message_id=424242, user_id=ALICE, verdict=1) is None  # not remembered
    assert await rec.react(guild_id=OTHER, message_id=1001, user_id=ALICE, verdict=1) is None  # another server's
    with pytest.raises(BadOption):
        await rec.react(guild_id=GUILD, message_id=1001, user_id=ALICE, verdict=2)


async def test_votes_cast_at_once_are_all_counted(rec) -> None:
    res = await sure_answer(rec, message=1500, reply=1501)
    votes = {10: 1, 11: 1, 12: 1, 13: 1, 14: -1, 15: -1}
    await asyncio.gather(*(rec.react(guild_id=GUILD, message_id=1501, user_id=u, verdict=v) for u, v in votes.items()))
    stats = await rec.community(guild_id=GUILD)
    assert (stats.thumbs_up, stats.thumbs_down, stats.labelled) == (4, 2, 1)
    assert (await rec.react(guild_id=GUILD, message_id=1501, user_id=14, verdict=-1)).label == res.prediction.category
    await asyncio.gather(*(rec.react(guild_id=GUILD, message_id=1501, user_id=u, verdict=0) for u in (10, 11, 12)))
    assert (await rec.community(guild_id=GUILD)).labelled == 0  # 1 up, 2 down
    same = [rec.react(guild_id=GUILD, message_id=1501, user_id=20, verdict=v) for v in (1, -1, 1)]  # one member, at once
    await asyncio.gather(*same)
    assert (await rec.community(guild_id=GUILD)).thumbs_up + (await rec.community(guild_id=GUILD)).thumbs_down == 4


async def test_the_counts_are_of_one_moment_while_a_vote_commits(rec, monkeypatch: pytest.MonkeyPatch) -> None:
    """/catalog stats reads its counts at one moment: a vote committed while they are read is in all of them or
    in none (it once read the labels before a moderator's 👍 and the votes after it: 1 👍, 0 labelled)."""
    await sure_answer(rec, message=1600, reply=1601)
    await rec.react(guild_id=GUILD, message_id=1601, user_id=MOD, verdict=-1, moderator=True)
    photos, armed = rec.learning.photos, [True]
    opened = photos.session

    def session():  # the first statement read, a moderator's 👍 commits before the reading goes on
        s = opened()
        execute = s.execute

        async def then_a_vote(*args, **kw):
            result = await execute(*args, **kw)
            if armed and armed.pop():
                await rec.react(guild_id=GUILD, message_id=1601, user_id=MOD, verdict=1, moderator=True)
            return result

        s.execute = then_a_vote
        return s

    monkeypatch.setattr(photos, "session", session)
    stats = await rec.community(guild_id=GUILD)
    assert not armed  # the 👍 did commit during the reading
    before, after = (0, 1, 0, 0), (1, 0, 1, 1)
    assert (stats.thumbs_up, stats.thumbs_down, stats.labelled, stats.by_moderators) in (before, after)
    now = await rec.community(guild_id=GUILD)
    assert (now.thumbs_up, now.thumbs_down, now.labelled, now.by_moderators) == after


async def test_a_moderator_label_wins_and_survives_reactions(rec) -> None:
    res = await sure_answer(rec, message=2000, reply=2001)
    categories = await rec.categories(guild_id=GUILD)
    other = next(c for c in categories if c != res.prediction.category)
    fb = await rec.label_photo(guild_id=GUILD, message_id=2001, category=other.upper(), actor="mod#1")
    assert (fb.photos, fb.label, fb.labelled) == (1, other, 1)  # the catalogue's spelling
    for user in (ALICE, BOB, CAROL):
        assert (await rec.react(guild_id=GUILD, message_id=2001, user_id=user, verdict=-1)).label == other
        assert (await rec.react(guild_id=GUILD, message_id=2001, user_id=user, verdict=1)).label == other
    assert (await rec.react(guild_id=GUILD, message_id=2001, user_id=MOD, verdict=1, moderator=True)).label == other
    stats = await rec.community(guild_id=GUILD)
    assert (stats.by_moderators, stats.labelled) == (1, 1)
    entries = await rec.store.audit_entries(GUILD)
    assert entries[0]["action"] == "label" and entries[0]["detail"]["category"] == other

    # a moderator's 👍 is a moderator's label of the predicted category; taking it back leaves it to the votes
    res2 = await sure_answer(rec, message=2100, reply=2101)
    await rec.react(guild_id=GUILD, message_id=2101, user_id=ALICE, verdict=-1)
    mod = await rec.react(guild_id=GUILD, message_id=2101, user_id=MOD, verdict=1, moderator=True)
    assert mod.label == res2.prediction.category
    assert (await rec.community(guild_id=GUILD)).by_moderators == 2
    back = await rec.react(guild_id=GUILD, message_id=2101, user_id=MOD, verdict=0, moderator=True)
    assert back.label is None  # 0 up, 1 down


async def test_a_message_with_several_photos_is_labelled_photo_by_photo(rec) -> None:
    hat, shoe = demo_photos("hat")[4], demo_photos("shoes")[4]
    first = await rec.similar(mirrored(hat), guild_id=GUILD, remember=True)
    third = await rec.similar(mirrored(shoe), guild_id=GUILD, remember=True)
    ids = [first.photo_id, None, third.photo_id]  # the second photo of the message was not remembered
    await rec.link_reply(ids, guild_id=GUILD, channel_id=7, photo_message_id=1700, reply_message_id=1701)
    assert (await rec.label_photo(guild_id=GUILD, message_id=1701, category="shoes", actor="mod", photo=3)).label == "shoes"
    with pytest.raises(BadOption, match="photo must be 1 to 3"):
        await rec.label_photo(guild_id=GUILD, message_id=1701, category="hat", actor="mod", photo=4)
    with pytest.raises(PhotoNotFound, match="photo 2"):
        await rec.label_photo(guild_id=GUILD, message_id=1701, category="hat", actor="mod", photo=2)
    await rec.label_photo(guild_id=GUILD, message_id=1700, category="hat", actor="mod")
    assert await rec.categories(guild_id=GUILD) == sorted(DEMO_CATEGORIES, key=str.lower)
    await rec.edit_item(f"hat/{hat.stem}", {"category": "Caps"}, guild_id=0, actor="mod")  # seen at once
    assert "Caps" in await rec.categories(guild_id=GUILD)
    async with rec.store.session() as s:
        rows = (
            await s.execute(text("SELECT position, label FROM member_photos WHERE photo_message_id = 1700 ORDER BY position"))
        ).all()
    assert [tuple(r) for r in rows] == [(1, "hat"), (3, "shoes")]
    fb = await rec.react(guild_id=GUILD, message_id=1701, user_id=ALICE, verdict=1)  # a vote on the reply: every photo
    assert (fb.photos, fb.label) == (2, "hat")


async def test_labelling_mistakes_are_sentences(rec) -> None:
    await sure_answer(rec, message=3000, reply=3001)
    with pytest.raises(BadOption, match=r"'shirtz' is not one of this catalogue's categories.*'shirt'"):
        await rec.label_photo(guild_id=GUILD, message_id=3001, category="shirtz", actor="mod")
    with pytest.raises(BadOption, match="1 photo"):
        await rec.label_photo(guild_id=GUILD, message_id=3001, category="shirt", actor="mod", photo=2)
    with pytest.raises(PhotoNotFound, match="I don't remember that photo"):
        await rec.label_photo(guild_id=GUILD, message_id=99, category="shirt", actor="mod")
    with pytest.raises(PhotoNotFound):  # another server cannot label this one's photos
        await rec.label_photo(guild_id=OTHER, message_id=3001, category="shirt", actor="mod")


async def test_a_label_changes_the_category_for_that_guild_only(rec) -> None:
    photo = demo_photos("dress")[2]
    before = await rec.similar(mirrored(photo), guild_id=GUILD)
    wrong = "hat" if before.prediction.category != "hat" else "shoes"
    await answer(rec, photo, message=4000, reply=4001)
    await rec.label_photo(guild_id=GUILD, message_id=4000, category=wrong, actor="mod")
    assert (await rec.similar(mirrored(photo), guild_id=GUILD)).prediction.category == wrong
    assert (await rec.classify(mirrored(photo), guild_id=GUILD)).prediction.category == wrong
    assert (await rec.similar(mirrored(photo), guild_id=OTHER)).prediction.category != wrong
    assert (await rec.classify(mirrored(photo), guild_id=OTHER)).prediction.category == before.prediction.category
    assert await rec.forget_photos(guild_id=GUILD, actor="mod") == 1
    assert (await rec.similar(mirrored(photo), guild_id=GUILD)).prediction.category == before.prediction.category


async def test_the_bounds_keep_the_newest_photos(demo_catalogue: str) -> None:
    rec = await open_rec(demo_catalogue, threshold=0.0, member_photos_kept=4, member_labels_kept=2)
    try:
        photos = demo_photos()[::10][:9]
        for i, p in enumerate(photos):
            await answer(rec, p, message=5000 + 2 * i, reply=5001 + 2 * i)
            await rec.react(guild_id=GUILD, message_id=5001 + 2 * i, user_id=ALICE, verdict=-1)
        assert (await rec.community(guild_id=GUILD)).remembered == 4
        async with rec.store.session() as s:  # the pruned photos' votes went with them
            assert (await s.execute(text("SELECT count(*) FROM member_votes"))).scalar_one() == 4
        with pytest.raises(PhotoNotFound):  # the oldest were pruned
            await rec.label_photo(guild_id=GUILD, message_id=5000, category="hat", actor="mod")
        for i in (5, 6, 7, 8):  # label the four kept: only the newest two labelled stay
            await rec.label_photo(guild_id=GUILD, message_id=5000 + 2 * i, category="hat", actor="mod")
        stats = await rec.community(guild_id=GUILD)
        assert (stats.remembered, stats.labelled) == (2, 2)
        with pytest.raises(PhotoNotFound):
            await rec.label_photo(guild_id=GUILD, message_id=5010, category="hat", actor="mod")
        assert (await rec.label_photo(guild_id=GUILD, message_id=5016, category="shoes", actor="mod")).labelled == 2
    finally:
        await rec.close()


async def test_photos_whose_reply_could_not_be_sent_are_not_kept(rec) -> None:
    """The reply failed after the search remembered the photo (permission revoked meanwhile): linking it to no
    reply deletes it, and only it; a photo already linked to its reply is never touched that way."""
    kept = await answer(rec, demo_photos()[5], message=8000, reply=8001)
    lost = await rec.similar(mirrored(demo_photos()[6]), guild_id=GUILD, remember=True)
    assert (await rec.community(guild_id=GUILD)).remembered == 2
    await rec.link_reply([None, lost.photo_id, kept.photo_id], guild_id=GUILD, channel_id=7, photo_message_id=8002,
                         reply_message_id=None)  # fmt: skip
    assert (await rec.community(guild_id=GUILD)).remembered == 1
    assert await rec.react(guild_id=GUILD, message_id=8001, user_id=ALICE, verdict=1) is not None  # still there


async def test_the_bounds_are_per_server_on_the_shared_catalogue(demo_catalogue: str) -> None:
    """Both servers answer from the shared default catalogue: the other server's many photos and labels do not
    push this server's out (before, the bounds counted the whole catalogue)."""
    rec = await open_rec(demo_catalogue, threshold=0.0, member_photos_kept=2, member_labels_kept=1)
    try:
        photos = demo_photos()[::10][:6]
        await answer(rec, photos[0], message=7000, reply=7001)
        await answer(rec, photos[1], message=7002, reply=7003)
        await rec.label_photo(guild_id=GUILD, message_id=7002, category="hat", actor="mod")
        for i, p in enumerate(photos[2:]):
            await answer(rec, p, guild=OTHER, message=7100 + 2 * i, reply=7101 + 2 * i)
            await rec.label_photo(guild_id=OTHER, message_id=7100 + 2 * i, category="shoes", actor="mod")
        ours, theirs = await rec.community(guild_id=GUILD), await rec.community(guild_id=OTHER)
        assert (ours.remembered, ours.labelled) == (2, 1)
        assert (theirs.remembered, theirs.labelled) == (1, 1)  # its own bounds still hold: the newest label only
        assert (await rec.label_photo(guild_id=GUILD, message_id=7000, category="shoes", actor="mod")).labelled == 1
    finally:
        await rec.close()


async def test_forgetting_deletes_the_guilds_photos_votes_and_their_trace_in_the_domain_state(rec) -> None:
    for i, p in enumerate(demo_photos()[::13][:5]):
        await answer(rec, p, message=6000 + 2 * i, reply=6001 + 2 * i)
    await answer(rec, demo_photos()[1], guild=OTHER, message=6100, reply=6101)
    await rec.react(guild_id=GUILD, message_id=6001, user_id=ALICE, verdict=1)
    assert (await rec.community(guild_id=GUILD)).adapted_on == 6
    assert await rec.forget_photos(guild_id=GUILD, actor="mod#1") == 5
    stats = await rec.community(guild_id=GUILD)
    assert (stats.remembered, stats.labelled, stats.thumbs_up, stats.adapted_on) == (0, 0, 0, 1)  # OTHER's photo stays
    assert (await rec.community(guild_id=OTHER)).remembered == 1
    assert await rec.react(guild_id=GUILD, message_id=6001, user_id=ALICE, verdict=1) is None
    async with rec.store.session() as s:
        assert (await s.execute(text("SELECT count(*) FROM member_votes"))).scalar_one() == 0
    assert (await rec.store.audit_entries(GUILD))[0]["action"] == "forget-photos"


async def test_the_head_learns_the_guilds_labels_and_survives_a_restart(db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "recommender")
    guild = 333  # a server with a catalogue of its own: its labels teach its head
    rec = await open_rec(db, retrain_delay_s=0.05, head_views=16)
    try:
        await rec.import_items(rec.records(DEMO), guild_id=guild, actor="mod")
        await rec.retrain(guild)
        assert (await rec.catalogues.heads.get(guild)).info.get("members") == 0
        res = await answer(rec, demo_photos("pants")[1], guild=guild, message=7000, reply=7001)
        await rec.label_photo(guild_id=guild, message_id=7001, category="pants", actor="mod")
        fitted = rec.catalogues.state(guild).retrain_timer
        assert fitted is not None
        await fitted  # the debounced fit after the label
        head = await rec.catalogues.heads.get(guild)
        assert head.info.get("members") == 1
        saved = await rec.store.load_classifier(guild, "tiny")
        assert saved.fingerprint != await rec.store.fingerprint(guild, "tiny")  # the labels are part of it
        adapted = (await rec.community(guild_id=guild)).adapted_on
        assert adapted == 1 and res.photo_id is not None
    finally:
        await rec.close()
    caplog.clear()
    rec = await open_rec(db, retrain_delay_s=60, head_views=16)
    try:
        head = await rec.catalogues.heads.get(guild)
        assert head.info.get("members") == 1
        assert not any("head (" in r.getMessage() for r in caplog.records)  # loaded, not fitted again
        assert rec.catalogues.state(guild).retrain_timer is None
        assert (await rec.community(guild_id=guild)).adapted_on == adapted
        await answer(rec, demo_photos("hat")[1], guild=guild, message=7100, reply=7101)
        await rec.label_photo(guild_id=guild, message_id=7101, category="hat", actor="mod")
        assert rec.catalogues.state(guild).retrain_timer is not None  # due in 60 s: the process stops first
    finally:
        await rec.close()
    rec = await open_rec(db, retrain_delay_s=0.05, head_views=16)
    try:  # a label given since the head was saved: the saved head answers, and a refit with it follows
        assert (await rec.catalogues.heads.get(guild)).info.get("members") == 1
        refit = rec.catalogues.state(guild).retrain_timer
        assert refit is not None
        await refit
        assert (await rec.catalogues.heads.get(guild)).info.get("members") == 2
    finally:
        await rec.close()


async def test_labels_given_in_the_shared_catalogue_follow_the_guild_to_its_own(demo_catalogue: str) -> None:
    guild = 444  # searches the shared catalogue first, then sets up its own (pants, shoes: no hats)
    rec = await open_rec(demo_catalogue, retrain_delay_s=0.05, head_views=16, threshold=0.1)
    try:
        for n, kind in enumerate(("pants", "hat", "shoes")):
            await answer(rec, demo_photos(kind)[1], guild=guild, message=8000 + 10 * n, reply=8001 + 10 * n)
        await rec.label_photo(guild_id=guild, message_id=8001, category="pants", actor="mod")
        await rec.label_photo(guild_id=guild, message_id=8011, category="hat", actor="mod")
        own = [r for r in rec.records(DEMO) if r.fields is not None and r.fields.category in ("pants", "shoes")]
        await rec.import_items(own, guild_id=guild, actor="mod")
        assert await rec.catalogue_for(guild) == guild
        members = await rec.catalogues.members(guild, guild, fresh=True)
        assert members is not None and list(members[1]) == ["pants"]  # "hat" is not one of its categories
        await rec.retrain(guild)
        assert (await rec.catalogues.heads.get(guild)).info.get("members") == 1

        await rec.label_photo(guild_id=guild, message_id=8021, category="shoes", actor="mod")  # a label given later
        refit = rec.catalogues.state(guild).retrain_timer
        assert refit is not None
        await refit
        assert (await rec.catalogues.heads.get(guild)).info.get("members") == 2
        assert (await rec.catalogues.members(OTHER, OTHER, fresh=True)) is None  # never another guild's

        await rec.forget_photos(guild_id=guild, actor="mod")
        assert await rec.catalogues.members(guild, guild) is None  # forgotten here too, without waiting
    finally:
        await rec.close()


async def test_a_corrupt_domain_state_is_rebuilt_with_a_warning(rec, caplog: pytest.LogCaptureFixture) -> None:
    for i, p in enumerate(demo_photos()[::17][:3]):
        await answer(rec, p, message=8000 + 2 * i, reply=8001 + 2 * i)
    async with rec.store.session() as s, s.begin():
        await s.execute(text("UPDATE domain_states SET state = :b"), {"b": b"not a domain state"})
    rec.catalogues.forget_lessons(0)
    with caplog.at_level(logging.WARNING, "recommender.community"):
        assert (await rec.community(guild_id=GUILD)).adapted_on == 3  # rebuilt from the remembered photos
        await answer(rec, demo_photos()[5], message=8100, reply=8101)  # and the next photo moves it on
    assert any("domain state unreadable" in r.getMessage() for r in caplog.records)
    rec.catalogues.forget_lessons(0)
    assert (await rec.community(guild_id=GUILD)).adapted_on == 4


async def test_adaptation_moves_queries_once_enough_photos_are_remembered(demo_catalogue: str) -> None:
    rec = await open_rec(demo_catalogue, adaptation=True)
    try:
        photo = mirrored(demo_photos("shirt")[0])
        vec, _ = await rec.embed(photo)
        assert np.allclose(await rec.catalogues.align(0, vec), vec)  # no photos yet: identity
        for p in demo_photos()[: MIN_COUNT + 2]:
            await rec.similar(mirrored(p), guild_id=GUILD, remember=True)
        moved = await rec.catalogues.align(0, vec)
        assert not np.allclose(moved, vec) and abs(float(np.linalg.norm(moved)) - 1) < 1e-4
        state = await rec.catalogues.domain(0)
        index = await rec.catalogues.index(0)
        expected = state.align(vec, index.mean())
        assert np.allclose(moved, expected, atol=1e-5)
        res = await rec.similar(photo, guild_id=GUILD, k=5)
        assert len(res.matches) == 5
    finally:
        await rec.close()


REMEMBER_FOREVER = """
import asyncio, sys
sys.path.insert(0, "tests")
from helpers import demo_photos, open_rec

async def main():
    rec = await open_rec(sys.argv[1])
    photos = [p.read_bytes() for p in demo_photos()[:40]]
    n = 0
    while True:
        res = await rec.similar(photos[n % len(photos)], guild_id=111, remember=True, predict=False)
        print(res.photo_id, flush=True)  # committed
        n += 1

asyncio.run(main())
"""


def killed_after(db: str, photos: int) -> list[int]:
    """Run REMEMBER_FOREVER on `db` and SIGKILL it once `photos` photos were remembered; their ids."""
    proc = subprocess.Popen([PYTHON, "-c", REMEMBER_FOREVER, db], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        committed = [int(proc.stdout.readline()) for _ in range(photos)]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return committed


@pytest.mark.timeout(120)
async def test_a_kill_9_keeps_each_remembered_photo_and_the_domain_state_together(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SQLite here; the same transactions on PostgreSQL are what test_crash.py kills there."""
    db = str(demo_db(tmp_path_factory, tmp_path / "catalogue.db"))
    committed = await asyncio.to_thread(killed_after, db, MIN_COUNT + 5)
    rec = await open_rec(db)
    try:
        async with rec.store.session() as s:
            ids = [i for (i,) in await s.execute(text("SELECT id FROM member_photos ORDER BY id"))]
        assert set(committed) <= set(ids) and len(ids) <= len(committed) + 1  # at most the one in flight too
        saved = await rec.catalogues.domain(0)
        assert saved.count == len(ids)  # each photo counted once, in the transaction that remembered it
        async with rec.store.session() as s, s.begin():
            await s.execute(text("DELETE FROM domain_states"))
        rec.catalogues.forget_lessons(0)
        rebuilt = await rec.catalogues.domain(0)  # from the remembered photos: the same state
        assert rebuilt.count == saved.count and np.allclose(rebuilt.mean, saved.mean, atol=1e-5)
        assert await rec.store.integrity_check() == "ok"
    finally:
        await rec.close()


async def test_migration_0004_goes_down_and_up_again(db: str) -> None:
    from alembic import command
    from alembic.config import Config

    from recommender.database import create_engine, locate, migrate, migrations_dir

    database = locate(db)
    engine = create_engine(database)

    def downgrade(connection, revision: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    try:
        await migrate(engine, database)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO member_photos (catalogue_id, guild_id, model, dim, vector, position, adapted, created_at) "
                    "VALUES (0, 1, 'tiny', 1, :v, 1, :a, :t)"
                ),
                {"v": b"\0\0\0\0", "a": True, "t": datetime(2026, 11, 27)},
            )
        async with engine.begin() as conn:
            await conn.run_sync(downgrade, "0003")
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "member_photos" not in names and "domain_states" not in names and "items" in names
        await migrate(engine, database)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM member_photos"))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_a_label_in_one_process_reaches_another_within_a_second(pg_cluster) -> None:
    """PostgreSQL, two processes: the labelling one publishes a "labels" change; the other's vote follows."""
    from helpers import import_demo

    db = pg_cluster.clone(pg_cluster.template("demo", import_demo))
    a, b = await open_rec(db, threshold=0.1), await open_rec(db, threshold=0.1)
    try:
        photo = demo_photos("dress")[2]
        before = (await b.similar(mirrored(photo), guild_id=GUILD)).prediction.category  # b caches "no labels"
        wrong = "hat" if before != "hat" else "shoes"
        await answer(a, photo, message=9000, reply=9001)
        await a.label_photo(guild_id=GUILD, message_id=9001, category=wrong, actor="mod")
        t0 = asyncio.get_running_loop().time()
        while (await b.similar(mirrored(photo), guild_id=GUILD)).prediction.category != wrong:
            assert asyncio.get_running_loop().time() - t0 < 1.0, "b did not hear of the label within a second"
            await asyncio.sleep(0.02)
    finally:
        await a.close()
        await b.close()
