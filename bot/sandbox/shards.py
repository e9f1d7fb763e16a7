"""Sharding as Discord documents it: which shard a guild belongs to, the recommended shard count
``GET /gateway/bot`` answers, and the session start limit each IDENTIFY spends.

* A guild's events go to shard ``(guild_id >> 22) % num_shards``; direct messages only to shard 0.
* ``shards``: Discord recommends about one shard per 1,000 guilds (it requires sharding from 2,500).
* ``session_start_limit``: ``total`` IDENTIFYs per ``reset_after`` window (24 h), ``remaining``
  decremented by each IDENTIFY (a RESUME is free), ``max_concurrency`` IDENTIFYs per 5 s (per
  rate-limit bucket ``shard_id % max_concurrency``). A bot that runs out has its token reset by
  Discord: here the IDENTIFY fails with 4004 and a violation. One that IDENTIFYs again too soon gets
  op 9 Invalid Session and must IDENTIFY again later; the sandbox enforces that only when its
  ``identify_interval`` is set (5.0 as on Discord; 0, the default, lets tests restart bots at once).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

GUILDS_PER_SHARD = 1000
SESSION_STARTS = 1000
SESSION_WINDOW_S = 24 * 3600.0


def shard_of(guild_id: int, num_shards: int) -> int:
    return (guild_id >> 22) % num_shards


def wanted_by(shard: tuple[int, int] | None, guild_id: int | None) -> bool:
    """Whether a session on ``shard`` ([shard_id, num_shards], None: unsharded) gets a guild's events
    (``guild_id`` None: a direct message, which only shard 0 receives)."""
    if shard is None:
        return True
    shard_id, count = shard
    if guild_id is None:
        return shard_id == 0
    return shard_of(guild_id, count) == shard_id


def recommended_shards(guild_count: int) -> int:
    return max(1, math.ceil(guild_count / GUILDS_PER_SHARD))


@dataclass
class SessionStarts:
    """One bot's session start budget."""

    total: int = SESSION_STARTS
    window_s: float = SESSION_WINDOW_S
    max_concurrency: int = 1
    used: int = 0
    window_start: float = field(default_factory=time.monotonic)
    last_identify: dict[int, float] = field(default_factory=dict)  # rate-limit bucket -> when
    refused: list[int | None] = field(default_factory=list)  # shard ids told to IDENTIFY later (op 9)

    def _roll(self) -> None:
        if time.monotonic() - self.window_start >= self.window_s:
            self.used, self.window_start = 0, time.monotonic()

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.total - self.used)

    def admit(self, shard_id: int | None, interval: float) -> bool:
        """Whether an IDENTIFY now respects ``max_concurrency`` per ``interval`` seconds (0: no limit)."""
        bucket, now = (shard_id or 0) % self.max_concurrency, time.monotonic()
        if interval and now - self.last_identify.get(bucket, -interval) < interval:
            self.refused.append(shard_id)
            return False
        self.last_identify[bucket] = now
        return True

    def spend(self) -> bool:
        """Count one IDENTIFY; False when none was left."""
        if self.remaining == 0:
            return False
        self.used += 1
        return True

    def payload(self) -> dict[str, int]:
        remaining = self.remaining
        reset_after = max(0.0, self.window_start + self.window_s - time.monotonic())
        return {
            "total": self.total,
            "remaining": remaining,
            "reset_after": int(reset_after * 1000),
            "max_concurrency": self.max_concurrency,
        }
