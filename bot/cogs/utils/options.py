"""Bot-only options: read from the environment (`LOOKALIKE_<KEY>`), else the unknown keys of the
TOML config (`settings.extra`), else the defaults below. The recommender's own settings (database,
model, k, image limits, ...) stay in `recommender.config.Settings`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recommender.config import Settings
from recommender.errors import BadOption


@dataclass(frozen=True)
class BotOptions:
    cooldown_rate: int = 4  # photo messages (each once, whatever its photos) + /similar calls a user may make ...
    cooldown_per_s: float = 20.0  # ... per this many seconds (0 switches the cooldown off)
    max_attachments: int = 4  # images answered per message (Discord allows 10 files per reply)
    fetch_timeout_s: float = 15.0  # per image URL in a CSV import
    fetch_concurrency: int = 8  # image URLs downloaded at once, and members' photos downloaded and looked at
    fetch_private_urls: bool = False  # let imports fetch from loopback/private addresses (tests, intranets)
    import_max_bytes: int = 25 * 1024 * 1024  # largest CSV/ZIP accepted by /catalog import
    import_max_rows: int = 5000  # most rows a /catalog import may have; bigger ones: `lookalike import --guild`
    progress_interval_s: float = 1.0  # at most one progress edit per this many seconds
    shutdown_grace_s: float = 10.0  # how long in-flight replies may finish on shutdown
    sync_commands: bool = True  # sync slash commands on start-up
    sync_guilds: tuple[int, ...] = ()  # sync to these guilds (instant) instead of globally
    currency: str = "$"
    grid_cell: int = 160  # thumbnail cell size in reply grids (pixels)
    health_file: str = ""  # stamped every 30 s while connected; `lookalike health` reads it (Docker HEALTHCHECK)
    page_size: int = 10  # items per /catalog list page
    feed_check_s: float = 60.0  # how often the scheduled shop feeds (/config feed) are checked for one due
    feed_lease_s: float = 3600.0  # a sync's hold on its catalogue; a process that died mid-sync frees it after this

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None, **overrides: Any) -> BotOptions:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = overrides.get(f.name)
            if raw is None:
                raw = env.get(f"LOOKALIKE_{f.name.upper()}")
            if raw is None:
                raw = settings.extra.get(f.name, settings.extra.get(f.name.replace("_", "-")))
            if raw is not None:
                values[f.name] = _coerce(f.name, f.default, raw)
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.cooldown_rate < 1 or self.cooldown_per_s < 0:
            raise BadOption("cooldown_rate must be at least 1 and cooldown_per_s at least 0.")
        if not 1 <= self.max_attachments <= 10:
            raise BadOption("max_attachments must be between 1 and 10.")
        if not 1 <= self.page_size <= 25:
            raise BadOption("page_size must be between 1 and 25.")
        if self.fetch_timeout_s <= 0 or self.fetch_concurrency < 1 or self.progress_interval_s < 0:
            raise BadOption("fetch_timeout_s, fetch_concurrency and progress_interval_s must be positive.")
        if self.grid_cell < 32:
            raise BadOption("grid_cell must be at least 32 (pixels).")
        if self.import_max_bytes < 1 or self.import_max_rows < 1:
            raise BadOption("import_max_bytes and import_max_rows must be at least 1.")
        if self.feed_check_s <= 0 or self.feed_lease_s <= 0:
            raise BadOption("feed_check_s and feed_lease_s must be positive.")
        if self.shutdown_grace_s < 0:
            raise BadOption("shutdown_grace_s must be at least 0.")


def _coerce(name: str, default: Any, raw: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, tuple):
            items = raw if isinstance(raw, (list, tuple)) else str(raw).replace(",", " ").split()
            return tuple(int(x) for x in items)
        return type(default)(raw)
    except (TypeError, ValueError):
        raise BadOption(f"Bot option {name!r} has an invalid value {raw!r}.") from None
