"""The SQLAlchemy tables. Alembic's migrations in `migrations/versions/` build exactly this schema.

Catalogue `guild_id` 0 is the shared default catalogue; any other value is a Discord guild's own.
Embeddings are stored per (item, model) as little-endian float16 BLOBs: half the bytes of float32,
and a round trip moves each component by less than 1e-3 (tests/test_store.py checks it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("guild_id", "item_id", name="uq_items_guild_item"),
        Index("ix_items_guild_category", "guild_id", "category"),
        Index("ix_items_guild_hash", "guild_id", "content_hash"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    item_id: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    category: Mapped[str] = mapped_column(String(100), nullable=False)
    price: Mapped[float | None] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[str | None] = mapped_column(Text)  # JSON object of extra manifest columns
    thumbnail: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    added_by: Mapped[str] = mapped_column(String(100), nullable=False)
    added_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class EmbeddingRow(Base):
    __tablename__ = "embeddings"

    item_pk: Mapped[int] = mapped_column(ForeignKey("items.pk", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class GuildSettingsRow(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    k: Mapped[int | None] = mapped_column(Integer)
    moderator_role_id: Mapped[int | None] = mapped_column(BigInteger)
    remember_photos: Mapped[bool | None] = mapped_column(Boolean)  # None: the operator's setting decides
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class WatchedChannelRow(Base):
    __tablename__ = "watched_channels"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_guild_at", "guild_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    item_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class ClassifierRow(Base):
    __tablename__ = "classifiers"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(100), nullable=False)  # catalogue state it was trained on
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    blob: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # npz, no pickle
    trained_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class FeedRow(Base):
    """A guild's shop feed, synced every `every_s` seconds (0: only by hand). `running_until` is the
    lease of the sync in progress (one per catalogue, across processes); `error_reported` keeps a
    failure from being reported to the moderators more than once."""

    __tablename__ = "feeds"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    every_s: Mapped[int] = mapped_column(Integer, nullable=False)
    options: Mapped[str | None] = mapped_column(Text)  # JSON: format, category level, currency, shop address
    channel_id: Mapped[int | None] = mapped_column(BigInteger)  # where failures are reported
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    running_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_reported: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class ImageValidatorRow(Base):
    """What a web server said about an image URL (ETag, Last-Modified) and the hash of what it sent:
    the next sync asks "changed since?" and a 304 costs no download and no embedding."""

    __tablename__ = "image_validators"

    url_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the URL
    url: Mapped[str] = mapped_column(Text, nullable=False)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class MemberPhotoRow(Base):
    """A photo a member posted and the bot answered, remembered as its feature vector only (never the
    picture): the catalogue it searched, the messages it lives in, what the bot predicted and the label
    the community gave it (a moderator's, or the predicted category once 👍 outnumber 👎)."""

    __tablename__ = "member_photos"
    __table_args__ = (
        Index("ix_member_photos_catalogue", "catalogue_id", "id"),
        Index("ix_member_photos_guild", "guild_id", "catalogue_id"),
        Index("ix_member_photos_photo_message", "guild_id", "photo_message_id"),
        Index("ix_member_photos_reply_message", "guild_id", "reply_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    catalogue_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # little-endian float32
    predicted: Mapped[str | None] = mapped_column(String(100))  # None: the bot was not sure
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    photo_message_id: Mapped[int | None] = mapped_column(BigInteger)  # the member's message
    reply_message_id: Mapped[int | None] = mapped_column(BigInteger)  # the bot's answer
    position: Mapped[int] = mapped_column(Integer, nullable=False)  # photo n (from 1) of the member's message
    adapted: Mapped[bool] = mapped_column(Boolean, nullable=False)  # counted in the domain state (not "nothing like this")
    label: Mapped[str | None] = mapped_column(String(100))
    label_source: Mapped[str | None] = mapped_column(String(20))  # "moderator" | "votes" | None
    labelled_by: Mapped[str | None] = mapped_column(String(100))
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class MemberVoteRow(Base):
    """One member's 👍 (+1) or 👎 (-1) on a remembered photo's predicted category; removing the
    reaction removes the row."""

    __tablename__ = "member_votes"

    photo_id: Mapped[int] = mapped_column(ForeignKey("member_photos.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    verdict: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class DomainStateRow(Base):
    """Per catalogue and model, the running statistics of members' photos (adapt.DomainState, bytes
    without pickle) that align a query with the catalogue's domain."""

    __tablename__ = "domain_states"

    catalogue_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class CatalogueVersionRow(Base):
    """SQLite only: bumped by every write to a catalogue's items, in the writing transaction. A process compares it
    with the version its loaded index reflects (catalogues.py); PostgreSQL's processes have the change feed."""

    __tablename__ = "catalogue_versions"

    catalogue_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)


class FitLeaseRow(Base):
    """Which process fits a catalogue's head in the background (fitlease.py): one per catalogue and model, held
    until `expires_at` and renewed while the fit runs, so that a head is fitted once for all processes."""

    __tablename__ = "fit_leases"

    catalogue_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
