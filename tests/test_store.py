"""The catalogue store: items, embeddings, guild settings and the audit log, on a real SQLite file
and on a real PostgreSQL database (every test runs on both).

Items carry real demo photos (thumbnail and content hash made by recommender.images) and
unit vectors; the store does not care where vectors come from.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy.exc import IntegrityError

from recommender.errors import DuplicateItem, ItemNotFound
from recommender.feedstate import FeedState
from recommender.images import load_image, make_thumbnail
from recommender.records import ItemFields, NewItem
from recommender.rows import decode_vectors, encode_vector
from recommender.store import Store
from recommender.versions import CatalogueVersions

from databases import sql
from helpers import LoopLag, demo_photos, settled_heap

DIM = 96
PHOTOS = demo_photos()


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def photo_item(
    i: int,
    item_id: str | None = None,
    *,
    name: str | None = None,
    category: str | None = None,
    price: float | None = None,
    vector: bool = True,
    **extra,
) -> NewItem:
    """An item made from demo photo i: real thumbnail, real content hash, a unit vector."""
    path = PHOTOS[i]
    img, digest = load_image(path)
    fields = ItemFields(
        item_id or f"item-{i}",
        name or f"Photo {i}",
        category or path.parent.name,
        price,
        **extra,
    )
    return NewItem(fields, make_thumbnail(img, 64) if vector else None, digest, unit(i) if vector else None)


@pytest_asyncio.fixture
async def store(db: str):
    s = await Store.open(db)
    yield s
    await s.close()


async def count(store: Store, statement: str, **params: object) -> int:
    return int((await sql(store, statement, params))[0][0])


async def test_upsert_is_idempotent_and_reports_added_updated_unchanged(store: Store) -> None:
    first = await store.upsert_items(0, [photo_item(i) for i in range(3)], "tiny", "tester")
    assert [s for _, s in first] == ["added"] * 3
    assert [it.item_id for it, _ in first] == ["item-0", "item-1", "item-2"]
    assert all(it.added_by == "tester" for it, _ in first)

    # Same picture, same fields, no new vector: what a re-import of an unchanged row sends.
    again = await store.upsert_items(
        0, [NewItem(photo_item(i).fields, None, photo_item(i).content_hash, None) for i in range(3)], "tiny", "tester"
    )
    assert [s for _, s in again] == ["unchanged"] * 3
    assert [it.updated_at for it, _ in again] == [it.updated_at for it, _ in first]

    renamed = photo_item(1, name="A new name")
    changed = await store.upsert_items(
        0, [NewItem(renamed.fields, None, renamed.content_hash, None), photo_item(2)], "tiny", "tester"
    )
    assert [s for _, s in changed] == ["updated", "updated"]  # a new name; a new vector
    assert (await store.get_item(0, "item-1")).name == "A new name"
    assert (await store.get_item(0, "item-1")).updated_at > first[1][0].updated_at
    assert [it.pk for it, _ in changed] == [first[1][0].pk, first[2][0].pk]  # rows updated in place

    items, total = await store.list_items(0, limit=50)
    assert total == 3 and len(items) == 3
    assert await store.model_counts(0) == {"tiny": 3}


async def test_add_by_hand_refuses_an_existing_id_and_writes_nothing(store: Store) -> None:
    await store.upsert_items(0, [photo_item(0, "sku-1")], "tiny", "mod")
    with pytest.raises(DuplicateItem, match="sku-1"):
        await store.upsert_items(0, [photo_item(5, "sku-2"), photo_item(1, "sku-1")], "tiny", "mod", replace=False)
    _, total = await store.list_items(0)
    assert total == 1  # sku-2, in the same batch, was rolled back too
    with pytest.raises(ItemNotFound):
        await store.get_item(0, "sku-2")


async def test_remove_deletes_the_embedding_and_writes_an_audit_row(store: Store) -> None:
    [(kept, _), (gone, _)] = await store.upsert_items(0, [photo_item(0, "a"), photo_item(1, "b")], "tiny", "mod")
    removed = await store.remove_item(0, "b", "mod:alice")
    assert removed.pk == gone.pk and removed.name == "Photo 1"
    assert await count(store, "SELECT count(*) FROM embeddings WHERE item_pk=:pk", pk=gone.pk) == 0
    assert await count(store, "SELECT count(*) FROM embeddings WHERE item_pk=:pk", pk=kept.pk) == 1
    [entry] = await store.audit_entries(0)
    assert entry["action"] == "remove" and entry["item_id"] == "b" and entry["actor"] == "mod:alice"
    assert entry["detail"] == {"name": "Photo 1", "category": PHOTOS[1].parent.name}

    with pytest.raises(ItemNotFound, match="'b'"):
        await store.remove_item(0, "b", "mod:alice")
    assert len(await store.audit_entries(0)) == 1  # a failed removal is not audited


async def test_remove_and_its_audit_row_commit_together(store: Store) -> None:
    """If the audit row cannot be written, the item and its embedding must stay."""
    [(item, _)] = await store.upsert_items(0, [photo_item(0, "a")], "tiny", "mod")
    if store.path is not None:
        await sql(store, "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END")
    else:
        await sql(
            store,
            "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$ LANGUAGE plpgsql",
        )
        await sql(store, "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_down()")
    with pytest.raises(Exception, match="audit down"):
        await store.remove_item(0, "a", "mod")
    assert (await store.get_item(0, "a")).pk == item.pk
    assert await count(store, "SELECT count(*) FROM embeddings WHERE item_pk=:pk", pk=item.pk) == 1


async def test_deleting_an_item_cascades_to_its_embeddings(store: Store) -> None:
    [(item, _)] = await store.upsert_items(0, [photo_item(0, "a")], "tiny", "mod")
    await sql(
        store,
        "INSERT INTO embeddings (item_pk, model, dim, vector) VALUES (:pk, 'other', 4, :v)",
        {"pk": item.pk, "v": encode_vector(np.ones(4))},
    )
    await sql(store, "DELETE FROM items WHERE pk=:pk", {"pk": item.pk})
    assert await count(store, "SELECT count(*) FROM embeddings") == 0


async def test_the_same_item_id_may_live_in_two_guilds(store: Store) -> None:
    a = await store.upsert_items(0, [photo_item(0, "sku-1", name="default one")], "tiny", "x")
    b = await store.upsert_items(42, [photo_item(1, "sku-1", name="guild one")], "tiny", "x")
    assert a[0][1] == b[0][1] == "added" and a[0][0].pk != b[0][0].pk
    assert (await store.get_item(0, "sku-1")).name == "default one"
    assert (await store.get_item(42, "sku-1")).name == "guild one"
    assert sorted(await store.catalogue_ids()) == [0, 42]

    await store.remove_item(42, "sku-1", "x")
    assert (await store.get_item(0, "sku-1")).name == "default one"
    assert not await store.has_items(42) and await store.has_items(0)

    with pytest.raises(IntegrityError, match="(?i)unique|uq_items_guild_item"):
        await sql(
            store,
            "INSERT INTO items (guild_id, item_id, name, category, thumbnail, content_hash, added_by, added_at, updated_at) "
            "VALUES (0, 'sku-1', 'n', 'c', :t, 'h', 'x', :at, :at)",
            {"t": b"\x00", "at": datetime(2026, 1, 1)},
        )


@pytest.mark.parametrize("dim", [96, 1280])
async def test_vectors_round_trip_through_float16(store: Store, dim: int) -> None:
    news = []
    for i in range(12):
        n = photo_item(i, price=None if i % 3 == 0 else 10.0 + i)
        news.append(NewItem(n.fields, n.thumbnail, n.content_hash, unit(100 + i, dim)))
    written = await store.upsert_items(7, news, "m", "x")
    rows = await store.load_vectors(7, "m")
    assert rows.vectors.dtype == np.float32 and rows.vectors.shape == (12, dim)
    assert list(rows.pks) == sorted(it.pk for it, _ in written)
    expected = np.stack([n.vector for n in news])
    assert np.abs(rows.vectors - expected).max() < 1e-3
    # cosine scores, what ranking uses, agree to ~1e-3 as well
    assert np.abs(rows.vectors @ expected[0] - expected @ expected[0]).max() < 1e-3
    assert rows.categories == [n.fields.category for n in news]
    assert rows.hashes == [n.content_hash for n in news]
    assert np.isnan(rows.prices[0]) and rows.prices[1] == 11.0

    exported = [pair for batch in [b async for b in store.iter_export(7, "m", batch=5)] for pair in batch]
    assert [it.item_id for it, _ in exported] == [n.fields.item_id for n in news]
    assert np.abs(np.stack([v for _, v in exported]) - expected).max() < 1e-3
    assert (await store.load_vectors(7, "other-model")).pks.size == 0


def test_vector_encoding_is_little_endian_float16() -> None:
    v = unit(3, 8)
    blob = encode_vector(v)
    assert len(blob) == 16 and blob == v.astype("<f2").tobytes()
    assert np.array_equal(decode_vectors([blob, blob], 8)[1], v.astype(np.float16).astype(np.float32))
    assert decode_vectors([], 8).shape == (0, 8)


async def test_fingerprint_changes_on_add_remove_and_edit(store: Store) -> None:
    empty = await store.fingerprint(0, "tiny")
    await store.upsert_items(0, [photo_item(i) for i in range(4)], "tiny", "x")
    after_add = await store.fingerprint(0, "tiny")
    assert after_add != empty
    assert await store.fingerprint(0, "tiny") == after_add  # stable while nothing changes
    await store.upsert_items(0, [NewItem(photo_item(1).fields, None, photo_item(1).content_hash, None)], "tiny", "x")
    assert await store.fingerprint(0, "tiny") == after_add  # an unchanged re-import is no change

    await store.update_item(0, "item-2", {"category": "something else"}, actor="test")
    after_edit = await store.fingerprint(0, "tiny")
    assert after_edit != after_add

    await store.remove_item(0, "item-3", "x")  # the newest row: its pk may be reused by the next add
    after_remove = await store.fingerprint(0, "tiny")
    assert after_remove not in (after_edit, after_add)
    await store.upsert_items(0, [photo_item(9, "item-9")], "tiny", "x")
    after_readd = await store.fingerprint(0, "tiny")
    assert after_readd not in (after_remove, after_edit, after_add)

    # other catalogues and other models do not move it
    await store.upsert_items(5, [photo_item(0)], "tiny", "x")
    await store.upsert_items(0, [photo_item(0, "item-x")], "other-model", "x")
    assert await store.fingerprint(0, "tiny") == after_readd


async def test_update_item_changes_only_editable_fields(store: Store) -> None:
    [(item, _)] = await store.upsert_items(0, [photo_item(0, "a", price=5.0)], "tiny", "x")
    edited = await store.update_item(0, "a", {"name": "Renamed", "price": 7.5, "content_hash": "f" * 64, "pk": 999}, actor="test")
    assert (edited.name, edited.price, edited.pk, edited.content_hash) == ("Renamed", 7.5, item.pk, item.content_hash)
    assert (await store.get_item(0, "a")).price == 7.5
    with pytest.raises(ItemNotFound):
        await store.update_item(0, "nope", {"name": "x"}, actor="test")
    with pytest.raises(ItemNotFound):
        await store.update_item(3, "a", {"name": "x"}, actor="test")  # another guild's catalogue


async def test_listing_counting_and_model_in_use(store: Store) -> None:
    await store.upsert_items(0, [photo_item(i) for i in range(0, 36, 3)], "tiny", "x")  # 12 photos, 3 categories
    counts = await store.category_counts(0)
    assert sum(counts.values()) == 12 and set(counts) == {PHOTOS[i].parent.name for i in range(0, 36, 3)}
    cat = next(iter(counts))
    page1, total = await store.list_items(0, category=cat.upper(), limit=2)
    page2, _ = await store.list_items(0, category=cat, offset=2, limit=50)
    assert total == counts[cat] and {it.category for it in page1 + page2} == {cat}
    assert len(page1) == min(2, total) and len(page1 + page2) == total
    assert not {it.item_id for it in page1} & {it.item_id for it in page2}
    assert await store.model_in_use("vgg16") == "tiny"
    by_pk = await store.items_by_pk([page1[0].pk])
    assert by_pk[page1[0].pk].item_id == page1[0].item_id
    thumbs = await store.thumbnails([page1[0].pk])
    assert thumbs[page1[0].pk][:3] == b"\xff\xd8\xff"  # a JPEG thumbnail


async def test_an_empty_database_uses_the_default_model(store: Store) -> None:
    assert await store.model_in_use("vgg16") == "vgg16"
    assert not await store.has_items(0)
    rows = await store.load_vectors(0, "tiny")
    assert rows.pks.size == 0


async def test_attributes_round_trip_as_json(store: Store) -> None:
    await store.upsert_items(
        0,
        [
            photo_item(
                0, "a", attributes={"colour": "Navy Blue", "year": "2011"}, url="https://shop.example/a", description="A shirt"
            )
        ],
        "tiny",
        "x",
    )
    item = await store.get_item(0, "a")
    assert item.attributes == {"colour": "Navy Blue", "year": "2011"}
    assert (item.url, item.description) == ("https://shop.example/a", "A shirt")


async def test_guild_settings_watched_channels_and_audit(store: Store) -> None:
    s = await store.guild_settings(1)
    assert (s.k, s.moderator_role_id, s.watched) == (None, None, set())
    await store.update_guild_settings(1, "mod:a", k=8)
    await store.update_guild_settings(1, "mod:a", moderator_role_id=555)
    s = await store.guild_settings(1)
    assert (s.k, s.moderator_role_id) == (8, 555)
    assert (await store.guild_settings(2)).k is None

    assert await store.set_watched(1, 100, True, actor="mod:b") is True
    assert await store.set_watched(1, 100, True, actor="mod:b") is False  # already watched
    assert await store.set_watched(1, 200, True, actor="mod:b") is True
    assert await store.set_watched(1, 300, False, actor="mod:b") is False  # never watched
    assert (await store.guild_settings(1)).watched == {100, 200}
    assert await store.set_watched(1, 100, False, actor="mod:b") is True
    assert (await store.guild_settings(1)).watched == {200}
    assert (await store.guild_settings(2)).watched == set()

    entries = await store.audit_entries(1)  # every change, newest first; nothing for what changed nothing
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("mod:b", "unwatch", {"channel": 100}),
        ("mod:b", "watch", {"channel": 200}),
        ("mod:b", "watch", {"channel": 100}),
        ("mod:a", "config", {"moderator_role_id": 555}),
        ("mod:a", "config", {"k": 8}),
    ]
    await store.audit(2, "mod:c", "watch", None)
    assert [e["action"] for e in await store.audit_entries(2)] == ["watch"]
    assert len(await store.audit_entries(1, limit=1)) == 1


REFUSE_AUDIT = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log refused'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit log refused'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


async def test_a_change_whose_audit_entry_cannot_be_written_is_not_made(store: Store) -> None:
    """A change and its audit entry commit together (a crash between two commits would lose the entry)."""
    feeds = FeedState(store.session)
    await store.upsert_items(7, [photo_item(0, "a", name="Linen Shirt")], "tiny", "x")
    await feeds.set_feed(7, "https://shop.example/feed.xml", 3600, {}, None, "mod:a")
    for statement in REFUSE_AUDIT[store.database.kind]:
        await sql(store, statement)

    changes = [
        store.update_guild_settings(7, "mod:a", k=8),
        store.set_watched(7, 100, True, actor="mod:a"),
        store.update_item(7, "a", {"name": "Silk Shirt"}, actor="mod:a"),
        feeds.set_feed(7, "https://shop.example/other.xml", 60, {}, None, "mod:a"),
        feeds.drop_feed(7, "mod:a"),
    ]
    for change in changes:
        with pytest.raises(Exception, match="audit log refused"):
            await change
    settings = await store.guild_settings(7)
    assert (settings.k, settings.watched) == (None, set())
    assert (await store.get_item(7, "a")).name == "Linen Shirt"
    feed = await feeds.feed(7)
    assert feed is not None and (feed.url, feed.every_s) == ("https://shop.example/feed.xml", 3600)
    assert [e["action"] for e in await store.audit_entries(7)] == ["feed"]


async def test_classifier_blob_is_saved_and_replaced(store: Store) -> None:
    await store.save_classifier(0, "tiny", "fp1", "knn", b"one")
    await store.save_classifier(0, "tiny", "fp2", "linear", b"two")
    row = await store.load_classifier(0, "tiny")
    assert (row.fingerprint, row.method, row.blob) == ("fp2", "linear", b"two")
    assert await store.load_classifier(0, "vgg16") is None
    assert await store.load_classifier(1, "tiny") is None


async def test_wal_journal_and_integrity(store: Store) -> None:
    await store.upsert_items(0, [photo_item(0)], "tiny", "x")
    assert await store.integrity_check() == "ok"
    if store.path is not None:  # SQLite: write-ahead log, so readers never block the writer
        assert (await sql(store, "PRAGMA journal_mode"))[0][0] == "wal"
    await sql(store, "UPDATE embeddings SET dim = 3")
    assert "not their dimension" in await store.integrity_check()


async def test_concurrent_writers_do_not_lose_rows(store: Store) -> None:
    """Several batches written at once (the bot's moderators plus an import) all land."""

    async def batch(b: int) -> None:
        await store.upsert_items(0, [photo_item(i, f"b{b}-{i}") for i in range(b * 5, b * 5 + 5)], "tiny", "x")

    await asyncio.gather(*(batch(b) for b in range(6)))
    _, total = await store.list_items(0)
    assert total == 30
    assert (await store.model_counts(0))["tiny"] == 30


async def test_two_processes_saving_a_first_classifier_at_once_both_succeed(db: str) -> None:
    """Every shard serves the default catalogue: two may save its first head together. Each save is one
    INSERT ... ON CONFLICT statement; before, the second process's INSERT hit the key (IntegrityError)."""
    one, two = await Store.open(db), await Store.open(db)  # two connection pools: two processes, in effect
    try:
        for guild in range(1, 13):
            await asyncio.gather(
                one.save_classifier(guild, "tiny", "fp-one", "knn", b"one"),
                two.save_classifier(guild, "tiny", "fp-two", "knn", b"two"),
            )
            row = await one.load_classifier(guild, "tiny")
            assert row is not None and (row.fingerprint, row.blob) in {("fp-one", b"one"), ("fp-two", b"two")}
    finally:
        await one.close()
        await two.close()


async def test_two_first_settings_changes_of_a_guild_at_once_both_land(db: str) -> None:
    """Two admins (or two shards) changing a guild's settings for the first time at once: each read found no row,
    so the second INSERT hit the key and the admin got "something went wrong". Watching one channel twice
    at once, or setting its feed: the same."""
    one, two = await Store.open(db), await Store.open(db)  # two connection pools: two processes, in effect
    try:
        for guild in range(1, 13):
            await asyncio.gather(
                one.update_guild_settings(guild, "a", k=3), two.update_guild_settings(guild, "b", moderator_role_id=77)
            )
            settings = await one.guild_settings(guild)
            assert (settings.k, settings.moderator_role_id) == (3, 77)  # neither change lost
            changed = await asyncio.gather(one.set_watched(guild, 5, True, actor="a"), two.set_watched(guild, 5, True, actor="b"))
            assert sorted(changed) == [False, True] and (await two.guild_settings(guild)).watched == {5}
            changed = await asyncio.gather(
                one.set_watched(guild, 5, False, actor="a"), two.set_watched(guild, 5, False, actor="b")
            )
            assert sorted(changed) == [False, True] and (await two.guild_settings(guild)).watched == set()
            feeds = FeedState(one.session), FeedState(two.session)
            await asyncio.gather(
                *(f.set_feed(guild, f"https://shop.example/{n}.xml", 3600, {}, None, "a") for n, f in enumerate(feeds))
            )
            feed = await feeds[0].feed(guild)
            assert feed is not None and feed.url in {"https://shop.example/0.xml", "https://shop.example/1.xml"}
        audit = await one.audit_entries(guild)
        assert [e["action"] for e in audit].count("config") == 2  # each change audited once
    finally:
        await one.close()
        await two.close()


async def test_a_picture_found_unchanged_then_replaced_keeps_the_replacements_hash(store: Store) -> None:
    """Import B found item-0's picture unchanged (P0); before B wrote, import C replaced it with P1 (vector
    and all). B's write must not pair P0's hash with P1's vector: a later import of P0 would be taken for
    unchanged and never embedded again."""
    await store.upsert_items(0, [photo_item(0)], "tiny", "a")
    first_hash = photo_item(0).content_hash
    replaced = photo_item(1, "item-0")  # C: another picture for the same item, with its vector
    await store.upsert_items(0, [replaced], "tiny", "c")
    stale_claim = NewItem(photo_item(0).fields, None, first_hash, None)  # B: "same picture, fields only"
    await store.upsert_items(0, [stale_claim], "tiny", "b")
    assert await store.known_hashes(0, ["item-0"], "tiny") == {"item-0": replaced.content_hash}
    rows = await sql(store, "SELECT e.vector FROM embeddings e JOIN items i ON i.pk = e.item_pk WHERE i.item_id = 'item-0'")
    assert np.allclose(decode_vectors([rows[0][0]], DIM)[0], replaced.vector, atol=1e-3)


def test_own_versions_tell_this_stores_writes_from_another_processes() -> None:
    """SQLite's catalogue versions (versions.py): the index is kept while every version since the last check is
    this store's own; a gap, an unknown start or a database restored to an older version means reload."""
    v = CatalogueVersions()
    v.own[7] = {3, 4, 6}
    assert v.only_ours(7, 2, 2) and v.only_ours(7, 2, 4)  # nothing new; then versions 3 and 4, both ours
    assert v.own[7] == {6}  # checked ones are forgotten
    assert not v.only_ours(7, 4, 6)  # 5 was another process's
    assert not v.only_ours(7, None, 6) and not v.only_ours(8, 0, 1)
    assert not v.only_ours(7, 6, 2) and v.own[7] == set()  # restored from a backup: its numbers are not ours


async def test_a_guilds_settings_are_read_at_one_moment(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A moderator sets k, then watches a channel, while the bot reads the settings: it sees both changes or
    neither (the settings row and the channels were two reads: the old k beside the new channel)."""
    await store.update_guild_settings(1, "mod:a", k=8)
    opened, armed = store.session, [True]

    def session():  # the first read done, the moderator's two changes commit before the reading goes on
        s = opened()

        def then_the_changes(read):
            async def call(*args, **kw):
                result = await read(*args, **kw)
                if armed and armed.pop():
                    await store.update_guild_settings(1, "mod:a", k=7)
                    await store.set_watched(1, 5, True, actor="mod:a")
                return result

            return call

        s.get, s.execute = then_the_changes(s.get), then_the_changes(s.execute)
        return s

    monkeypatch.setattr(store, "session", session)
    seen = await store.guild_settings(1)
    assert not armed and (seen.k, seen.watched) in ((8, set()), (7, {5}))
    now = await store.guild_settings(1)
    assert (now.k, now.watched) == (7, {5})


async def test_a_page_of_items_and_its_total_are_of_one_moment(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """/catalog list: an item committed while a page is read is in the page and its total, or in neither (the
    total was read first, then the page: 4 items on a page of "3 items")."""
    await store.upsert_items(0, [photo_item(i) for i in range(3)], "tiny", "x")
    opened, armed = store.session, [True]

    def session():  # the first statement read, another writer's item commits before the reading goes on
        s = opened()
        execute = s.execute

        async def then_a_write(*args, **kw):
            result = await execute(*args, **kw)
            if armed and armed.pop():
                await store.upsert_items(0, [photo_item(3)], "tiny", "other")
            return result

        s.execute = then_a_write
        return s

    monkeypatch.setattr(store, "session", session)
    items, total = await store.list_items(0, limit=10)
    assert not armed and len(items) == total == 3
    assert (await store.list_items(0, offset=10))[1] == 4  # past the last page: the total alone


async def test_a_big_feeds_bookkeeping_keeps_the_loop_free(store: Store) -> None:
    """A sync of a feed of 50,000 products reads and saves its pictures' validators and reads the catalogue's ids.
    Each was one step on the event loop (keys hashed, every row's parameters built, every id's row made): seconds
    at the feed limit of 250,000 rows, with the bot's heartbeats waiting."""
    from recommender.webfetch import Validator

    n = 50_000
    feeds = FeedState(store.session)
    learned = {f"https://shop.example/p/{i}.jpg": Validator(f'"v{i}"', None, f"{i:064x}") for i in range(n)}
    at = datetime(2026, 1, 1)
    await sql(
        store,
        "INSERT INTO items (guild_id, item_id, name, category, thumbnail, content_hash, added_by, added_at, updated_at) "
        "VALUES (5, :id, 'x', 'c', :t, :h, 't', :at, :at)",
        [{"id": f"p{i}", "t": b"\0", "h": f"{i:064x}", "at": at} for i in range(n)],
    )
    stalls: dict[str, list[float]] = {"save": [], "read": [], "ids": []}
    with settled_heap():  # as the bot's process is once started
        for _ in range(2):  # work on the loop stalls it every time; the other test worker may delay it once
            async with LoopLag() as saving:
                await feeds.save_validators(learned)
            async with LoopLag() as reading:
                known = await feeds.validators(learned)
            async with LoopLag() as listing:
                ids = await feeds.item_ids(5)
            for step, lag in (("save", saving), ("read", reading), ("ids", listing)):
                stalls[step].append(lag.worst)
    assert len(known) == n and known["https://shop.example/p/7.jpg"] == learned["https://shop.example/p/7.jpg"]
    assert len(ids) == n and "p49999" in ids
    assert max(min(worst) for worst in stalls.values()) < 0.1, f"the loop stalled: {stalls}"
