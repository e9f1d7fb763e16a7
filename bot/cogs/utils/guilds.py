"""A small cache of each guild's settings (k, moderator role, watched channels), so a photo in
an unwatched channel costs no database round trip. /config invalidates it on every change, and so
does a change another process made (the recommender's change feed, on PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recommender.engine import Recommender
    from recommender.records import GuildSettings


class GuildConfigs:
    """`get()` reads through the cache; `invalidate()` after every write. Each guild has a
    generation, bumped by `invalidate()`: a read that started before a write and finishes after
    its invalidation returns what it read, but does not cache that (possibly stale) copy."""

    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self._cache: dict[int, GuildSettings] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._generations: dict[int, int] = {}
        self._epoch = 0  # bumped when every guild is invalidated at once
        rec.on_settings_change(self.invalidate)

    async def get(self, guild_id: int) -> GuildSettings:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(guild_id)
            if cached is not None:
                return cached
            generation = (self._generations.get(guild_id, 0), self._epoch)
            settings = await self.rec.guild_settings(guild_id)
            if (self._generations.get(guild_id, 0), self._epoch) == generation:  # no write was invalidated meanwhile
                self._cache[guild_id] = settings
            return settings

    def invalidate(self, guild_id: int | None) -> None:
        """Forget one guild's settings (None: every guild's, e.g. after the change feed reconnected)."""
        if guild_id is None:
            self._epoch += 1
            self._cache.clear()
            return
        self._generations[guild_id] = self._generations.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)
