"""Members' photos the bot answered, remembered as feature vectors only (never the picture), the votes
members cast on them with 👍 / 👎, the labels they carry, and each catalogue's domain state (adapt.py).

A photo's label is a moderator's, if any; else its predicted category once 👍 outnumber 👎 among distinct
members; else none. Bounded per catalogue: the newest `kept` unlabelled photos and the newest
`labels_kept` labelled ones stay, older ones are deleted (with their votes) in the transaction that
inserts or labels. Every write is one transaction, so a crash or `kill -9` keeps all of it or none: a
remembered photo and the domain state it moved commit together.

The async queries only, over the store's engine and sessions (like store.py); the in-memory caches
built on them live in catalogues.py. A change of labels is published to the other processes
(PostgreSQL) as a "labels" change of the catalogue, in the writing transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, case, delete, func, insert, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .adapt import WINDOW, AdaptDataError, DomainState, domain_from_bytes
from .changes import CHANNEL, Change
from .config import DEFAULT_GUILD
from .database import guarded
from .errors import PhotoNotFound
from .rows import audit_row, now
from .schema import DomainStateRow, MemberPhotoRow, MemberVoteRow
from .store import Store

log = logging.getLogger(__name__)

MODERATOR, VOTES = "moderator", "votes"  # label_source
REACTION = "reaction:"  # labelled_by of a moderator's 👍: "reaction:<user id>" (their removing it takes it back)


@dataclass(frozen=True)
class Photo:
    """A remembered photo as the facade needs it (no vector)."""

    id: int
    catalogue_id: int
    guild_id: int
    position: int
    predicted: str | None
    label: str | None
    label_source: str | None
    messages: tuple[int, ...] = ()  # the member's photo message and the bot's reply to it, as far as known


@dataclass(frozen=True)
class Touched:
    """What a vote or a label did: the photos of the message (by position), and whether any label changed."""

    photos: list[Photo]
    changed: bool
    labelled: int  # labelled photos the guild now has in the photos' catalogue


@dataclass(frozen=True)
class Counts:
    remembered: int
    labelled: int
    by_moderators: int
    thumbs_up: int
    thumbs_down: int


def encode(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def decode(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


def _photo(row: MemberPhotoRow) -> Photo:
    messages = tuple(m for m in (row.photo_message_id, row.reply_message_id) if m is not None)
    return Photo(row.id, row.catalogue_id, row.guild_id, row.position, row.predicted, row.label, row.label_source, messages)


@guarded
class MemberPhotos:
    """The member_photos, member_votes and domain_states tables. Collaborators pass it in."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.session = store.session

    async def _publish(self, s: AsyncSession, cid: int) -> None:
        """A "labels" change of catalogue `cid`, to the other processes when (and if) this transaction commits."""
        if self.store.database.kind == "postgresql":
            change = Change("labels", cid, origin=self.store.origin)
            await s.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": change.payload()})

    # -- remembering --------------------------------------------------------------------------------

    async def remember(
        self,
        cid: int,
        guild_id: int,
        model: str,
        vector: np.ndarray,
        predicted: str | None,
        *,
        kept: int,
        adapt: bool = True,
    ) -> tuple[int, DomainState | None]:
        """Remember one answered photo (its vector, never the picture), prune the catalogue's unlabelled
        photos to the newest `kept`, and (adapt) move the catalogue's domain state by it: one transaction.
        Returns the photo's id and the domain state after it (None when not adapted)."""
        vec = np.asarray(vector, np.float32).ravel()
        for attempt in range(3):
            try:
                return await self._remember(cid, guild_id, model, vec, predicted, kept, adapt)
            except IntegrityError:  # two processes created the catalogue's first domain state at once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _remember(
        self, cid: int, guild_id: int, model: str, vec: np.ndarray, predicted: str | None, kept: int, adapt: bool
    ) -> tuple[int, DomainState | None]:
        async with self.session() as s, s.begin():  # five statements: on the path of every answered photo
            pid = (
                await s.execute(
                    insert(MemberPhotoRow)
                    .values(
                        catalogue_id=cid,
                        guild_id=guild_id,
                        model=model,
                        dim=len(vec),
                        vector=encode(vec),
                        predicted=predicted,
                        position=1,
                        adapted=adapt,
                        created_at=now(),
                    )  # fmt: skip
                    .returning(MemberPhotoRow.id)
                )
            ).scalar_one()
            await self._prune(s, cid, guild_id, labelled=False, keep=kept)
            if not adapt:
                return pid, None
            row, state = await self._domain(s, cid, model, len(vec), lock=True, below=pid)
            state = state.update(vec)
            if row is None:
                s.add(DomainStateRow(catalogue_id=cid, model=model, count=state.count, state=state.to_bytes(), updated_at=now()))
            else:
                row.count, row.state, row.updated_at = state.count, state.to_bytes(), now()
            return pid, state

    @staticmethod
    async def _prune(s: AsyncSession, cid: int, guild_id: int, *, labelled: bool, keep: int) -> None:
        """Keep the guild's newest `keep` labelled (or unlabelled) photos of the catalogue; their votes go with them
        (cascade). Per guild: on the shared default catalogue one busy server must not push out another's."""
        which = MemberPhotoRow.label.is_not(None) if labelled else MemberPhotoRow.label.is_(None)
        scope = and_(MemberPhotoRow.catalogue_id == cid, MemberPhotoRow.guild_id == guild_id, which)
        edge = select(MemberPhotoRow.id).where(scope).order_by(MemberPhotoRow.id.desc()).offset(keep).limit(1).scalar_subquery()
        await s.execute(delete(MemberPhotoRow).where(scope, MemberPhotoRow.id <= edge))

    async def link(
        self, photo_ids: Sequence[int | None], *, guild_id: int, channel_id: int, photo_message_id: int, reply_message_id: int | None
    ) -> int:  # fmt: skip
        """The messages of remembered photos: photo n of the member's message is photo_ids[n - 1] (None: a
        photo of the message that was not remembered, e.g. unreadable; it keeps its place in the count).
        `reply_message_id` None: no reply was sent; the photos, never linked, are deleted (their trace in the
        domain state's running mean stays)."""
        done = 0
        async with self.session() as s, s.begin():
            if reply_message_id is None:
                unlinked = and_(MemberPhotoRow.guild_id == guild_id, MemberPhotoRow.reply_message_id.is_(None))
                ids = [pid for pid in photo_ids if pid is not None]
                return (await s.execute(delete(MemberPhotoRow).where(MemberPhotoRow.id.in_(ids), unlinked))).rowcount or 0  # type: ignore[attr-defined]
            for position, pid in enumerate(photo_ids, start=1):
                if pid is None:
                    continue
                result = await s.execute(
                    update(MemberPhotoRow)
                    .where(MemberPhotoRow.id == pid, MemberPhotoRow.guild_id == guild_id)
                    .values(
                        channel_id=channel_id,
                        photo_message_id=photo_message_id,
                        reply_message_id=reply_message_id,
                        position=position,
                    )  # fmt: skip
                )
                done += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return done

    # -- votes and labels ---------------------------------------------------------------------------

    @staticmethod
    async def _of_message(s: AsyncSession, guild_id: int, message_id: int, *, lock: bool = False) -> list[MemberPhotoRow]:
        q = (
            select(MemberPhotoRow)
            .where(
                MemberPhotoRow.guild_id == guild_id,
                (MemberPhotoRow.reply_message_id == message_id) | (MemberPhotoRow.photo_message_id == message_id),
            )
            .order_by(MemberPhotoRow.position, MemberPhotoRow.id)
        )
        return list((await s.execute(q.with_for_update() if lock else q)).scalars())

    async def photos(self, guild_id: int, message_id: int) -> list[Photo]:
        """The remembered photos of a member's message or of the bot's reply to it, photo 1 first."""
        async with self.session() as s:
            return [_photo(r) for r in await self._of_message(s, guild_id, message_id)]

    async def _labelled(self, s: AsyncSession, cid: int, guild_id: int) -> int:
        q = select(func.count()).where(
            MemberPhotoRow.catalogue_id == cid, MemberPhotoRow.guild_id == guild_id, MemberPhotoRow.label.is_not(None)
        )
        return int((await s.execute(q)).scalar_one())

    async def vote(
        self, guild_id: int, message_id: int, user_id: int, verdict: int, *, moderator: bool, labels_kept: int
    ) -> Touched | None:
        """A member's 👍 (+1), 👎 (-1) or its removal (0) on every remembered photo of the message; a
        moderator's 👍 labels them with their predicted category. None: no remembered photo there."""
        for attempt in range(3):
            try:
                return await self._vote(guild_id, message_id, user_id, verdict, moderator, labels_kept)
            except IntegrityError:  # the same member's other reaction inserted their vote first: read it again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _vote(
        self, guild_id: int, message_id: int, user_id: int, verdict: int, moderator: bool, labels_kept: int
    ) -> Touched | None:
        async with self.session() as s, s.begin():
            rows = await self._of_message(s, guild_id, message_id, lock=True)  # PostgreSQL: votes on a photo in turn
            if not rows:
                return None
            changed = False
            t = now()
            for row in rows:
                old = await s.get(MemberVoteRow, (row.id, user_id))
                if verdict == 0:
                    if old is not None:
                        await s.delete(old)
                elif old is None:
                    s.add(MemberVoteRow(photo_id=row.id, user_id=user_id, verdict=verdict, at=t))
                else:
                    old.verdict, old.at = verdict, t
            await s.flush()  # SQLite: the first write takes the database's write lock ...
            for row in rows:
                await s.refresh(row)  # ... so the labels read now are not older than another vote's commit
                by_reaction = f"{REACTION}{user_id}"
                if moderator and verdict > 0 and row.predicted is not None and row.label_source != MODERATOR:
                    row.label, row.label_source, row.labelled_by, row.labelled_at = row.predicted, MODERATOR, by_reaction, t
                    changed = True
                elif row.label_source == MODERATOR and row.labelled_by == by_reaction and verdict <= 0:
                    row.label_source = None  # the moderator took back their 👍: the votes decide again
                    changed = True
                changed |= await self._settle(s, row, t)
            cid = rows[0].catalogue_id
            if changed:
                await s.flush()
                await self._prune(s, cid, rows[0].guild_id, labelled=True, keep=labels_kept)
                await self._publish(s, cid)
            return Touched([_photo(r) for r in rows], changed, await self._labelled(s, cid, guild_id))

    @staticmethod
    async def _settle(s: AsyncSession, row: MemberPhotoRow, t: datetime) -> bool:
        """A photo without a moderator's label: its predicted category while 👍 outnumber 👎, else none."""
        if row.label_source == MODERATOR:
            return False
        up, down = (
            await s.execute(
                select(
                    func.coalesce(func.sum(case((MemberVoteRow.verdict > 0, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((MemberVoteRow.verdict < 0, 1), else_=0)), 0),
                ).where(MemberVoteRow.photo_id == row.id)
            )
        ).one()
        label = row.predicted if row.predicted is not None and int(up) > int(down) else None
        source = VOTES if label is not None else None
        if (row.label, row.label_source) == (label, source):
            return False
        row.label, row.label_source = label, source
        row.labelled_by, row.labelled_at = (None, None) if label is None else ("votes", t)
        return True

    async def set_label(self, photo_id: int, guild_id: int, category: str, actor: str, *, labels_kept: int) -> Touched:
        """A moderator's label for one remembered photo; audit-logged in the same transaction."""
        async with self.session() as s, s.begin():
            row = await s.get(MemberPhotoRow, photo_id, with_for_update=True)
            if row is None or row.guild_id != guild_id:
                raise PhotoNotFound("I don't remember that photo any more: it was just forgotten or pruned.")
            t = now()
            row.label, row.label_source, row.labelled_by, row.labelled_at = category, MODERATOR, actor, t
            s.add(audit_row(guild_id, actor, "label", None, photo=photo_id, message=row.photo_message_id, category=category))
            await s.flush()
            await self._prune(s, row.catalogue_id, guild_id, labelled=True, keep=labels_kept)
            await self._publish(s, row.catalogue_id)
            return Touched([_photo(row)], True, await self._labelled(s, row.catalogue_id, guild_id))

    # -- reading ------------------------------------------------------------------------------------

    @staticmethod
    def _lessons(cid: int, guild_id: int, model: str, carried: Collection[str]) -> tuple[Any, ...]:
        """The guild's labelled photos for catalogue `cid`: those labelled in it and, for the guild's own
        catalogue, those labelled in the shared one with a category it also has (`carried`)."""
        here = MemberPhotoRow.catalogue_id == cid
        if carried and cid == guild_id != DEFAULT_GUILD:
            here = or_(here, and_(MemberPhotoRow.catalogue_id == DEFAULT_GUILD, MemberPhotoRow.label.in_(sorted(carried))))
        return here, MemberPhotoRow.guild_id == guild_id, MemberPhotoRow.model == model, MemberPhotoRow.label.is_not(None)

    async def labelled(
        self, cid: int, guild_id: int, model: str, carried: Collection[str] = ()
    ) -> tuple[np.ndarray, list[str]] | None:
        """The guild's labelled photos for the catalogue (vectors, labels; see _lessons), oldest first; None when none."""
        q = (
            select(MemberPhotoRow.dim, MemberPhotoRow.vector, MemberPhotoRow.label)
            .where(*self._lessons(cid, guild_id, model, carried))
            .order_by(MemberPhotoRow.id)
        )
        async with self.session() as s:
            rows = (await s.execute(q)).all()
        if not rows:
            return None
        vectors = await asyncio.to_thread(decode, [r.vector for r in rows], rows[0].dim)  # up to 10,000 x dim
        return vectors, [str(r.label) for r in rows]

    async def label_fingerprint(self, cid: int, guild_id: int, model: str, carried: Collection[str] = ()) -> str:
        """Changes whenever the guild's labels for the catalogue change ("" when it has none)."""
        row, label = MemberPhotoRow, MemberPhotoRow.label
        q = select(func.count(), func.sum(row.id), func.max(row.labelled_at), func.sum(func.length(label)))
        q = q.where(*self._lessons(cid, guild_id, model, carried))
        async with self.session() as s:
            n, total, last, length = (await s.execute(q)).one()
        if not n:
            return ""
        said = f"{n}:{total}:{last.isoformat() if last else ''}:{length}"
        return hashlib.sha1(said.encode()).hexdigest()[:16]

    async def counts(self, guild_id: int) -> Counts:
        """In one statement, so at one moment (a vote committing meanwhile is in every count or in none)."""
        photo, vote = MemberPhotoRow, MemberVoteRow

        def how_many(cond: Any) -> Any:
            return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

        photos = select(func.count(), how_many(photo.label.is_not(None)), how_many(photo.label_source == MODERATOR))
        votes = select(how_many(vote.verdict > 0), how_many(vote.verdict < 0)).join(photo, photo.id == vote.photo_id)
        p, v = (q.where(photo.guild_id == guild_id).subquery() for q in (photos, votes))
        async with self.session() as s:
            remembered, labelled, moderated, up, down = (await s.execute(select(p, v).join_from(p, v, true()))).one()
        return Counts(int(remembered), int(labelled), int(moderated), int(up), int(down))

    # -- forgetting ---------------------------------------------------------------------------------

    async def forget(self, guild_id: int, actor: str, model: str) -> tuple[int, set[int]]:
        """Delete every remembered photo of the guild (and their votes), audit it, and rebuild the domain
        state of each catalogue they were in from the photos that remain: one transaction. Returns how
        many were deleted and those catalogues."""
        async with self.session() as s, s.begin():
            mine = select(MemberPhotoRow.id).where(MemberPhotoRow.guild_id == guild_id)
            cids = {
                int(c)
                for (c,) in await s.execute(
                    select(MemberPhotoRow.catalogue_id).where(MemberPhotoRow.guild_id == guild_id).distinct()
                )
            }
            await s.execute(delete(MemberVoteRow).where(MemberVoteRow.photo_id.in_(mine)))
            gone = await s.execute(delete(MemberPhotoRow).where(MemberPhotoRow.guild_id == guild_id))
            n = int(gone.rowcount or 0)  # type: ignore[attr-defined]
            s.add(audit_row(guild_id, actor, "forget-photos", None, photos=n))
            states = (await s.execute(select(DomainStateRow).where(DomainStateRow.catalogue_id.in_(cids)))).scalars()
            for row in list(states):  # what remains, so the forgotten photos leave no trace in it
                state = await self._rebuild(s, row.catalogue_id, row.model, 0)
                if state is None:
                    await s.delete(row)
                else:
                    await self._save_domain(s, row.catalogue_id, row.model, state)
            for cid in cids:
                await self._publish(s, cid)
        return n, cids

    # -- the domain state (adapt.py) ----------------------------------------------------------------

    async def domain(self, cid: int, model: str, dim: int) -> DomainState:
        """The catalogue's domain state for `model`; rebuilt from its remembered photos when missing or
        unreadable (with a warning), never a crash."""
        async with self.session() as s:
            return (await self._domain(s, cid, model, dim, lock=False))[1]

    async def _domain(
        self, s: AsyncSession, cid: int, model: str, dim: int, *, lock: bool, below: int | None = None
    ) -> tuple[DomainStateRow | None, DomainState]:
        """(the saved row, the state it holds, or else rebuilt from the photos with an id under `below`)."""
        q = select(DomainStateRow).where(DomainStateRow.catalogue_id == cid, DomainStateRow.model == model)
        row = (await s.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
        if row is not None:
            try:
                state = domain_from_bytes(row.state)
                if state.dim == dim:
                    return row, state
                log.warning("catalogue %s: saved domain state has dimension %d, not %d; rebuilding it", cid, state.dim, dim)
            except AdaptDataError as e:
                log.warning("catalogue %s: saved domain state unreadable (%s); rebuilding it from remembered photos", cid, e)
        return row, await self._rebuild(s, cid, model, dim, below) or DomainState.empty(dim)

    async def _rebuild(self, s: AsyncSession, cid: int, model: str, dim: int, below: int | None = None) -> DomainState | None:
        """The domain state of the catalogue's newest WINDOW remembered photos that adapted it (those with
        an id under `below`, when given), None when there are none."""
        q = (
            select(MemberPhotoRow.dim, MemberPhotoRow.vector)
            .where(MemberPhotoRow.catalogue_id == cid, MemberPhotoRow.model == model, MemberPhotoRow.adapted.is_(True))
            .order_by(MemberPhotoRow.id.desc())
            .limit(WINDOW)
        )
        if below is not None:
            q = q.where(MemberPhotoRow.id < below)
        rows = [r for r in (await s.execute(q)).all() if dim == 0 or r.dim == dim]
        if not rows:
            return None
        return DomainState.empty(rows[0].dim).update(decode([r.vector for r in reversed(rows)], rows[0].dim))

    async def _save_domain(self, s: AsyncSession, cid: int, model: str, state: DomainState) -> None:
        await s.merge(DomainStateRow(catalogue_id=cid, model=model, count=state.count, state=state.to_bytes(), updated_at=now()))
