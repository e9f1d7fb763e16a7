"""Interactions: building INTERACTION_CREATE payloads from the synced command schema, and
the interaction record that collects the bot's callback, original response and followups."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .files import StoredFile
from .permissions import channel_permissions
from .state import Channel, Guild, Member, Message, Payload, Role, User

if TYPE_CHECKING:
    from .router import RequestRecord
    from .server import DiscordSandbox

# interaction types and callback types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE},
    PING: {PONG},
}

#: ``(filename, data)`` or ``(filename, data, content_type)`` for an attachment option.
FileSpec = tuple[str, bytes] | tuple[str, bytes, str]


class CommandNotAvailable(Exception):
    """The invoking user could not use this command in Discord's client (unknown or not permitted)."""


@dataclass(eq=False)
class InteractionRecord:
    """Everything that happened to one interaction, as seen by Discord."""

    id: int
    token: str
    type: int
    application_id: int
    user: User
    guild_id: int | None
    channel_id: int
    payload: Payload
    name: str | None = None
    dispatched_at: float = field(default_factory=time.monotonic)
    callback_type: int | None = None
    callback_delay: float | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    source_message: Message | None = None
    modal: Payload | None = None
    choices: list[Payload] | None = None
    updated: bool = False
    failed: str | None = None
    sandbox: DiscordSandbox | None = field(default=None, repr=False)

    @property
    def acknowledged(self) -> bool:
        return self.callback_type is not None

    @property
    def messages(self) -> list[Message]:
        """Original response (if any) followed by the followups, in their current state."""
        return ([self.original] if self.original is not None else []) + self.followups

    @property
    def files(self) -> dict[str, bytes]:
        return {name: data for m in self.messages for name, data in m.files.items()}

    @property
    def embeds(self) -> list[Payload]:
        return [e for m in self.messages for e in m.embeds]

    @property
    def requests(self) -> list[RequestRecord]:
        """The REST requests made with this interaction's token (callback, followups, ``@original``), in
        order; ``[r.endpoint for r in rec.requests]`` reads like ``["POST /interactions/{interaction_id}/
        {token}/callback", "PATCH /webhooks/{app_id}/{token}/messages/@original"]``."""
        assert self.sandbox is not None
        return [r for r in self.sandbox.requests if self.token in r.path.split("/")]

    @property
    def done(self) -> bool:
        """The user sees a final answer (or the interaction failed for good)."""
        if self.failed:
            return True
        if self.callback_type in (CHANNEL_MESSAGE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL, PONG):
            return True
        if self.callback_type == DEFERRED_CHANNEL_MESSAGE:
            return self.original is not None and not self.original.loading
        return self.callback_type == DEFERRED_UPDATE and self.updated

    async def wait_done(self, timeout: float = 10.0) -> InteractionRecord:
        """Wait until :attr:`done`; raise ``TimeoutError`` describing the state otherwise."""
        assert self.sandbox is not None
        await self.sandbox.wait_until(lambda: self.done, timeout, lambda: f"interaction {self.describe()}")
        return self

    async def wait_for_followups(self, count: int, timeout: float = 10.0) -> list[Message]:
        assert self.sandbox is not None
        await self.sandbox.wait_until(
            lambda: len(self.followups) >= count, timeout, lambda: f"{count} followups on {self.describe()}"
        )
        return self.followups

    def describe(self) -> str:
        state = self.failed or (f"callback type {self.callback_type}" if self.acknowledged else "not acknowledged")
        return f"{self.name or self.id} ({state}, {len(self.followups)} followups)"


def new_token() -> str:
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)


def find_command(commands: list[Payload], path: str) -> tuple[Payload, list[str]]:
    parts = path.split()
    for cmd in commands:
        if cmd["name"] == parts[0] and cmd.get("type", 1) == 1:
            return cmd, parts[1:]
    raise CommandNotAvailable(f"no synced slash command named {parts[0]!r}")


class OptionBuilder:
    """Turns Python values into interaction options + ``resolved`` data, validated against the schema."""

    def __init__(
        self,
        sandbox: DiscordSandbox,
        guild: Guild | None,
        channel: Channel,
        user: User,
        application_id: int,
        focused: str | None = None,
    ) -> None:
        self.sandbox, self.guild, self.channel, self.user = sandbox, guild, channel, user
        self.application_id, self.focused = application_id, focused
        self.resolved: dict[str, dict[str, Payload]] = {}

    def build(self, schema: list[Payload], sub_path: list[str], values: Mapping[str, Any], where: str) -> list[Payload]:
        if sub_path:
            name, rest = sub_path[0], sub_path[1:]
            for opt in schema:
                if opt["name"] == name and opt["type"] in (1, 2):
                    return [
                        {
                            "name": name,
                            "type": opt["type"],
                            "options": self.build(opt.get("options", []), rest, values, f"{where} {name}"),
                        }
                    ]
            raise CommandNotAvailable(f"/{where} has no subcommand (group) {name!r}")
        if any(o["type"] in (1, 2) for o in schema):
            raise CommandNotAvailable(f"/{where} needs a subcommand: " + ", ".join(o["name"] for o in schema))
        known = {o["name"] for o in schema}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"/{where} has no option(s) {sorted(unknown)}; it has {sorted(known)}")
        out = []
        for opt in schema:
            if opt["name"] not in values:
                if opt.get("required") and self.focused is None:  # autocomplete: options not typed yet are left out
                    raise ValueError(f"/{where}: option {opt['name']!r} is required")
                continue
            entry = {"name": opt["name"], "type": opt["type"], "value": self.value(opt, values[opt["name"]])}
            if opt["name"] == self.focused:
                entry["focused"], entry["value"] = True, str(values[opt["name"]])
            out.append(entry)
        return out

    def value(self, opt: Payload, value: Any) -> Any:
        kind, name = opt["type"], opt["name"]
        if kind == 3:
            if not isinstance(value, str):
                raise ValueError(f"option {name!r} takes a string")
            if not opt.get("min_length", 0) <= len(value) <= opt.get("max_length", 6000):
                raise ValueError(f"option {name!r}: length out of range")
        elif kind in (4, 10):
            wrong = isinstance(value, bool) or not isinstance(value, int if kind == 4 else (int, float))
            if wrong:
                raise ValueError(f"option {name!r} takes {'an integer' if kind == 4 else 'a number'}")
            low, high = opt.get("min_value"), opt.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"option {name!r}: {value} out of range")
        elif kind == 5:
            if not isinstance(value, bool):
                raise ValueError(f"option {name!r} takes a bool")
        elif kind in (6, 8, 9):
            return self.mentionable(opt, value)
        elif kind == 7:
            return self.channel_value(opt, value)
        elif kind == 11:
            return str(self.attachment(value).id)
        choices = opt.get("choices")
        if choices and value not in [c["value"] for c in choices] and name != self.focused:
            raise ValueError(f"option {name!r}: {value!r} is not one of the choices")
        return value

    def mentionable(self, opt: Payload, value: Any) -> str:
        if isinstance(value, Member):
            value = value.user
        if isinstance(value, Role) and opt["type"] in (8, 9):
            self.resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if isinstance(value, User) and opt["type"] in (6, 9):
            self.resolved.setdefault("users", {})[str(value.id)] = value.payload()
            member = self.guild.members.get(value.id) if self.guild else None
            if member is not None and self.guild is not None:
                perms = channel_permissions(self.guild, member, self.channel)
                self.resolved.setdefault("members", {})[str(value.id)] = member.payload(with_user=False, permissions=perms)
            return str(value.id)
        raise ValueError(f"option {opt['name']!r} takes a {'role' if opt['type'] == 8 else 'user'}")

    def channel_value(self, opt: Payload, value: Any) -> str:
        if not isinstance(value, Channel):
            raise ValueError(f"option {opt['name']!r} takes a sandbox Channel")
        types = opt.get("channel_types")
        if types and value.type not in types:
            raise ValueError(f"option {opt['name']!r} accepts channel types {types}")
        data = {
            k: v
            for k, v in value.payload().items()
            if k
            in (
                "id",
                "name",
                "type",
                "parent_id",
                "guild_id",
                "topic",
                "nsfw",
                "position",
                "rate_limit_per_user",
                "last_message_id",
                "flags",
            )
        }
        data["permissions"] = "0"
        if self.guild is not None:
            invoker = self.guild.members.get(self.user.id)
            if invoker is not None:
                data["permissions"] = str(channel_permissions(self.guild, invoker, value))
        self.resolved.setdefault("channels", {})[str(value.id)] = data
        return str(value.id)

    def attachment(self, value: Any) -> StoredFile:
        if isinstance(value, StoredFile):
            stored = value
        else:
            if not (isinstance(value, tuple) and len(value) in (2, 3)):
                raise ValueError("attachment options take (filename, bytes[, content_type])")
            stored = self.sandbox.store_bytes(
                value[0], value[1], value[2] if len(value) == 3 else None, ephemeral_app=self.application_id
            )
            if stored.size > self.sandbox.upload_limit:
                raise ValueError(
                    f"{stored.filename} is {stored.size} bytes; Discord's client refuses uploads over {self.sandbox.upload_limit}"
                )
        self.resolved.setdefault("attachments", {})[str(stored.id)] = stored.payload()
        return stored


def interaction_payload(
    sandbox: DiscordSandbox,
    *,
    interaction_id: int,
    token: str,
    type: int,
    application_id: int,
    data: Payload,
    guild: Guild | None,
    channel: Channel,
    user: User,
    locale: str,
    message: Message | None = None,
) -> Payload:
    """The INTERACTION_CREATE ``d`` object, with every field discord.py reads."""
    payload: Payload = {
        "id": str(interaction_id),
        "application_id": str(application_id),
        "type": type,
        "data": data,
        "channel_id": str(channel.id),
        "channel": channel.payload(),
        "token": token,
        "version": 1,
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": sandbox.upload_limit,
    }
    if guild is not None:
        member = guild.members[user.id]
        bot_member = guild.members.get(application_id)
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            context=0,
            authorizing_integration_owners={"0": str(guild.id)},
            member=member.payload(permissions=channel_permissions(guild, member, channel)),
            app_permissions=str(channel_permissions(guild, bot_member, channel) if bot_member else 0),
        )
    else:
        payload.update(user=user.payload(), context=1, authorizing_integration_owners={"0": "0"}, app_permissions=str(0))
    if message is not None:
        payload["message"] = message.payload(gateway=False)
    return payload


def check_default_permissions(
    command: Payload, guild: Guild | None, user: User, channel: Channel, checker: Callable[[Guild, Member, Channel], int]
) -> None:
    """Discord hides a command from members lacking its ``default_member_permissions``."""
    required = command.get("default_member_permissions")
    if guild is None or required in (None, ""):
        return
    needed = int(required)
    have = checker(guild, guild.members[user.id], channel)
    if have & needed != needed:
        raise CommandNotAvailable(f"{user.name} lacks default_member_permissions={needed} for /{command['name']}")
