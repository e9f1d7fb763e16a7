"""The plain records that cross the recommender's door: what callers (the bot, the CLI) pass in and
get back. Frozen dataclasses of plain data; no behaviour beyond a derived property or two, no
database rows, no model objects. Every other module imports them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from .classify import Prediction


@dataclass(frozen=True)
class ItemFields:
    """What a moderator or a manifest says about an item (everything but its picture)."""

    item_id: str
    name: str
    category: str
    price: float | None = None
    url: str | None = None
    description: str | None = None
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewItem:
    """An item ready to be written. thumbnail and vector are None when the image is unchanged (only the
    fields are updated)."""

    fields: ItemFields
    thumbnail: bytes | None
    content_hash: str
    vector: np.ndarray | None


@dataclass(frozen=True)
class Item:
    """A stored catalogue item."""

    pk: int
    guild_id: int
    item_id: str
    name: str
    category: str
    price: float | None
    url: str | None
    description: str | None
    attributes: dict[str, Any]
    content_hash: str
    added_by: str
    added_at: datetime
    updated_at: datetime


WriteStatus = Literal["added", "updated", "unchanged"]


@dataclass
class VectorRows:
    """A catalogue's vectors for one model, column-wise (what the index and the classifier are built from)."""

    pks: np.ndarray  # int64 (n,)
    vectors: np.ndarray  # float32 (n, d)
    categories: list[str]
    prices: np.ndarray  # float64 (n,), nan where unknown
    hashes: list[str]


@dataclass(frozen=True)
class SavedClassifier:
    """A trained classifier as stored: which catalogue state it was fitted on, and its bytes (npz)."""

    fingerprint: str
    method: str
    blob: bytes
    trained_at: datetime


@dataclass
class GuildSettings:
    guild_id: int
    k: int | None = None
    moderator_role_id: int | None = None
    watched: set[int] = field(default_factory=set)
    remember_photos: bool = True  # the server's choice (/config remember-photos); off: none of its photos kept


@dataclass(frozen=True)
class Match:
    item: Item
    score: float


@dataclass(frozen=True)
class SimilarResult:
    matches: list[Match]
    prediction: Prediction | None
    catalogue_id: int
    nothing_like_this: bool = False  # the photo is far from everything in the catalogue: matches are only the closest
    photo_id: int | None = None  # set when similar(..., remember=True) remembered the photo (for link_reply)


@dataclass(frozen=True)
class Feedback:
    """What a reaction or a moderator's label did to the remembered photos of one message."""

    photos: int  # remembered member photos it touched
    label: str | None  # the category they now carry (None: none yet, e.g. only 👎 votes)
    labelled: int  # labelled member photos the guild now has in this catalogue


@dataclass(frozen=True)
class CommunityStats:
    """A guild's remembered member photos (features only) and what the community said about them."""

    remembered: int
    labelled: int
    by_moderators: int
    thumbs_up: int
    thumbs_down: int
    adapted_on: int  # member photos in the catalogue's domain state (kept whether adaptation is on or not)
    adapting: bool = False  # the setting `adaptation`: queries are moved by that state


@dataclass(frozen=True)
class Classification:
    """A photo's predicted category (prediction.category is None when not sure), and whether the
    catalogue has anything like it at all."""

    prediction: Prediction
    nothing_like_this: bool = False


@dataclass
class ImportSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (item id, where, reason)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.added + self.updated + self.unchanged + len(self.failed)

    def count(self, status: WriteStatus) -> None:
        setattr(self, status, getattr(self, status) + 1)


ImageSource = Path | bytes | str | Callable[[], bytes]
"""Where an imported item's picture comes from: a file, its bytes, an http(s) URL, or a reader."""


@dataclass(frozen=True)
class ImportRecord:
    item_id: str
    where: str  # "styles.csv line 12", for messages
    fields: ItemFields | None = None
    image: ImageSource | None = None
    error: str | None = None
    former_id: str | None = None  # a first twin's id before 2026-12-07 (its full name): kept where the catalogue has it


@dataclass
class ImportNotes:
    """What an import noticed on the way in: ids that differ from the names they came from, and
    warnings about the source as a whole (an archive cut short)."""

    keep: int = 1000
    count: int = 0
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # (where, item id, why)
    warnings: list[str] = field(default_factory=list)  # about the source as a whole

    def rename(self, where: str, item_id: str, why: str) -> None:
        self.count += 1
        if len(self.renamed) < self.keep:
            self.renamed.append((where, item_id, why))


@dataclass(frozen=True)
class NotModified:
    """A fetcher's answer when the server says an image is still the one whose hash the caller knows."""

    digest: str


@dataclass(frozen=True)
class FeedSchedule:
    """A guild's shop feed as configured (`/config feed`): synced every `every_s` seconds (0: by hand)."""

    guild_id: int
    url: str
    every_s: int
    options: dict[str, str]  # format, category_level, currency, shop_url (what `lookalike sync` takes as flags)
    channel_id: int | None = None  # where a failure is reported
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None


@dataclass
class SyncSummary:
    """What a sync did: the import's counts, the items it took out (gone from the feed, or not for
    sale), and what it noticed about the feed as a whole."""

    format: str
    imported: ImportSummary
    removed: int = 0
    unavailable: int = 0
    warnings: list[str] = field(default_factory=list)
