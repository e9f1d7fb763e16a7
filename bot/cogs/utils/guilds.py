"""A small cache of each guild's settings (k, moderator role, watched channels), so a photo in
an unwatched channel costs no database round trip. /config invalidates it on every change."""

from __future__ import annotations

import asyncio

from recommender.engine import Recommender
from recommender.store import GuildSettings


class GuildConfigs:
    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self._cache: dict[int, GuildSettings] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def get(self, guild_id: int) -> GuildSettings:
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            if guild_id not in self._cache:
                self._cache[guild_id] = await self.rec.guild_settings(guild_id)
            return self._cache[guild_id]

    def invalidate(self, guild_id: int) -> None:
        self._cache.pop(guild_id, None)
