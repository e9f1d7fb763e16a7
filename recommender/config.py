"""Settings: one frozen record, read from the environment and an optional TOML file.

Precedence: explicit arguments (CLI flags) > environment (`LOOKALIKE_*`) > config file > defaults.
The config file is `LOOKALIKE_CONFIG` or `--config`; its keys are the field names below.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadOption

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")

DEFAULT_GUILD = 0
"""Catalogue id of the shared default catalogue (Discord snowflakes are never 0)."""

MAX_K = 25
"""Most results one query may ask for (Discord shows at most 25 fields or lines comfortably)."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
"""File names that importers treat as images (the decoder still checks the bytes)."""

REFUSED_PHOTO_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})
"""Photos in formats the decoder refuses: a folder or ZIP import lists them, and each fails with the decoder's
sentence, never skipped without a word."""

PHOTO_EXTENSIONS = IMAGE_EXTENSIONS | REFUSED_PHOTO_EXTENSIONS
"""File names looked at as photos, read or refused in words (imports, and the bot's attachments)."""


@dataclass(frozen=True)
class Settings:
    db: str | Path = Path("lookalike.db")  # a SQLite file, or a postgresql:// URL shared by several processes
    model: str | None = None  # None: the model the catalogue was built with, else "vgg16"
    pooling: str = "gap"  # vgg16 only: "gap" (512-d) or "flatten" (25,088-d)
    weights: str | None = None  # local weights file, or "random" (benchmarks only)
    workers: int = 2  # threads for decoding and search
    runtime: str = "auto"  # "auto": ONNX Runtime where it exports and agrees with PyTorch (runtime.py); "torch"
    model_threads: int = 0  # threads of the model's runtime; 0: one per core
    precision: str = "auto"  # int8 where measured to keep quality (runtime.AUTO_PRECISION), else fp32; or fp32/int8/bf16
    batch_size: int = 16  # images per forward pass
    batch_wait_ms: float = 10.0  # how long the batcher waits for more requests
    queue_size: int = 64  # pending embedding requests before callers get Busy
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    max_decode_bytes: int = 128 * 1024 * 1024  # memory one photo's decoder may use (recommender/decode_budget.py)
    decode_side: int = 512  # longest side images are decoded to
    thumbnail_side: int = 256
    k: int = 5
    threshold: float = 0.5  # classifier probability below this is "not sure"
    head_views: int = 4000  # member-like views a catalogue's head is fitted on (augment.view_plan)
    retrain_delay_s: float = 5.0  # debounce between catalogue changes and retraining
    refresh_check_s: float = 30.0  # how often a loaded catalogue is compared with the database (other writers)
    member_photos_kept: int = 2000  # unlabelled member photos (features only) remembered per server, newest first
    member_labels_kept: int = 5000  # labelled member photos kept per server (the oldest dropped first)
    adaptation: bool = False  # align members' photos with the catalogue's domain (adapt.py) before search
    remember_photos: bool = True  # keep members' answered photos as features for votes and labels (off: nothing kept)
    extra: Mapping[str, Any] = field(default_factory=dict)  # bot options ride along here

    def replace(self, **changes: Any) -> Settings:
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "extra"}


def _coerce(name: str, value: Any) -> Any:
    kind: type[Any] = type(getattr(Settings, name, None)) if name != "db" else Path
    if name in ("model", "weights"):
        return None if value in (None, "") else str(value)
    if kind is bool:
        return _boolean(name, value)
    if name == "db" and str(value).startswith(POSTGRES_SCHEMES):
        return str(value)  # a server URL, not a path
    try:
        if kind is Path:
            return Path(value).expanduser()
        return kind(value)
    except (TypeError, ValueError) as e:
        raise BadOption(f"Setting {name!r} has an invalid value {value!r}: {e}") from None


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    said = str(value).strip().lower()
    if said in ("1", "true", "yes", "on"):
        return True
    if said in ("0", "false", "no", "off"):
        return False
    raise BadOption(f"Setting {name!r} must be true or false, not {value!r}.")


def load_settings(
    config_file: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults, a TOML file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    path = config_file or env.get("LOOKALIKE_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BadOption(f"Config file {path} does not exist.") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise BadOption(f"Config file {path} cannot be read: {e}") from None
        for key, value in data.items():
            key = key.replace("-", "_")
            if key in _FIELDS:
                values[key] = _coerce(key, value)
            else:
                extra[key] = value
    for name in _FIELDS:
        env_value = env.get(f"LOOKALIKE_{name.upper()}")
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    settings = Settings(**values, extra=extra)
    _validate(settings)
    return settings


def check_k(k: int) -> int:
    """k itself, if it is a number of results a query may ask for."""
    if not 1 <= k <= MAX_K:
        raise BadOption(f"k must be between 1 and {MAX_K}.")
    return k


def _validate(s: Settings) -> None:
    if s.runtime not in ("auto", "torch"):
        raise BadOption(f"runtime must be 'auto' or 'torch', not {s.runtime!r}.")
    if s.precision not in ("auto", "fp32", "int8", "bf16"):
        raise BadOption(f"precision must be 'auto', 'fp32', 'int8' or 'bf16', not {s.precision!r}.")
    if s.model_threads < 0:
        raise BadOption("model_threads must be 0 (one per core) or more.")
    if s.pooling not in ("gap", "flatten"):
        raise BadOption(f"pooling must be 'gap' or 'flatten', not {s.pooling!r}.")
    for name in (
        "workers",
        "batch_size",
        "queue_size",
        "decode_side",
        "thumbnail_side",
        "max_image_bytes",
        "max_image_pixels",
        "max_decode_bytes",
        "head_views",
        "member_photos_kept",
        "member_labels_kept",
    ):
        if getattr(s, name) < 1:
            raise BadOption(f"{name} must be at least 1.")
    for name in ("batch_wait_ms", "retrain_delay_s", "refresh_check_s"):  # inf or NaN: a photo never answered, a
        if not 0.0 <= getattr(s, name) < math.inf:  # catalogue never refreshed (NaN fails every comparison)
            raise BadOption(f"{name} must be a number of 0 or more.")
    check_k(s.k)
    if not 0.0 <= s.threshold <= 1.0:
        raise BadOption("threshold must be between 0 and 1.")
