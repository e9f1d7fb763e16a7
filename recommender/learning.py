"""Learning from the community: what the facade does with members' photos, their 👍 / 👎 and moderators'
labels. Composed into the Recommender (engine.py), which delegates to it in one line per method.

The queries are community.py's (one transaction each); the in-memory state that uses them (the labelled
photos a guild's category vote hears, the head fitted on them, the domain state) is catalogues.py's,
told here whenever labels or remembered photos change.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence

import numpy as np

from .catalogues import Catalogues
from .community import MemberPhotos
from .config import Settings
from .errors import BadOption, DatabaseUnavailable, PhotoNotFound
from .records import CommunityStats, Feedback
from .store import Store

log = logging.getLogger(__name__)


class Community:
    def __init__(self, photos: MemberPhotos, catalogues: Catalogues, store: Store, settings: Settings) -> None:
        self.photos = photos
        self.catalogues = catalogues
        self.store = store
        self.settings = settings
        self.model = catalogues.model
        self._categories: dict[int, tuple[int, list[str]]] = {}  # catalogue -> (its index revision, names)

    async def remember(self, cid: int, guild_id: int, vector: np.ndarray, predicted: str | None, *, adapt: bool) -> int | None:
        """Remember an answered photo (its vector only); adapt: it also moves the catalogue's domain state.
        None when the database is away: the member still gets the answer, it is only not remembered."""
        try:
            pid, state = await self.photos.remember(
                cid, guild_id, self.model, vector, predicted, kept=self.settings.member_photos_kept, adapt=adapt
            )
        except DatabaseUnavailable as e:
            log.warning("a member's photo was answered but not remembered: %s", e)
            return None
        self.catalogues.remembered(cid, state)
        return pid

    async def link_reply(
        self, photo_ids: Sequence[int | None], guild_id: int, channel_id: int, photo_message_id: int, reply_message_id: int | None
    ) -> None:
        await self.photos.link(
            photo_ids,
            guild_id=guild_id,
            channel_id=channel_id,
            photo_message_id=photo_message_id,
            reply_message_id=reply_message_id,
        )

    async def react(self, guild_id: int, message_id: int, user_id: int, verdict: int, moderator: bool) -> Feedback | None:
        if verdict not in (-1, 0, 1):
            raise BadOption("A verdict is +1 (👍), -1 (👎) or 0 (the reaction was removed).")
        touched = await self.photos.vote(
            guild_id, message_id, user_id, verdict, moderator=moderator, labels_kept=self.settings.member_labels_kept
        )
        if touched is None:
            return None
        if touched.changed:
            self.catalogues.labels_changed(touched.photos[0].catalogue_id, guild_id)
        return Feedback(len(touched.photos), touched.photos[0].label, touched.labelled)

    async def vote_messages(self, guild_id: int, message_id: int) -> list[int]:
        """The messages a vote on `message_id` counts on (the member's photo message and the bot's reply), [] for
        a message no remembered photo belongs to."""
        return sorted({m for p in await self.photos.photos(guild_id, message_id) for m in p.messages})

    async def label_photo(self, guild_id: int, message_id: int, category: str, actor: str, photo: int) -> Feedback:
        photos = await self.photos.photos(guild_id, message_id)
        if not photos:
            raise PhotoNotFound(
                "I don't remember that photo: I only remember photos I answered in this server (features, never the "
                f"picture), the last {self.settings.member_photos_kept} of them, and none was forgotten since."
            )
        count = max(p.position for p in photos)
        if not 1 <= photo <= count:
            raise BadOption(f"That message has {count} photo{'s' if count != 1 else ''}: photo must be 1 to {count}.")
        target = next((p for p in photos if p.position == photo), None)
        if target is None:
            raise PhotoNotFound(f"I don't remember photo {photo} of that message (I could not read it, so I did not answer it).")
        name = await self._category(target.catalogue_id, category)
        touched = await self.photos.set_label(target.id, guild_id, name, actor, labels_kept=self.settings.member_labels_kept)
        self.catalogues.labels_changed(target.catalogue_id, guild_id)
        return Feedback(1, name, touched.labelled)

    async def _category(self, cid: int, category: str) -> str:
        """The catalogue's own spelling of `category`, or BadOption naming the closest ones."""
        names = {c.lower(): c for c in await self.store.category_counts(cid)}
        said = category.strip().lower()
        if said in names:
            return names[said]
        close = [names[c] for c in difflib.get_close_matches(said, list(names), n=3, cutoff=0.5)]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BadOption(f"{category.strip()!r} is not one of this catalogue's categories.{hint}")

    async def categories(self, guild_id: int, message_id: int | None = None) -> list[str]:
        """The categories of the catalogue a remembered message was answered from (else of the one the guild
        searches now), read again only when that catalogue changed (autocomplete asks per keystroke)."""
        photos = await self.photos.photos(guild_id, message_id) if message_id is not None else []
        cid = photos[0].catalogue_id if photos else await self.catalogues.catalogue_for(guild_id)
        await self.catalogues.index(cid)
        revision = self.catalogues.state(cid).revision  # the loaded index changes with every change of the catalogue
        known = self._categories.get(cid)
        if known is None or known[0] != revision:
            known = self._categories[cid] = (revision, sorted(await self.store.category_counts(cid), key=str.lower))
        return list(known[1])

    async def stats(self, guild_id: int) -> CommunityStats:
        counts = await self.photos.counts(guild_id)
        state = await self.catalogues.domain(await self.catalogues.catalogue_for(guild_id))
        return CommunityStats(
            counts.remembered, counts.labelled, counts.by_moderators, counts.thumbs_up, counts.thumbs_down, state.count,
            self.settings.adaptation,
        )  # fmt: skip

    async def forget(self, guild_id: int, actor: str) -> int:
        """Delete the guild's remembered photos (audit-logged); the heads and domain states they taught follow."""
        n, cids = await self.photos.forget(guild_id, actor, self.model)
        for cid in cids:
            self.catalogues.labels_changed(cid, guild_id)
        log.info("guild %s: %d remembered member photos forgotten by %s", guild_id, n, actor)
        return n
