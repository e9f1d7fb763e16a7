"""Several processes on one catalogue database fit a changed catalogue's head once: the one holding the fit lease
fits it, the others load the head it saves; a lease whose process died lapses and is taken over."""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime

import pytest

from recommender.fitlease import FitLeases
from recommender.records import ItemFields

from databases import sql
from helpers import as_png, demo_photos, eventually, head_fits, open_rec

pytestmark = pytest.mark.timeout(180)


async def add_from_another_process(db: str, item_id: str) -> None:
    """What `lookalike add` does: it writes the item and ends before its own debounced fit would start."""
    other = await open_rec(db, retrain_delay_s=600.0)
    try:
        await other.add_item(as_png(demo_photos("shoes")[0]), ItemFields(item_id, item_id, "hat"), guild_id=0, actor="cli")
    finally:
        await other.close()


async def lapse(rec, catalogue_id: int) -> None:
    """The catalogue's lease ran out (its holder died `ttl_s` ago), without waiting for it."""
    await sql(
        rec.store, "UPDATE fit_leases SET expires_at = :t WHERE catalogue_id = :c", {"t": datetime(2000, 1, 1), "c": catalogue_id}
    )


async def test_a_lease_is_one_process_s_until_it_lapses_or_is_given_back(db: str) -> None:
    rec = await open_rec(db)
    try:
        session, kind = rec.store.session, rec.store.database.kind
        a, b = FitLeases(session, kind, ttl_s=60.0), FitLeases(session, kind, ttl_s=60.0)
        assert await a.take(7, "tiny") and await a.take(7, "tiny")  # taken, then renewed
        assert not await b.take(7, "tiny")  # held
        assert await b.take(7, "other-model") and await b.take(8, "tiny")  # one lease per catalogue and model
        await b.release(7, "tiny")  # not b's: stays a's
        assert not await b.take(7, "tiny")
        await lapse(rec, 7)  # a's process died a minute ago: its lease lapsed
        assert await b.take(7, "tiny") and not await a.take(7, "tiny")
        async with b.held(7, "tiny") as ours:  # b's own lease: renewed and then given back
            assert ours
            async with a.held(7, "tiny") as theirs:
                assert not theirs
        assert await a.take(7, "tiny")
    finally:
        await rec.close()


async def test_another_process_s_change_is_fitted_once_and_every_process_gets_the_head(
    demo_catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two bots (shards) on one database, and `lookalike add` from a third process. On PostgreSQL nobody fitted
    the change at all (the bots only updated their indexes, the CLI ended before its fit); on SQLite both bots
    fitted the same head."""
    caplog.set_level(logging.INFO, logger="recommender")
    a = await open_rec(demo_catalogue, retrain_delay_s=0.05, head_views=16, refresh_check_s=0.0)
    b = await open_rec(demo_catalogue, retrain_delay_s=0.05, head_views=16, refresh_check_s=0.0)
    query = as_png(demo_photos("hat")[1])
    try:
        for rec in (a, b):  # a process that waits on another's lease looks again every third of it (SQLite has no feed)
            rec.catalogues.heads.leases = FitLeases(rec.store.session, rec.store.database.kind, ttl_s=6.0)
            await rec.similar(query, k=3)  # each has the saved head
            assert rec.catalogues.state(0).head.info["items"] == 120
        caplog.clear()
        await add_from_another_process(demo_catalogue, "cli-hat")
        fingerprint = await a.catalogues._head_fingerprint(0)

        async def saved_current() -> bool:
            for rec in (a, b):
                await rec.similar(query, k=3)  # SQLite: a query is when a process notices another's write
            saved = await a.store.load_classifier(0, "tiny")
            return saved is not None and saved.fingerprint == fingerprint

        await eventually(saved_current, within=60.0)

        async def both_have_it() -> bool:
            heads = [await rec.catalogues.heads.get(0) for rec in (a, b)]
            return all(h is not None and h.info["items"] == 121 and h.info["views"] > 0 for h in heads)

        await eventually(both_have_it, within=10.0)
        await asyncio.sleep(0.3)  # what a second fit would take, with 16 views
        assert head_fits(caplog) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_quick_head_met_by_several_processes_is_fitted_fully_once(
    demo_catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The quick head (from the items alone) that a process stopped before its full fit left: every process that
    loaded it fitted the full one (member-like views, minutes with a big model), the same head in each."""
    caplog.set_level(logging.INFO, logger="recommender")
    first = await open_rec(demo_catalogue)
    try:
        await first.catalogues.heads.retrain(0, views=False)  # saved; its full fit never runs
    finally:
        await first.close()
    shards = [await open_rec(demo_catalogue, retrain_delay_s=0.05, head_views=16) for _ in range(2)]
    try:
        for rec in shards:
            rec.catalogues.heads.leases = FitLeases(rec.store.session, rec.store.database.kind, ttl_s=6.0)
        caplog.clear()
        for rec in shards:
            await rec.similar(as_png(demo_photos("hat")[1]), k=3)  # the quick head answers at once ...
        for rec in shards:  # ... and the full one follows, fitted by one of them
            await eventually(functools.partial(_fitted, rec, 120), within=20.0)
        assert head_fits(caplog) == 1
    finally:
        for rec in shards:
            await rec.close()


async def test_a_fit_lease_left_by_a_killed_process_is_taken_over(demo_catalogue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recommender")
    rec = await open_rec(demo_catalogue, retrain_delay_s=0.05, head_views=16)
    try:
        heads = rec.catalogues.heads
        heads.leases = FitLeases(rec.store.session, rec.store.database.kind, ttl_s=1.0)  # looks again every 1/3 s
        dead = FitLeases(rec.store.session, rec.store.database.kind, ttl_s=60.0)
        assert await dead.take(0, "tiny")  # a process that took the lease, then was killed (kill -9) mid-fit
        await rec.similar(as_png(demo_photos("hat")[1]), k=3)
        caplog.clear()
        await rec.add_item(as_png(demo_photos("shoes")[0]), ItemFields("new-hat", "New hat", "hat"), guild_id=0, actor="mod")
        await asyncio.sleep(0.5)
        assert head_fits(caplog) == 0  # the lease is held: this process waits for the head the holder would save
        await lapse(rec, 0)
        await eventually(lambda: _fitted(rec, 121), within=15.0)  # the lease lapsed: this process fits
        assert head_fits(caplog) == 1

        async def given_back() -> bool:  # after the fit
            return await sql(rec.store, "SELECT COUNT(*) FROM fit_leases") == [(0,)]

        await eventually(given_back, within=5.0)
    finally:
        await rec.close()


async def _fitted(rec, items: int) -> bool:
    head = rec.catalogues.state(0).head
    return head is not None and head.info["items"] == items and head.info["views"] > 0
