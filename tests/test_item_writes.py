"""The set-wise write path (recommender/item_writes.py) gives what writing the items one by one gave:
an id twice in one batch, a picture that changes, fields only, audit entries; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest_asyncio

from recommender.images import load_image, make_thumbnail
from recommender.records import ItemFields, NewItem
from recommender.store import Store

from databases import sql
from helpers import demo_photos

PHOTOS = demo_photos()


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(96).astype(np.float32)
    return v / np.linalg.norm(v)


def photo_item(i: int, item_id: str, *, name: str | None = None, price: float | None = None) -> NewItem:
    """Demo photo i as an item: real thumbnail and content hash, a unit vector."""
    img, digest = load_image(PHOTOS[i])
    fields = ItemFields(item_id, name or f"Photo {i}", PHOTOS[i].parent.name, price)
    return NewItem(fields, make_thumbnail(img, 64), digest, unit(i))


@pytest_asyncio.fixture
async def store(db: str):
    s = await Store.open(db)
    yield s
    await s.close()


async def test_an_id_twice_in_one_batch_is_added_then_updated(store: Store) -> None:
    first, again = photo_item(0, "dup"), photo_item(1, "dup", name="second name", price=9.5)
    results = await store.upsert_items(0, [first, photo_item(2, "other"), again], "tiny", "importer", audit="add")
    assert [status for _, status in results] == ["added", "added", "updated"]
    (a, _), (other, _), (b, _) = results
    assert a.pk == b.pk != other.pk
    assert (a.name, a.content_hash) == ("Photo 0", first.content_hash)  # each occurrence: the item as it stood after it
    assert (b.name, b.price, b.content_hash) == ("second name", 9.5, again.content_hash)
    rows = await sql(store, "SELECT item_id, name, content_hash FROM items ORDER BY item_id")
    assert [tuple(r) for r in rows] == [
        ("dup", "second name", again.content_hash),
        ("other", "Photo 2", results[1][0].content_hash),
    ]
    vectors = await store.load_vectors(0, "tiny")
    assert len(vectors.pks) == 2
    stored = dict(zip(vectors.pks.tolist(), vectors.vectors))
    assert abs(float(stored[b.pk] @ unit(1)) - 1) < 1e-3  # the second picture's vector
    audit = await sql(store, "SELECT item_id FROM audit_log WHERE action = 'add' ORDER BY id")
    assert [r[0] for r in audit] == ["dup", "other", "dup"]


async def test_a_new_picture_drops_other_models_vectors_and_fields_only_keep_them(store: Store) -> None:
    await store.upsert_items(0, [photo_item(0, "a"), photo_item(1, "b")], "tiny", "x")
    await store.upsert_items(0, [photo_item(0, "a"), photo_item(1, "b")], "other", "x")
    [(a, status)] = await store.upsert_items(0, [photo_item(5, "a")], "tiny", "x")  # a new picture for "a"
    assert status == "updated"
    counts = await sql(store, "SELECT model, COUNT(*) FROM embeddings GROUP BY model ORDER BY model")
    assert [tuple(r) for r in counts] == [("other", 1), ("tiny", 2)]  # "a"'s vector of its old picture is gone
    b = photo_item(1, "b")
    same = NewItem(b.fields, None, b.content_hash, None)
    renamed = NewItem(dataclasses.replace(b.fields, name="B"), None, b.content_hash, None)
    assert [s for _, s in await store.upsert_items(0, [same], "tiny", "x")] == ["unchanged"]
    [(item, status)] = await store.upsert_items(0, [renamed], "tiny", "x")
    assert status == "updated" and item.name == "B" and item.updated_at >= a.updated_at
    counts = await sql(store, "SELECT model, COUNT(*) FROM embeddings GROUP BY model ORDER BY model")
    assert [tuple(r) for r in counts] == [("other", 1), ("tiny", 2)]  # a field change keeps every vector


async def test_a_field_change_never_writes_back_a_hash_another_writer_replaced(store: Store, db: str, monkeypatch) -> None:
    """A field-only write (a feed's unchanged picture) read the row, then another writer committed a new picture
    (hash, vector, thumbnail), then the field-only write set the old hash back: the stored hash no longer matched
    the vector, and that picture was never embedded again (its hash was 'known')."""
    from recommender import item_writes

    await store.upsert_items(0, [photo_item(1, "b")], "tiny", "x")
    old = photo_item(1, "b")
    renamed = NewItem(dataclasses.replace(old.fields, name="B"), None, old.content_hash, None)
    new_picture = photo_item(5, "b")
    other = await Store.open(db)
    real = item_writes._current
    raced = []

    async def current_then_another_writer(*args: object, **kw: object) -> object:
        got = await real(*args, **kw)
        if not raced:
            raced.append(True)
            await other.upsert_items(0, [new_picture], "tiny", "y")  # commits between the read and the write
        return got

    monkeypatch.setattr(item_writes, "_current", current_then_another_writer)
    try:
        await store.upsert_items(0, [renamed], "tiny", "x")
    finally:
        await other.close()
    [row] = await sql(store, "SELECT name, content_hash FROM items WHERE item_id = 'b'")
    assert tuple(row) == ("B", new_picture.content_hash)  # the rename, and the picture that goes with the vector
    vectors = await store.load_vectors(0, "tiny")
    assert abs(float(vectors.vectors[0] @ unit(5)) - 1) < 1e-3
