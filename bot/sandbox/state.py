"""World model of the sandbox: users, guilds, roles, channels, members and
messages, plus the Discord API v10 payloads built from them.

Nothing here does I/O; :mod:`bot.sandbox.server` owns the objects and dispatches events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .files import StoredFile
from .permissions import DEFAULT_BOT_PERMISSIONS, Intent
from .snowflakes import ChannelType, MessageFlag, iso, snowflake_time

Payload = dict[str, Any]


@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class BotUser(User):
    """A bot account; its application shares its id (as for every app created since 2022)."""

    token: str = ""
    owner: User | None = None
    invite_permissions: int = DEFAULT_BOT_PERMISSIONS
    #: Privileged intents switched on in the (imaginary) developer portal.
    enabled_intents: int = Intent.MESSAGE_CONTENT | Intent.GUILD_MEMBERS

    @property
    def application_id(self) -> int:
        return self.id

    @property
    def application_flags(self) -> int:
        flags = 0
        if self.enabled_intents & Intent.GUILD_PRESENCES:
            flags |= 1 << 13  # GATEWAY_PRESENCE_LIMITED
        if self.enabled_intents & Intent.GUILD_MEMBERS:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.enabled_intents & Intent.MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def me_payload(self) -> Payload:
        return {
            **self.payload(),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
            "premium_type": 0,
            "bio": "",
        }

    def application_payload(self) -> Payload:
        owner = self.owner.payload() if self.owner else self.payload()
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self.payload(),
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": owner,
            "team": None,
            "verify_key": f"{self.id:064x}"[-64:],
            "flags": self.application_flags,
            "hook": True,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": 0,
            "integration_types_config": {"0": {}},
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": str(self.invite_permissions)},
        }


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    bot_id: int | None = None
    color: int = 0
    hoist: bool = False
    mentionable: bool = False

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> Payload:
        data: Payload = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class Overwrite:
    target_id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> Payload:
        return {"id": str(self.target_id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(eq=False)
class Channel:
    id: int
    name: str
    type: int = ChannelType.GUILD_TEXT
    guild_id: int | None = None
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    recipients: list[User] = field(default_factory=list)
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self) -> Payload:
        if self.type == ChannelType.DM:
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": _opt(self.last_message_id),
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "topic": self.topic,
            "nsfw": False,
            "last_message_id": _opt(self.last_message_id),
            "rate_limit_per_user": 0,
            "parent_id": _opt(self.parent_id),
            "flags": 0,
        }


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def payload(self, *, members: list[Member], me: Member | None) -> Payload:
        """Full GUILD_CREATE payload (gateway guild object with the extra fields)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
            # GUILD_CREATE extras
            "joined_at": iso(me.joined_at if me else self.created_at),
            "large": len(self.members) > 250,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": [m.payload() for m in members],
            "presences": [],
            "threads": [],
            "channels": [c.payload() for c in self.channels.values()],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


def _opt(snowflake: int | None) -> str | None:
    return None if snowflake is None else str(snowflake)


@dataclass(eq=False)
class Message:
    """A message as the sandbox stores it (the latest version after edits)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[Payload] = field(default_factory=list)
    attachments: list[StoredFile] = field(default_factory=list)
    type: int = 0
    flags: int = 0
    message_reference: Payload | None = None
    referenced: Message | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: Payload | None = None
    components: list[Payload] = field(default_factory=list)
    mentions: list[User] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    reactions: dict[str, set[int]] = field(default_factory=dict)
    nonce: str | int | None = None
    tts: bool = False
    edited_at: dt.datetime | None = None
    deleted: bool = False
    #: Interaction this message answers (sandbox bookkeeping, not a Discord field).
    interaction_id: int | None = None

    @property
    def created_at(self) -> dt.datetime:
        return snowflake_time(self.id)

    @property
    def reference_id(self) -> int | None:
        ref = self.message_reference
        return int(ref["message_id"]) if ref and ref.get("message_id") else None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def files(self) -> dict[str, bytes]:
        """Uploaded attachments by file name."""
        return {a.filename: a.data for a in self.attachments}

    def payload(
        self, *, member: Member | None = None, gateway: bool = False, nested: bool = True, viewer: int | None = None
    ) -> Payload:
        """The message as ``viewer`` (a bot's user id) gets it: its reactions' ``me`` say whether it reacted."""
        data: Payload = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": self.type,
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at),
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [u.payload() for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_role_ids],
            "mention_channels": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "flags": self.flags,
            "components": self.components,
        }
        if self.reactions:
            data["reactions"] = [
                {
                    "emoji": {"id": None, "name": e},
                    "count": len(u),
                    "count_details": {"burst": 0, "normal": len(u)},
                    "me": viewer in u,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for e, u in self.reactions.items()
                if u
            ]
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
            ref = self.referenced
            if nested:
                data["referenced_message"] = None if ref is None or ref.deleted else ref.payload(nested=False)
        if gateway and self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
            if member is not None:
                data["member"] = member.payload(with_user=False)
        return data
