"""Each catalogue's version on SQLite, which has no change feed: how a process tells its own writes from others'.

Every transaction that changes a catalogue's items bumps its version (``catalogue_versions``, in the same
transaction), and the store remembers the versions it committed itself. A process compares the database's
version with the one its loaded index reflects every ``refresh_check_s``: if every version in between is its
own (its writes go to the index as they are made), it keeps the index; otherwise another process wrote and it
reloads. Adopting the database's fingerprint after its own write instead once hid another process's earlier one.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .schema import CatalogueVersionRow

MAX_OWN = 4096  # own versions kept per catalogue between checks; past it they are forgotten (one reload at most)


class CatalogueVersions:
    def __init__(self) -> None:
        self.own: dict[int, set[int]] = {}  # catalogue -> versions this store committed, up to the last good check

    async def bump(self, s: AsyncSession, cid: int) -> None:
        """One more version, in the writing transaction; it is this store's once (and if) that commits."""
        bump = sqlite.insert(CatalogueVersionRow).values(catalogue_id=cid, version=1)
        bump = bump.on_conflict_do_update(index_elements=["catalogue_id"], set_={"version": bump.table.c.version + 1})
        version = (await s.execute(bump.returning(CatalogueVersionRow.version))).scalar_one()
        mine = self.own.setdefault(cid, set())

        def committed(_: object) -> None:
            if len(mine) >= MAX_OWN:  # a catalogue this process writes but never searches: keep it bounded
                mine.clear()
            mine.add(version)

        event.listen(s.sync_session, "after_commit", committed, once=True)

    @staticmethod
    async def read(s: AsyncSession, cid: int) -> int:
        """The catalogue's version (0 before its first write)."""
        row = await s.get(CatalogueVersionRow, cid)
        return 0 if row is None else row.version

    def only_ours(self, cid: int, since: int | None, version: int) -> bool:
        """Whether every version after `since` (None: unknown) up to `version` is this store's; those up to
        `version` are then forgotten."""
        mine = self.own.get(cid, set())
        if since is not None and version < since:  # the database was replaced (a backup restored): its numbers are new
            mine.clear()
        if since is None or not 0 <= version - since <= len(mine) or not mine.issuperset(range(since + 1, version + 1)):
            return False
        mine.difference_update([v for v in mine if v <= version])
        return True
