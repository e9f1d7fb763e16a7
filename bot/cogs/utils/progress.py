"""One progress message, edited at most once per `interval` seconds, whatever the update rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import discord

from ... import render
from .errors import token_expired
from .respond import respond

log = logging.getLogger(__name__)


class ThrottledEditor:
    """`update(text)` may be called from synchronous callbacks as often as you like; the latest text
    is written by at most one edit per interval. `finish(text)` waits for that edit, then writes last.
    `close()` (in a `finally`) cancels an edit still pending, so an error never orphans its task.
    Once the interaction token has expired (`expired`), edits stop: they could only fail."""

    def __init__(self, edit: Callable[[str], Awaitable[object]], interval: float = 1.0, *, shown: str | None = None) -> None:
        """`shown`: the text the message was just sent with (the next edit waits a full interval)."""
        self._edit = edit
        self.interval = interval
        self._pending: str | None = None
        self._shown = shown
        self._last = time.monotonic() if shown is not None else 0.0
        self._task: asyncio.Task[None] | None = None
        self.edits = 0
        self.expired = False

    def update(self, text: str) -> None:
        if self.expired:
            return
        self._pending = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush(), name="progress-edit")

    async def _flush(self) -> None:
        while True:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            text, self._pending = self._pending, None
            if text is None or text == self._shown:
                return
            await self._write(text)

    async def _write(self, text: str) -> None:
        if self.expired:
            return
        self._last = time.monotonic()
        try:
            await self._edit(text)
            self._shown = text
            self.edits += 1
        except discord.HTTPException as e:  # a lost progress edit is not worth failing the import
            if token_expired(e):
                self.expired = True
                log.info("progress message can no longer be edited (the interaction token expired)")
            else:
                log.warning("progress edit failed: %s", e)

    async def finish(self, text: str | None = None) -> None:
        self._pending = None  # the running flush (if any) ends after its current wait or edit
        if self._task is not None:
            await self._task
        if text is not None:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._write(text)

    async def abandon(self, text: str) -> None:
        """The work was cancelled (the bot is stopping): drop a pending edit and write `text` at once."""
        await self.close()
        await self._write(text)

    async def close(self) -> None:
        """Cancel an edit still pending (after an error or a cancellation) and wait for it to end."""
        self._pending = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])


async def progress_message(interaction: discord.Interaction, first: str, interval: float) -> ThrottledEditor:
    """Show `first` in the deferred response and return the editor of that one message (progress, then
    the summary)."""
    await interaction.edit_original_response(content=first)
    return ThrottledEditor(lambda text: interaction.edit_original_response(content=text), interval, shown=first)


async def report(interaction: discord.Interaction, editor: ThrottledEditor, reply: render.Reply, what: str) -> None:
    """The final summary, unless the interaction token expired meanwhile (it lives 15 minutes): the work
    is saved then, only its report can't be shown."""
    if not editor.expired:
        try:
            await respond(interaction, reply)
            return
        except discord.HTTPException as e:
            if not token_expired(e):
                raise
    log.info("%s outlived its interaction", what)
