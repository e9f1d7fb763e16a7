"""The sandbox's registries (users, guilds, channels, messages, files, commands) and the
world-building API tests use; changes made while bots are connected are dispatched to them."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .commands import CommandStore
from .files import StoredFile, guess_content_type
from .interactions import InteractionRecord
from .limits import ApiError, Violation
from .messages import Upload, attach_uploads, fill_message, read_body
from .permissions import DEFAULT_BOT_PERMISSIONS, DEFAULT_EVERYONE_PERMISSIONS, Intent
from .snowflakes import SnowflakeGenerator
from .state import (
    BotUser,
    Channel,
    ChannelType,
    Guild,
    Member,
    Message,
    Overwrite,
    Payload,
    Role,
    User,
)

if TYPE_CHECKING:
    from aiohttp import web

    from .gateway import Gateway
    from .router import RequestRecord


class World:
    """State shared by the REST API, the gateway and the test-facing facade."""

    gateway: Gateway
    base_url: str
    upload_limit: int
    request_limit: int

    def __init__(self) -> None:
        self.ids = SnowflakeGenerator()
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.files: dict[str, StoredFile] = {}
        self.commands = CommandStore(self.ids)
        self.interactions: dict[int, InteractionRecord] = {}
        #: Everything a real Discord would have refused or penalised (e.g. embeds it silently dropped), in order.
        self.violations: list[Violation] = []
        #: Deprecated calls Discord still accepts (e.g. finishing a deferral with a followup), in order.
        self.deprecations: list[Violation] = []
        self.unknown_routes: list[str] = []
        #: Every REST request a bot made, in order: method, route template, API path (``/webhooks/...``), status.
        self.requests: list[RequestRecord] = []
        #: ``(channel_id, user_id, monotonic time)`` for every typing trigger.
        self.typing: list[tuple[int, int, float]] = []
        self._changed = asyncio.Event()

    # -- change notification ---------------------------------------------------------------------
    def notify(self) -> None:
        """Wake every :meth:`wait_until` so it re-checks its predicate."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_until(
        self, predicate: Callable[[], Any], timeout: float, describe: Callable[[], str] | str = "condition"
    ) -> Any:
        """Return the first truthy ``predicate()``, re-checked on every state change (no polling)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = describe() if callable(describe) else describe
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def record_violation(self, kind: str, detail: str, route: str | None = None) -> None:
        self.violations.append(Violation(kind, detail, route=route))
        self.notify()

    def record_deprecation(self, kind: str, detail: str, route: str | None = None) -> None:
        self.deprecations.append(Violation(kind, detail, route=route))

    async def read_body(self, request: web.Request) -> tuple[Payload, list[Upload]]:
        """A request body within this sandbox's per-file and per-request size limits."""
        return await read_body(request, self.upload_limit, self.request_limit)

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    # -- users and bots --------------------------------------------------------------------------
    def create_user(self, name: str, *, global_name: str | None = None) -> User:
        user = User(self.ids.next(), name, global_name=global_name)
        self.users[user.id] = user
        return user

    def create_bot_user(
        self,
        name: str,
        *,
        permissions: int = DEFAULT_BOT_PERMISSIONS,
        enabled_intents: int = Intent.MESSAGE_CONTENT | Intent.GUILD_MEMBERS,
        owner: User | None = None,
    ) -> BotUser:
        """A bot account + application. ``permissions``: what its invite link grants in guilds;
        ``enabled_intents``: privileged intents switched on in the developer portal."""
        ident = self.ids.next()
        prefix = base64.b64encode(str(ident).encode()).decode().rstrip("=")
        stamp = base64.urlsafe_b64encode(secrets.token_bytes(4)).decode().rstrip("=")
        bot = BotUser(
            ident,
            name,
            bot=True,
            token=f"{prefix}.{stamp}.{secrets.token_urlsafe(27)}",
            owner=owner or self.create_user(f"{name}-owner"),
            invite_permissions=permissions,
            enabled_intents=enabled_intents,
        )
        self.users[bot.id] = bot
        return bot

    def bot_by_token(self, token: str) -> BotUser | None:
        return next((u for u in self.users.values() if isinstance(u, BotUser) and u.token == token), None)

    def bot_by_authorization(self, header: str) -> BotUser | None:
        return self.bot_by_token(header[4:]) if header.startswith("Bot ") else None

    @property
    def bots(self) -> list[BotUser]:
        return [u for u in self.users.values() if isinstance(u, BotUser)]

    # -- guilds ----------------------------------------------------------------------------------
    def create_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bots: Iterable[BotUser] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with an @everyone role and its owner; every bot created so far (or ``bots``)
        is invited with its invite permissions (a managed role, as Discord does). ``shard``
        ([shard_id, num_shards]): pick an id whose events go to that shard."""
        owner = owner or self.create_user(f"{name}-owner")
        guild = Guild(self.ids.next_on_shard(*shard) if shard else self.ids.next(), name, owner.id)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", everyone_permissions)
        self.guilds[guild.id] = guild
        self.add_member(guild, owner)
        for bot in self.bots if bots is None else bots:
            self.add_member(guild, bot)
        return guild

    def create_role(
        self, guild: Guild, name: str, *, permissions: int = 0, color: int = 0, hoist: bool = False, mentionable: bool = False
    ) -> Role:
        role = Role(
            self.ids.next(),
            guild.id,
            name,
            permissions,
            position=len(guild.roles),
            color=color,
            hoist=hoist,
            mentionable=mentionable,
        )
        guild.roles[role.id] = role
        self.gateway.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()}, guild_id=guild.id, intent=Intent.GUILDS
        )
        return role

    def create_text_channel(
        self,
        guild: Guild,
        name: str,
        *,
        topic: str | None = None,
        overwrites: dict[Role | User | Member, tuple[int, int]] | None = None,
    ) -> Channel:
        """``overwrites`` maps a role/user to ``(allow, deny)`` permission bits."""
        ows = []
        for target, (allow, deny) in (overwrites or {}).items():
            ident = target.user.id if isinstance(target, Member) else target.id
            ows.append(Overwrite(ident, 0 if isinstance(target, Role) else 1, allow, deny))
        channel = Channel(
            self.ids.next(), name, ChannelType.GUILD_TEXT, guild.id, position=len(guild.channels), topic=topic, overwrites=ows
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.gateway.dispatch("CHANNEL_CREATE", channel.payload(), guild_id=guild.id, intent=Intent.GUILDS)
        return channel

    def add_member(self, guild: Guild, user: User, *, roles: Iterable[Role] = (), nick: str | None = None) -> Member:
        """Join ``user`` to ``guild``; a bot also gets its managed role and a GUILD_CREATE."""
        role_ids = [r.id for r in roles]
        if isinstance(user, BotUser):
            managed = Role(
                self.ids.next(),
                guild.id,
                user.name,
                user.invite_permissions,
                position=len(guild.roles),
                managed=True,
                bot_id=user.id,
            )
            guild.roles[managed.id] = managed
            role_ids.append(managed.id)
        member = Member(user, guild.id, role_ids, nick)
        guild.members[user.id] = member
        for session in self.gateway.bot_sessions(user.id):
            if session.wants(guild.id, None):
                session.dispatch("GUILD_CREATE", self.gateway.guild_create(session, guild))
        others = {b.id for b in self.bots if b.id != user.id and b.id in guild.members}
        self.gateway.dispatch(
            "GUILD_MEMBER_ADD",
            {**member.payload(), "guild_id": str(guild.id)},
            guild_id=guild.id,
            intent=Intent.GUILD_MEMBERS,
            bot_ids=others,
        )
        return member

    def set_roles(self, guild: Guild, user: User, roles: Iterable[Role]) -> Member:
        member = guild.members[user.id]
        managed = [r for r in member.role_ids if guild.roles[r].managed]
        member.role_ids = managed + [r.id for r in roles]
        self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE", {**member.payload(), "guild_id": str(guild.id)}, guild_id=guild.id, intent=Intent.GUILD_MEMBERS
        )
        return member

    # -- permissions -----------------------------------------------------------------------------
    def bot_role(self, guild: Guild, bot: BotUser) -> Role:
        """The managed role Discord gave ``bot`` when it joined ``guild`` (its invite permissions)."""
        return next(r for r in guild.roles.values() if r.managed and r.bot_id == bot.id)

    def set_role_permissions(self, role: Role, permissions: int) -> Role:
        """Change a role's permissions (``guild.everyone`` for @everyone); dispatches GUILD_ROLE_UPDATE."""
        role.permissions = permissions
        data = {"guild_id": str(role.guild_id), "role": role.payload()}
        self.gateway.dispatch("GUILD_ROLE_UPDATE", data, guild_id=role.guild_id, intent=Intent.GUILDS)
        self.notify()
        return role

    def set_overwrite(self, channel: Channel, target: Role | User | Member, *, allow: int = 0, deny: int = 0) -> Channel:
        """Set (or, with ``allow=deny=0``, remove) the channel's overwrite for a role or member, the way
        a moderator edits channel permissions; dispatches CHANNEL_UPDATE."""
        ident = target.user.id if isinstance(target, Member) else target.id
        channel.overwrites = [o for o in channel.overwrites if o.target_id != ident]
        if allow or deny:
            channel.overwrites.append(Overwrite(ident, 0 if isinstance(target, Role) else 1, allow, deny))
        self.gateway.dispatch("CHANNEL_UPDATE", channel.payload(), guild_id=channel.guild_id, intent=Intent.GUILDS)
        self.notify()
        return channel

    def revoke_permissions(self, guild: Guild, user: User, permissions: int, *, channel: Channel | None = None) -> None:
        """Take ``permissions`` away from ``user`` (typically the bot): in ``channel`` through a member
        overwrite that denies them, else guild-wide by removing them from @everyone and every role the
        member has (as Discord computes it, a permission any of those grants is granted)."""
        if channel is not None:
            own = next((o for o in channel.overwrites if o.target_id == user.id and o.type == 1), None)
            allow, deny = (own.allow, own.deny) if own else (0, 0)
            self.set_overwrite(channel, user, allow=allow & ~permissions, deny=deny | permissions)
            return
        member = guild.members[user.id]
        for role in [guild.everyone, *(guild.roles[r] for r in member.role_ids)]:
            if role.permissions & permissions:
                self.set_role_permissions(role, role.permissions & ~permissions)

    def dm_channel(self, bot: User, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.type == ChannelType.DM and {u.id for u in channel.recipients} == {bot.id, user.id}:
                return channel
        channel = Channel(self.ids.next(), "", ChannelType.DM, recipients=[bot, user])
        self.channels[channel.id] = channel
        return channel

    # -- files -----------------------------------------------------------------------------------
    def store_bytes(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        channel_id: int | None = None,
        ephemeral_app: int | None = None,
        description: str | None = None,
    ) -> StoredFile:
        """Put a file on the sandbox CDN (channel attachment, or ephemeral slash-command upload)."""
        ident = self.ids.next()
        name = re.sub(r"[^\w.\-]", "", filename.replace(" ", "_")) or "unknown"
        path = (
            f"/attachments/{channel_id}/{ident}/{name}"
            if ephemeral_app is None
            else f"/ephemeral-attachments/{ephemeral_app}/{ident}/{name}"
        )
        stored = StoredFile(
            ident,
            name,
            bytes(data),
            guess_content_type(name, content_type),
            url=self.base_url + path,
            proxy_url=self.base_url + "/media" + path,
            description=description,
            ephemeral=ephemeral_app is not None,
        )
        self.files[path] = stored
        return stored

    def file_store(self, channel_id: int) -> Callable[[Upload, str | None], StoredFile]:
        return lambda up, desc: self.store_bytes(up.filename, up.data, up.content_type, channel_id=channel_id, description=desc)

    # -- messages --------------------------------------------------------------------------------
    def new_message(self, channel: Channel, author: User, payload: Payload, uploads: list[Upload], **fields: Any) -> Message:
        msg = Message(self.ids.next(), channel.id, channel.guild_id, author, **fields)
        attachments = attach_uploads(payload, uploads, self.file_store(channel.id))
        return fill_message(msg, payload, attachments, self.users.get)

    def resolve_reference(self, channel: Channel, ref: Any) -> tuple[Payload | None, Message | None]:
        if not ref:
            return None, None
        target = self.messages.get(int(ref.get("message_id") or 0)) if isinstance(ref, dict) else None
        if target is None or target.deleted or target.channel_id != channel.id:
            if isinstance(ref, dict) and ref.get("fail_if_not_exists") is False:
                return None, None
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "message_reference": {
                        "_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]
                    }
                },
            )
        data: Payload = {"type": 0, "message_id": str(target.id), "channel_id": str(channel.id)}
        if channel.guild_id:
            data["guild_id"] = str(channel.guild_id)
        return data, target

    def publish(self, msg: Message) -> None:
        """Store a new message and dispatch MESSAGE_CREATE (ephemeral ones stay private)."""
        self.messages[msg.id] = msg
        self.channels[msg.channel_id].last_message_id = msg.id
        if not msg.ephemeral:
            self.gateway.dispatch_message("MESSAGE_CREATE", msg)
        self.notify()

    def edited(self, msg: Message) -> None:
        if not msg.ephemeral:
            self.gateway.dispatch_message("MESSAGE_UPDATE", msg)
        self.notify()

    def deleted(self, msg: Message) -> None:
        msg.deleted = True
        if not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            intent = Intent.GUILD_MESSAGES if msg.guild_id else Intent.DIRECT_MESSAGES
            self.gateway.dispatch("MESSAGE_DELETE", data, guild_id=msg.guild_id, intent=intent)
        self.notify()

    @property
    def bot_messages(self) -> list[Message]:
        """Messages authored by bots (channel messages and interaction responses), oldest first."""
        return [m for m in self.messages.values() if m.author.bot]

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return next((r for r in self.interactions.values() if r.token == token), None)
