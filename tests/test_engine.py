"""The async facade on the real demo catalogue (imported once with the seeded `tiny` backbone through
`lookalike import`), plus one slow run with the pretrained efficientnet-lite0."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import shutil
import time
import types
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageOps

from recommender.changes import Change
from recommender.errors import BadImage, BadOption, CatalogEmpty, DuplicateItem, ImageTooLarge, ItemNotFound
from recommender.head import head_from_bytes
from recommender.importer import records_from_folder
from recommender.records import ItemFields

from databases import sql
from helpers import (
    DEMO_CATEGORIES,
    LoopLag,
    as_png,
    demo_db,
    demo_item_id,
    demo_photos,
    head_fits,
    largest_women_photos,
    needs_women,
    open_rec,
    settings,
    settled_heap,
)


@pytest_asyncio.fixture
async def rec(demo_catalogue: str):
    """The demo catalogue, on SQLite and on PostgreSQL."""
    r = await open_rec(demo_catalogue, retrain_delay_s=0.2)
    yield r
    await r.close()


def mirrored(path: Path) -> bytes:
    """A new picture made from a demo photo (mirrored): not in the catalogue."""
    with Image.open(path) as im:
        out = io.BytesIO()
        ImageOps.mirror(im.convert("RGB")).save(out, "JPEG", quality=92)
    return out.getvalue()


async def brute_force(rec, query: np.ndarray, k: int, exclude_pk: int | None = None) -> list[str]:
    rows = await rec.store.load_vectors(0, "tiny")
    scores = rows.vectors @ query
    if exclude_pk is not None:
        scores[list(rows.pks).index(exclude_pk)] = -np.inf
    top = [int(rows.pks[i]) for i in np.argsort(-scores)[:k]]
    items = await rec.store.items_by_pk(top)
    return [items[p].item_id for p in top]


async def test_similar_by_image_finds_the_same_picture_in_another_file(rec) -> None:
    photo = demo_photos("shoes")[3]
    res = await rec.similar(as_png(photo), k=5)
    assert res.catalogue_id == 0 and len(res.matches) == 5
    assert res.matches[0].item.item_id == demo_item_id(photo)
    assert res.matches[0].score == pytest.approx(1.0, abs=2e-3)
    assert all(a.score >= b.score for a, b in zip(res.matches, res.matches[1:]))
    assert len({m.item.item_id for m in res.matches}) == 5
    assert res.prediction is not None and res.prediction.method in ("linear", "knn")
    assert {c for c, _ in res.prediction.ranked} <= set(DEMO_CATEGORIES)


async def test_an_exact_copy_of_a_catalogue_file_does_not_return_itself(rec) -> None:
    photo = demo_photos("dress")[0]
    res = await rec.similar(photo.read_bytes(), k=5, predict=False)
    assert demo_item_id(photo) not in [m.item.item_id for m in res.matches]
    assert len(res.matches) == 5 and res.prediction is None


async def test_similar_by_item_id_excludes_the_item_and_ranks_by_cosine(rec) -> None:
    item_id = demo_item_id(demo_photos("hat")[2])
    item = await rec.get_item(item_id, guild_id=0)
    res = await rec.similar(item_id=item_id, k=8, predict=False)
    got = [m.item.item_id for m in res.matches]
    assert item_id not in got and len(got) == 8
    rows = await rec.store.load_vectors(0, "tiny")
    query = rows.vectors[list(rows.pks).index(item.pk)]
    assert got == await brute_force(rec, query, 8, exclude_pk=item.pk)
    with pytest.raises(ItemNotFound, match="no-such-item"):
        await rec.similar(item_id="no-such-item")


async def test_category_and_price_filters(rec) -> None:
    query = as_png(demo_photos("shirt")[0])
    for category in ("shoes", "SHOES", "t-shirt"):
        res = await rec.similar(query, k=10, category=category, predict=False)
        assert len(res.matches) == 10  # 12 in each category: k results still come back
        assert {m.item.category for m in res.matches} == {category.lower()}
    assert (await rec.similar(query, k=5, category="socks", predict=False)).matches == []

    priced = demo_photos("pants")[:6] + demo_photos("skirt")[:6]
    for i, p in enumerate(priced):  # prices 10, 20, ..., 120
        await rec.edit_item(demo_item_id(p), {"price": 10.0 * (i + 1)}, guild_id=0, actor="mod")
    res = await rec.similar(query, k=25, max_price=45, predict=False)
    assert sorted(m.item.price for m in res.matches) == [10.0, 20.0, 30.0, 40.0]
    res = await rec.similar(query, k=3, min_price=50, max_price=120, category="skirt", predict=False)
    assert len(res.matches) == 3 and all(m.item.category == "skirt" and 50 <= m.item.price <= 120 for m in res.matches)


async def test_a_filter_narrows_the_results_not_the_predicted_category(rec) -> None:
    query = as_png(demo_photos("dress")[0])
    plain = await rec.similar(query, k=5)
    assert plain.prediction is not None and plain.prediction.ranked[0][0] != "shoes"
    for options in ({"category": "shoes"}, {"min_price": 1000.0}, {"category": "socks"}):
        narrowed = await rec.similar(query, k=5, **options)
        assert (narrowed.prediction, narrowed.nothing_like_this) == (plain.prediction, plain.nothing_like_this), options
        assert all(m.item.category == "shoes" for m in narrowed.matches) and len(narrowed.matches) == (
            5 if options.get("category") == "shoes" else 0
        )


async def test_bad_options(rec) -> None:
    query = as_png(demo_photos("hat")[0])
    for k in (0, 26, -1):
        with pytest.raises(BadOption, match="between 1 and 25"):
            await rec.similar(query, k=k)
    assert len((await rec.similar(query, k=25, predict=False)).matches) == 25
    assert len((await rec.similar(query, k=1, predict=False)).matches) == 1
    with pytest.raises(BadOption, match="minimum price is above"):
        await rec.similar(query, min_price=10, max_price=5)
    with pytest.raises(BadOption):
        await rec.similar()
    with pytest.raises(BadOption):
        await rec.edit_item(demo_item_id(demo_photos("hat")[0]), {"name": None}, guild_id=0, actor="mod")
    with pytest.raises(BadOption):
        await rec.update_guild_settings(5, actor="mod", k=99)


async def test_an_empty_catalogue_says_so(tmp_path: Path) -> None:
    rec = await open_rec(tmp_path / "empty.db")
    try:
        with pytest.raises(CatalogEmpty, match="empty"):
            await rec.similar(as_png(demo_photos("hat")[0]))
    finally:
        await rec.close()


async def test_a_catalogue_embedded_with_another_model_says_so(tmp_path: Path) -> None:
    """Not "the catalogue is empty" (a moderator would add items): which model its items need."""
    rec = await open_rec(tmp_path / "c.db")
    try:
        await rec.add_item(as_png(demo_photos("hat")[0]), ItemFields("h1", "Hat", "hat"), guild_id=7, actor="t")
        await sql(rec.store, "UPDATE embeddings SET model = 'efficientnet-lite0'")
        rec.refresh(7)
        for ask in (rec.similar, rec.classify):
            with pytest.raises(CatalogEmpty, match="embedded with efficientnet-lite0, not tiny: .* --model efficientnet-lite0"):
                await ask(as_png(demo_photos("hat")[1]), guild_id=7)
    finally:
        await rec.close()


async def test_classify_on_an_empty_catalogue_says_so(tmp_path: Path) -> None:
    rec = await open_rec(tmp_path / "empty.db")
    try:
        with pytest.raises(CatalogEmpty, match="empty"):
            await rec.classify(as_png(demo_photos("hat")[0]))
    finally:
        await rec.close()


async def test_guilds_use_the_default_catalogue_until_they_have_their_own(rec) -> None:
    query = as_png(demo_photos("shoes")[0])
    before = await rec.similar(query, guild_id=42, k=3, predict=False)
    assert before.catalogue_id == 0 and all(m.item.guild_id == 0 for m in before.matches)

    own = [demo_photos("hat")[0], demo_photos("hat")[1]]
    for i, p in enumerate(own):
        await rec.add_item(mirrored(p), ItemFields(f"g-{i}", f"Guild hat {i}", "guild-hats"), guild_id=42, actor="mod")
    after = await rec.similar(query, guild_id=42, k=5)
    assert after.catalogue_id == 42
    assert sorted(m.item.item_id for m in after.matches) == ["g-0", "g-1"]  # only its own two items
    assert after.prediction is not None and after.prediction.ranked[0][0] == "guild-hats"
    # other guilds and the default catalogue never see guild 42's items
    for guild in (0, 43):
        res = await rec.similar(query, guild_id=guild, k=25, predict=False)
        assert res.catalogue_id == 0 and not any(m.item.item_id.startswith("g-") for m in res.matches)
    with pytest.raises(ItemNotFound):
        await rec.get_item("g-0", guild_id=0)

    for i in range(2):
        await rec.remove_item(f"g-{i}", guild_id=42, actor="mod")
    back = await rec.similar(query, guild_id=42, k=3, predict=False)
    assert back.catalogue_id == 0 and [m.item.item_id for m in back.matches] == [m.item.item_id for m in before.matches]


async def test_add_remove_and_edit_update_the_loaded_index_without_a_reload(rec) -> None:
    query = as_png(demo_photos("outwear")[5])
    await rec.similar(query, k=3, predict=False)
    index = rec.catalogues.state(0).index
    assert index is not None and len(index) == 120

    new_photo = mirrored(demo_photos("outwear")[5])
    item = await rec.add_item(new_photo, ItemFields("new-coat", "New coat", "outwear", 99.0), guild_id=0, actor="mod")
    res = await rec.similar(new_photo, k=3, predict=False)  # the very same bytes: excluded as the query's own
    assert "new-coat" not in [m.item.item_id for m in res.matches]
    res = await rec.similar(as_png_bytes(new_photo), k=3, predict=False)
    assert res.matches[0].item.item_id == "new-coat" and res.matches[0].score > 0.99
    with pytest.raises(DuplicateItem):
        await rec.add_item(new_photo, ItemFields("new-coat", "Again", "outwear"), guild_id=0, actor="mod")

    await rec.edit_item("new-coat", {"category": "coats", "price": 5.0}, guild_id=0, actor="mod")
    res = await rec.similar(query, k=5, category="coats", max_price=6, predict=False)
    assert [m.item.item_id for m in res.matches] == ["new-coat"]
    assert (await rec.similar(query, k=5, category="coats", max_price=4, predict=False)).matches == []

    victim = demo_item_id(demo_photos("outwear")[5])
    await rec.remove_item(victim, guild_id=0, actor="mod")
    res = await rec.similar(query, k=25, predict=False)
    assert victim not in [m.item.item_id for m in res.matches]
    with pytest.raises(ItemNotFound):
        await rec.similar(item_id=victim)
    assert rec.catalogues.state(0).index is index and len(index) == 120  # +1 -1, same object: never reloaded
    actions = [e["action"] for e in await rec.store.audit_entries(0)]
    assert actions[:3] == ["remove", "edit", "add"]
    assert item.added_by == "mod"


def as_png_bytes(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "PNG")
    return out.getvalue()


async def test_several_changes_cause_one_debounced_retrain(demo_catalogue: str, caplog) -> None:
    rec = await open_rec(demo_catalogue, retrain_delay_s=1.0)
    try:
        await debounced(rec, caplog)
    finally:
        await rec.close()


async def debounced(rec, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recommender")
    caplog.clear()
    for i, p in enumerate(demo_photos("hat")[:6]):
        await rec.add_item(mirrored(p), ItemFields(f"m-{i}", f"Mirrored hat {i}", "mirrored"), guild_id=0, actor="mod")
        await asyncio.sleep(0.03)
    assert head_fits(caplog) == 0  # nothing yet: the delay restarts with each change
    timer = rec.catalogues.state(0).retrain_timer
    await asyncio.wait_for(asyncio.shield(timer), 30)
    assert head_fits(caplog) == 1
    saved = await rec.store.load_classifier(0, "tiny")
    assert saved.fingerprint == await rec.store.fingerprint(0, "tiny")
    assert "mirrored" in head_from_bytes(saved.blob).classifier.labels


async def test_the_classifier_is_reused_after_a_restart(demo_catalogue: str, caplog) -> None:
    db = demo_catalogue
    caplog.set_level(logging.INFO, logger="recommender")
    caplog.clear()
    query = as_png(demo_photos("skirt")[1])
    rec = await open_rec(db)
    try:
        saved = await rec.store.load_classifier(0, "tiny")
        assert saved is not None and saved.fingerprint == await rec.store.fingerprint(0, "tiny")
        first = await rec.classify(query)
        await asyncio.sleep(0.2)
        assert head_fits(caplog) == 0
        assert (await rec.store.load_classifier(0, "tiny")).trained_at == saved.trained_at
        await rec.edit_item(demo_item_id(demo_photos("skirt")[0]), {"name": "renamed"}, guild_id=0, actor="mod")
    finally:
        await rec.close()

    rec = await open_rec(db)  # the catalogue changed since the classifier was saved
    try:
        again = await rec.classify(query)
        assert again.prediction.ranked == first.prediction.ranked  # the saved one answers at once ...
        await asyncio.wait_for(asyncio.shield(rec.catalogues.state(0).retrain_timer), 30)
        assert head_fits(caplog) == 1  # ... and is refreshed in the background
        assert (await rec.store.load_classifier(0, "tiny")).fingerprint == await rec.store.fingerprint(0, "tiny")
    finally:
        await rec.close()


async def test_a_burst_of_queries_trains_the_classifier_once(demo_catalogue: str, caplog) -> None:
    """A catalogue never fitted: the first queries wait for one quick head fitted on the items alone
    (seconds, whatever the model), and the head with member-like views follows in the background."""
    caplog.set_level(logging.INFO, logger="recommender")
    caplog.clear()
    rec = await open_rec(demo_catalogue)
    try:
        await sql(rec.store, "DELETE FROM classifiers")  # as after `lookalike import --no-train`
        queries = [as_png(p) for p in demo_photos("shoes")[:6]]
        results = await asyncio.gather(*(rec.similar(q, k=3) for q in queries))
        assert all(r.prediction is not None for r in results)
        assert head_fits(caplog) == 1
        quick = rec.catalogues.state(0).head
        assert quick is not None and quick.info["views"] == 0
        await asyncio.wait_for(asyncio.shield(rec.catalogues.state(0).retrain_timer), 60)
        assert head_fits(caplog) == 2 and rec.catalogues.state(0).head.info["views"] > 0
    finally:
        await rec.close()


def slow_tiny(seconds_per_pass: float):
    """The tiny network behind a forward pass that takes a while, like vgg16 on a CPU."""
    import time as _time

    import torch

    from recommender.backbones import Backbone, load_backbone

    tiny = load_backbone("tiny")

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny.net

        def forward(self, x):
            _time.sleep(seconds_per_pass)
            return self.inner(x)

    return Backbone("slow-tiny", tiny.dim, tiny.input_size, Slow().eval(), pretrained=False)


async def small_shop(tmp_path: Path, seconds_per_pass: float):  # type: ignore[no-untyped-def]
    """(recommender, database): 12 demo photos (hat, shoes) imported into a new catalogue through ``slow_tiny``."""
    from recommender.engine import Recommender
    from recommender.store import Store

    folder = tmp_path / "photos"
    for c in ("hat", "shoes"):
        (folder / c).mkdir(parents=True)
        for p in demo_photos(c)[:6]:
            shutil.copyfile(p, folder / c / p.name)
    db = tmp_path / "c.db"
    rec = Recommender(await Store.open(db), slow_tiny(seconds_per_pass), settings(db, batch_size=2))
    await rec.import_items(records_from_folder(folder), guild_id=0, actor="t")
    return rec, db


async def test_a_bulk_import_larger_than_the_queue_waits_instead_of_failing(tmp_path: Path) -> None:
    from recommender.engine import Recommender
    from recommender.store import Store

    folder = tmp_path / "photos"
    for c in ("hat", "shoes", "pants"):
        (folder / c).mkdir(parents=True)
        for p in demo_photos(c)[:11]:
            shutil.copyfile(p, folder / c / p.name)
    db = tmp_path / "c.db"
    rec = Recommender(await Store.open(db), slow_tiny(0.25), settings(db, batch_size=1, queue_size=2))
    try:
        summary = await rec.import_items(records_from_folder(folder), guild_id=0, actor="t", batch=33)
        assert (summary.added, summary.failed) == (33, [])
    finally:
        await rec.close()


async def test_closing_does_not_wait_for_a_long_head_fit_and_keeps_the_saved_head(tmp_path: Path, monkeypatch) -> None:
    """A head still embedding its views at shutdown (minutes with vgg16 on a CPU) is given a few seconds,
    then stops; the head saved before stays, and the next start uses it."""
    from recommender import heads

    monkeypatch.setattr(heads, "FIT_GRACE_S", 0.5)
    rec, db = await small_shop(tmp_path, 0.2)
    quick = await rec.catalogues.heads.retrain(0, views=False)  # the head a first query gets, saved
    assert quick is not None
    saved = await rec.store.load_classifier(0, "slow-tiny")
    rec.schedule_retrain(0, delay=0.0)  # 24 views at 0.1 s each: still running at close
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await rec.close()
    assert time.monotonic() - t0 < 5.0
    again = await open_rec(db)
    try:
        kept = await again.store.load_classifier(0, "slow-tiny")
        assert kept is not None and kept.blob == saved.blob  # the fit that was cut short saved nothing
    finally:
        await again.close()


async def test_a_quick_head_left_by_a_stopped_fit_is_fitted_fully_at_the_next_start(tmp_path: Path) -> None:
    """The quick head a first query gets is saved before the full fit (member-like views) runs. A process stopped
    or killed in between left the quick head for good: its fingerprint matched, so nothing fitted it again."""
    from recommender.engine import Recommender
    from recommender.store import Store

    rec, db = await small_shop(tmp_path, 0.0)
    await rec.catalogues.heads.retrain(0, views=False)  # saved; the full fit never runs, as if the process was killed
    await rec.close()
    again = Recommender(await Store.open(db), slow_tiny(0.0), settings(db, batch_size=2))
    try:
        assert (await again.catalogues.heads.get(0)).info["views"] == 0  # answers at once ...
        await asyncio.wait_for(asyncio.shield(again.catalogues.state(0).retrain_timer), 60)
        assert again.catalogues.state(0).head.info["views"] > 0  # ... and the full fit follows
        saved = await again.store.load_classifier(0, "slow-tiny")
        assert saved is not None and head_from_bytes(saved.blob).info["views"] > 0
    finally:
        await again.close()


def bad_images() -> list[tuple[str, bytes, type, str]]:
    photo = demo_photos("hat")[0]
    with Image.open(photo) as im:
        rgb = im.convert("RGB")
    big = io.BytesIO()
    rgb.resize((4000, 3000)).save(big, "JPEG", quality=40)  # 12 MP, ~0.3 MB
    heavy = io.BytesIO()
    rgb.resize((700, 700)).save(heavy, "BMP")  # 1.5 MB
    data = photo.read_bytes()
    return [
        ("empty", b"", BadImage, "empty"),
        ("text", b"name,price\nshirt,10\n" * 20, BadImage, "not an image"),
        ("garbage", bytes(range(256)) * 8, BadImage, "not a supported image format"),
        ("truncated", data[: len(data) // 2], BadImage, "truncated"),
        ("too many pixels", big.getvalue(), ImageTooLarge, "4000×3000 pixels"),
        ("too many bytes", heavy.getvalue(), ImageTooLarge, "limit is"),
    ]


async def test_bad_images_are_refused_and_leave_the_catalogue_alone(demo_catalogue: str) -> None:
    db = demo_catalogue
    rec = await open_rec(db, max_image_bytes=1_000_000, max_image_pixels=5_000_000)
    try:
        await rec.similar(as_png(demo_photos("hat")[0]), k=1, predict=False)  # index loaded
        fp = await rec.store.fingerprint(0, "tiny")
        for what, data, kind, words in bad_images():
            with pytest.raises(kind, match=words) as e:
                await rec.add_item(data, ItemFields(f"bad-{what}", what, "hat"), guild_id=0, actor="mod")
            assert str(e.value)[0].isupper()  # a sentence for a person
            with pytest.raises(kind, match=words):
                await rec.similar(data)
            with pytest.raises(kind, match=words):
                await rec.classify(data)
            with pytest.raises(ItemNotFound):
                await rec.get_item(f"bad-{what}", guild_id=0)
        assert await rec.store.fingerprint(0, "tiny") == fp
        assert len(rec.catalogues.state(0).index) == 120
        assert [e["action"] for e in await rec.store.audit_entries(0)] == ["import"]
        # and the engine still works
        assert len((await rec.similar(as_png(demo_photos("hat")[0]), k=4, predict=False)).matches) == 4
    finally:
        await rec.close()


async def test_stats_settings_and_listing(rec) -> None:
    stats = await rec.stats(guild_id=0)
    assert stats["items"] == 120 and stats["model"] == "tiny" and stats["embeddings"] == {"tiny": 120}
    assert stats["categories"] == {c: 12 for c in DEMO_CATEGORIES}
    assert stats["classifier"]["method"] == "head-linear"  # the head, with a linear classifier inside
    items, total, cid = await rec.list_items(guild_id=77, category="hat", page=2, per_page=5)
    assert (total, cid, len(items)) == (12, 0, 5)
    with pytest.raises(BadOption):
        await rec.list_items(guild_id=0, page=0)
    await rec.update_guild_settings(77, actor="mod", k=7)
    assert await rec.set_watched(77, 1234, True, actor="mod") is True
    assert await rec.set_watched(77, 1234, True, actor="mod") is False
    gs = await rec.guild_settings(77)
    assert (gs.k, gs.watched) == (7, {1234})
    assert [e["action"] for e in await rec.store.audit_entries(77)] == ["watch", "config"]


@needs_women
async def test_the_event_loop_stays_responsive_under_load(tmp_path: Path, tmp_path_factory) -> None:
    """24 concurrent queries with multi-megapixel photos: decoding and search run off the loop."""
    db = demo_db(tmp_path_factory, tmp_path / "c.db")
    rec = await open_rec(db, workers=2)
    try:
        await rec.similar(as_png(demo_photos("hat")[0]), k=1)  # index and classifier loaded
        photos = largest_women_photos(6)
        with settled_heap():  # as the bot's process is once started
            async with LoopLag(0.01) as lag:
                results = await asyncio.gather(*(rec.similar(photos[i % 6], k=5) for i in range(24)))
        assert all(len(r.matches) == 5 and r.prediction is not None for r in results)
        assert lag.ticks >= 5
        assert lag.worst < 0.25, f"the event loop stalled for {lag.worst:.3f}s"
    finally:
        await rec.close()


@pytest.mark.slow
async def test_efficientnet_lite0_finds_the_right_kind_of_item_and_keeps_the_loop_free(tmp_path: Path) -> None:
    classes = ["hat", "shoes", "pants", "dress"]
    folder = tmp_path / "catalogue"
    held_out = []
    for c in classes:
        (folder / c).mkdir(parents=True)
        photos = demo_photos(c)
        for p in photos[:8]:
            shutil.copyfile(p, folder / c / p.name)
        held_out += [(c, p) for p in photos[10:12]]
    rec = await open_rec(tmp_path / "lite0.db", model="efficientnet-lite0")
    try:
        summary = await rec.import_items(records_from_folder(folder), guild_id=0, actor="test", batch=16)
        assert (summary.added, summary.failed) == (32, [])
        right = 0
        for c, p in held_out:
            res = await rec.similar(p, k=3, predict=False)
            right += res.matches[0].item.category == c
        assert right >= 7, f"only {right}/8 held-out photos had a top match of their own kind"

        queries = [p.read_bytes() for _, p in held_out] * 3
        async with LoopLag(0.01) as lag:
            results = await asyncio.gather(*(rec.similar(q, k=3, predict=False) for q in queries))
        assert len(results) == 24 and all(len(r.matches) == 3 for r in results)
        assert lag.worst < 0.25, f"the event loop stalled for {lag.worst:.3f}s"
        assert rec.embedder.batches < rec.embedder.embedded  # concurrent queries shared forward passes
    finally:
        await rec.close()


async def test_a_refresh_while_the_index_loads_makes_the_load_read_again(rec) -> None:
    """Another process's big write arrives as one "reload" while this process is loading the index (its rows
    already read): the load reads again. Before, the refresh was dropped and the index stayed without the
    other process's items until the next restart (PostgreSQL does not poll under the change feed)."""
    cats = rec.catalogues
    other = await open_rec(rec.settings.db)  # the other process
    real = rec.store.load_vectors
    loads = 0

    async def load_then_another_process_writes(cid: int, model: str):
        nonlocal loads
        rows = await real(cid, model)
        loads += 1
        if loads == 1:
            await other.add_item(mirrored(demo_photos("hat")[2]), ItemFields("late", "Late", "hat"), guild_id=0, actor="t")
            await cats.apply(Change("reload", 0))  # what the change feed hands over for a write of > 400 items
        return rows

    rec.store.load_vectors = load_then_another_process_writes
    try:
        index = await cats.index(0)
    finally:
        rec.store.load_vectors = real
        await other.close()
    assert loads == 2 and len(index) == 121 and cats.state(0).index is index


async def test_refresh_picks_up_a_catalogue_another_process_imported(rec, tmp_path: Path) -> None:
    """A running bot and a `lookalike import --guild` share one database: after refresh() the bot
    sees the guild's new catalogue instead of the default one it had cached."""
    guild = 4242
    assert await rec.catalogue_for(guild) == 0
    before = await rec.similar(mirrored(demo_photos("hat")[0]), guild_id=guild, k=3)
    assert before.catalogue_id == 0
    other = await open_rec(rec.settings.db)  # a second writer on the same database, like the CLI
    try:
        records = [r for r in records_from_folder(Path(demo_photos("hat")[0]).parents[1]) if r.item_id.startswith("shoes/")]
        summary = await other.import_items(records, guild_id=guild, actor="cli:test")
        assert summary.added == len(records) > 0
    finally:
        await other.close()
    if rec.store.path is not None:  # SQLite: cached until refresh() (or refresh_check_s) ...
        assert (await rec.similar(mirrored(demo_photos("hat")[0]), guild_id=guild, k=3)).catalogue_id == 0
        rec.refresh(guild)
    else:  # ... PostgreSQL: the change feed tells the running process as the import commits
        await wait_for(lambda: rec.catalogue_for(guild), guild, within=1.0)
    after = await rec.similar(mirrored(demo_photos("hat")[0]), guild_id=guild, k=3)
    assert after.catalogue_id == guild
    assert {m.item.category for m in after.matches} == {"shoes"}


async def test_an_import_never_retrains_by_itself_so_the_callers_retrain_is_the_one_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller decides when to retrain (the CLI right away, the bot in the background): an import
    followed by the CLI's retrain fits exactly once, and nothing else starts a fit later."""
    caplog.set_level(logging.INFO, logger="recommender")
    rec = await open_rec(tmp_path / "t.db", retrain_delay_s=0.0)
    try:
        records = list(records_from_folder(demo_photos("hat")[0].parents[1]))
        summary = await rec.import_items(records, guild_id=0, actor="test", batch=8)
        assert summary.added == 120
        assert head_fits(caplog) == 0  # nothing fitted during or after the batches
        clf = await rec.retrain(0, force=False)  # what `lookalike import` does next
        assert clf is not None and head_fits(caplog) == 1
        await asyncio.sleep(0.5)  # a debounced retrain scheduled by the import would have run by now
        state = rec.catalogues.state(0)
        assert state.retrain_timer is None and state.training is None
        assert head_fits(caplog) == 1
    finally:
        await rec.close()


async def test_an_unreadable_saved_classifier_is_retrained_not_repeated(rec, tmp_path: Path, caplog) -> None:
    await rec.similar(mirrored(demo_photos("hat")[0]), k=3)  # trains and saves one
    await sql(rec.store, "UPDATE classifiers SET blob = :b", {"b": b"not a classifier"})
    await rec.close()
    caplog.set_level(logging.INFO, logger="recommender")
    again = await open_rec(rec.settings.db)
    try:
        photos = [mirrored(p) for p in demo_photos("hat")[:4]]  # four members' photos at once find it unreadable
        results = await asyncio.gather(*(again.similar(p, k=3) for p in photos))
        assert all(r.prediction is not None for r in results)
        saved = await again.store.load_classifier(0, "tiny")
        assert head_from_bytes(saved.blob).classifier.labels  # replaced by a good one
    finally:
        await again.close()
    assert head_fits(caplog) <= 2  # one quick fit answers them all, and the full one follows in the background


async def test_two_adds_of_the_same_id_at_once_give_one_item_and_a_sentence(rec) -> None:
    photo = as_png(demo_photos("hat")[0])
    fields = ItemFields("dup-1", "Twin hat", "hat")
    outcomes = await asyncio.gather(
        rec.add_item(photo, fields, guild_id=77, actor="a"),
        rec.add_item(photo, fields, guild_id=77, actor="b"),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["DuplicateItem", "Item"]
    items, total, _ = await rec.list_items(guild_id=77)
    assert total == 1
    assert [e["action"] for e in await rec.store.audit_entries(77)] == ["add"]


async def test_a_new_picture_drops_the_vectors_other_models_made_of_the_old_one(rec, tmp_path: Path) -> None:
    item_id = demo_item_id(demo_photos("hat")[0])
    [(pk,)] = await sql(rec.store, "SELECT pk FROM items WHERE item_id = :i", {"i": item_id})
    await sql(
        rec.store, "INSERT INTO embeddings (item_pk, model, dim, vector) VALUES (:pk, 'other', 2, :v)", {"pk": pk, "v": b"\0" * 4}
    )
    item = await rec.get_item(item_id, guild_id=0)
    new_picture = ImportRecordFor(item_id, as_png(demo_photos("shoes")[0]), item.category)
    summary = await rec.import_items([new_picture], guild_id=0, actor="test")
    assert summary.updated == 1
    assert await rec.store.known_hashes(0, [item_id], "other") == {}  # must be embedded again for "other"


async def wait_for(probe, expected, *, within: float) -> float:
    """Poll `await probe()` until it returns `expected`; how long it took (fails after `within` s)."""
    t0 = time.monotonic()
    while (got := await probe()) != expected:
        assert time.monotonic() - t0 < within, f"still {got!r}, not {expected!r}, after {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def ImportRecordFor(item_id: str, data: bytes, category: str):
    from recommender.importer import ImportRecord

    return ImportRecord(item_id, "test", ItemFields(item_id, item_id, category), data)


async def test_loading_a_large_catalogue_does_not_stall_the_loop(db: str) -> None:
    from datetime import datetime

    from recommender.rows import encode_vector
    from recommender.store import Store

    store = await Store.open(db)
    rng = np.random.default_rng(0)
    n, dim = 20_000, 1280
    at = datetime(2026, 1, 1)
    try:
        await sql(
            store,
            "INSERT INTO items (pk, guild_id, item_id, name, category, thumbnail, content_hash, added_by, added_at, updated_at) "
            "VALUES (:pk, 0, :id, 'x', :c, :t, :h, 't', :at, :at)",
            [{"pk": i + 1, "id": f"i{i}", "c": f"c{i % 50}", "t": b"\0", "h": f"{i:064x}", "at": at} for i in range(n)],
        )
        vecs = rng.standard_normal((n, dim)).astype(np.float32)
        await sql(
            store,
            "INSERT INTO embeddings (item_pk, model, dim, vector) VALUES (:pk, 'tiny', :d, :v)",
            [{"pk": i + 1, "d": dim, "v": encode_vector(v)} for i, v in enumerate(vecs)],
        )
        stalls = []
        for _ in range(2):
            gc.collect()
            before = gc.get_stats()[0]["collections"]
            async with LoopLag() as lag:
                rows = await store.load_vectors(0, "tiny")
            young_collections = gc.get_stats()[0]["collections"] - before
            assert rows.vectors.shape == (n, dim)
            assert np.allclose(rows.vectors[123], vecs[123], atol=1e-2)
            assert rows.pks[0] == 1 and rows.pks[-1] == n and rows.categories[51] == "c1" and rows.hashes[7] == f"{7:064x}"
            # Not an object per row: in a large process (a bot, the test session) the garbage collections they
            # cause end in a full one, which holds every thread 0.1 s or more (CI saw 0.109 s with a tuple per row).
            assert young_collections < 10, f"{young_collections} collections: the load made objects per row"
            stalls.append(lag.worst)
            del rows
        # Work on the loop stalls it every time; the suite's other worker on the second core can delay the loop
        # once (0.10017 s seen). So the better of two loads must stay under the bound.
        assert min(stalls) < 0.1, f"the loop stalled {stalls[0]:.3f}s and {stalls[1]:.3f}s while {n} vectors loaded"
    finally:
        await store.close()


async def another_process_adds_a_hat(db: str, item_id: str) -> None:
    """What `lookalike add` does from another process on the same database."""
    other = await open_rec(db)
    try:
        await other.add_item(as_png(demo_photos("shoes")[0]), ItemFields(item_id, item_id, "hat"), guild_id=0, actor="cli")
    finally:
        await other.close()


async def test_a_loaded_catalogue_notices_another_writer_without_refresh(demo_catalogue: str) -> None:
    db = demo_catalogue
    rec = await open_rec(db, refresh_check_s=0.0)
    try:
        query = mirrored(demo_photos("hat")[0])
        before = await rec.similar(query, k=25, category="hat")
        assert len(before.matches) == 12
        await another_process_adds_a_hat(db, "extra-hat")
        after = await rec.similar(query, k=25, category="hat")
        assert len(after.matches) == 13
    finally:
        await rec.close()


async def test_two_quick_edits_of_one_item_reach_the_index_in_the_order_they_were_made(rec, monkeypatch) -> None:
    """Two moderators price one item within milliseconds: searches filter by the price the store kept. The two
    edits' pool threads may start in either order; the index applied them in that order (the first price won)."""
    item_id, query = demo_item_id(demo_photos("skirt")[0]), as_png(demo_photos("skirt")[1])
    await rec.similar(query, k=1, predict=False)  # the index is loaded
    cpu, first = rec.embedder.cpu, [True]

    async def first_thread_late(fn, *args, **kw):  # the first edit's pool thread starts after the second's
        if first and first.pop():
            return await cpu(lambda: (time.sleep(0.3), fn(*args, **kw))[1])
        return await cpu(fn, *args, **kw)

    monkeypatch.setattr(rec.embedder, "cpu", first_thread_late)
    await asyncio.gather(*(rec.edit_item(item_id, {"price": p}, guild_id=0, actor="mod") for p in (11.0, 22.0)))
    assert not first
    kept = (await rec.get_item(item_id, guild_id=0)).price
    found = await rec.similar(query, k=25, category="skirt", min_price=kept, max_price=kept, predict=False)
    assert [m.item.item_id for m in found.matches] == [item_id]


async def test_a_change_feeds_read_overtaken_by_an_own_edit_does_not_undo_it(rec, monkeypatch) -> None:
    """Another process prices an item 33 and the change feed says so; while this process reads that row, a
    moderator here prices it 44. The index keeps 44, as the store does (the feed's older read landed last)."""
    item_id, query = demo_item_id(demo_photos("skirt")[0]), as_png(demo_photos("skirt")[1])
    await rec.similar(query, k=1, predict=False)  # the index is loaded
    pk = (await rec.get_item(item_id, guild_id=0)).pk
    read, armed = rec.store.vectors_by_pk, [True]

    async def then_an_own_edit(pks, model):
        rows = await read(pks, model)
        if armed and armed.pop():
            await rec.edit_item(item_id, {"price": 44.0}, guild_id=0, actor="mod")
        return rows

    monkeypatch.setattr(rec.store, "vectors_by_pk", then_an_own_edit)
    await rec.store.update_item(0, item_id, {"price": 33.0}, actor="another process")
    await rec.catalogues.apply(Change("items", 0, (pk,), origin="another process"))
    assert not armed and (await rec.get_item(item_id, guild_id=0)).price == 44.0
    found = await rec.similar(query, k=25, category="skirt", min_price=44.0, max_price=44.0, predict=False)
    assert [m.item.item_id for m in found.matches] == [item_id]


async def test_an_own_write_does_not_hide_another_writers_earlier_one(
    demo_catalogue: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI adds an item while the bot has the catalogue loaded, then moderators add two at once through the
    bot before it next compares with the database (SQLite; PostgreSQL's change feed tells it at once): all appear
    once it does, by one reload. The bot's own write once made it take the CLI's for seen. Its own writes alone
    never reload the catalogue."""
    from recommender import catalogues

    caplog.set_level(logging.INFO, logger="recommender")
    rec = await open_rec(demo_catalogue, refresh_check_s=60.0)
    skew = [0.0]
    monkeypatch.setattr(catalogues, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + skew[0]))

    async def hats() -> set[str]:
        return {m.item.item_id for m in (await rec.similar(query, k=25, category="hat")).matches}

    async def add(name: str, photo: int) -> None:
        await rec.add_item(as_png(demo_photos("shoes")[photo]), ItemFields(name, name, "hat"), guild_id=0, actor="mod")

    def reloads() -> int:
        return sum("changed outside this process" in r.getMessage() for r in caplog.records)

    try:
        query = mirrored(demo_photos("hat")[0])
        assert len(await hats()) == 12
        await another_process_adds_a_hat(demo_catalogue, "cli-hat")
        await asyncio.gather(add("bot-hat", 1), add("bot-cap", 2))
        assert {"bot-hat", "bot-cap"} <= await hats()  # at once
        skew[0] += 61.0  # refresh_check_s has passed
        found = await hats()
        assert {"cli-hat", "bot-hat", "bot-cap"} <= found and len(found) == 15
        assert reloads() == (1 if rec.store.path is not None else 0)
        await asyncio.gather(add("bot-beret", 3), add("bot-hood", 4))
        skew[0] += 61.0
        assert len(await hats()) == 17 and reloads() == (1 if rec.store.path is not None else 0)
    finally:
        await rec.close()
