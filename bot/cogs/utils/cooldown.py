"""Per-user rate limit: at most `rate` uses per `per` seconds (a sliding window), one instance per bot."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    first_refusal: bool = False  # True once per window, so a note is not repeated for every refusal


class UserCooldown:
    def __init__(self, rate: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.per = per
        self._clock = clock
        self._uses: dict[int, deque[float]] = {}
        self._noted: dict[int, float] = {}
        self._swept = clock()

    def hit(self, user_id: int) -> Verdict:
        if self.per <= 0:
            return Verdict(True)
        now = self._clock()
        if now - self._swept > self.per:  # forget idle users now and then, not on every hit
            self._prune(now)
            self._swept = now
        uses = self._uses.setdefault(user_id, deque())
        while uses and uses[0] <= now - self.per:
            uses.popleft()
        if len(uses) < self.rate:
            uses.append(now)
            return Verdict(True)
        retry = uses[0] + self.per - now
        first = self._noted.get(user_id, -1.0) < uses[0]
        if first:
            self._noted[user_id] = now
        return Verdict(False, max(retry, 0.1), first)

    def _prune(self, now: float) -> None:
        horizon = now - self.per
        for uid in list(self._uses):
            uses = self._uses[uid]
            while uses and uses[0] <= horizon:
                uses.popleft()
            if not uses:
                del self._uses[uid]
                self._noted.pop(uid, None)
