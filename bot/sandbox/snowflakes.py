"""Snowflakes and the small enumerations of the sandbox's world (channel types, message flags)."""

from __future__ import annotations

import datetime as dt
import time

DISCORD_EPOCH_MS = 1420070400000


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


class SnowflakeGenerator:
    """Monotonic Discord snowflakes: ms since 2015 << 22 | worker << 17 | increment."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._increment = 0

    def next(self) -> int:
        now = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if now <= self._last_ms:
            self._increment += 1
            if self._increment >= 4096:
                self._last_ms += 1
                self._increment = 0
        else:
            self._last_ms, self._increment = now, 0
        return (self._last_ms << 22) | (1 << 17) | self._increment

    def next_on_shard(self, shard_id: int, num_shards: int) -> int:
        """The next snowflake whose guild would live on ``shard_id`` ((id >> 22) % num_shards): its
        millisecond moves forward (at most num_shards - 1 ms ahead of the clock) to one that fits."""
        ident = self.next()
        while (ident >> 22) % num_shards != shard_id:
            self._last_ms, self._increment = self._last_ms + 1, 0
            ident = (self._last_ms << 22) | (1 << 17)
        return ident


def snowflake_time(snowflake: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, dt.UTC)


def iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()
