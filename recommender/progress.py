"""A progress line for long work: done/total, items/s, ETA. Redrawn in place on a terminal,
printed every few seconds otherwise (logs, CI). Writes to stderr; results stay on stdout."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.start = time.monotonic()
        self._last = 0.0
        self._width = 0
        self.done = 0

    def line(self, done: int, note: str = "") -> str:
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, done / self.total)
            bar = "#" * int(frac * 24)
            eta = _clock((self.total - done) / rate) if rate > 0 else "?"
            head = f"{self.label} [{bar:<24}] {done}/{self.total} {frac:4.0%}"
            tail = f"{rate:6.1f} items/s  ETA {eta}"
        else:
            head, tail = f"{self.label} {done}", f"{rate:6.1f} items/s  {_clock(elapsed)}"
        return f"{head}  {tail}" + (f"  {note}" if note else "")

    def update(self, done: int, total: int | None = None, summary: Any = None) -> None:
        """Signature fits the engine's progress callback: (done, total, summary)."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self._last < self.interval and done != self.total:
            return
        self._last = now
        failed = len(getattr(summary, "failed", ()) or ())
        text = self.line(done, f"failed {failed}" if failed else "")
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
