"""REST API route handlers under ``/api/v10``: users, gateway, application, commands, guilds and
channel/message routes. The router lives in :mod:`.router`; interaction callbacks and webhooks in
:mod:`.webhooks`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import reactions
from .limits import (
    ApiError,
    empty_message,
    is_empty,
    missing_access,
    missing_permissions,
    not_found,
    validate_message,
)
from .messages import apply_edit, edit_leaves_empty
from .permissions import Intent, Perm, channel_permissions
from .router import Call, Router
from .shards import recommended_shards
from .state import Channel, ChannelType, Message, Payload

if TYPE_CHECKING:
    from .server import DiscordSandbox


class RestApi:
    """Route handlers for everything but interactions/webhooks."""

    def __init__(self, sandbox: DiscordSandbox, router: Router) -> None:
        self.sb = sandbox
        r, a = router.add, "/applications/{app_id}"
        r("GET", "/users/@me", self.get_me)
        r("GET", "/users/{user_id}", self.get_user)
        r("POST", "/users/@me/channels", self.create_dm)
        r("GET", "/gateway", self.get_gateway, auth=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        for scope in ("", "/guilds/{guild_id}"):
            r("GET", f"{a}{scope}/commands", self.list_commands)
            r("PUT", f"{a}{scope}/commands", self.put_commands)
            r("POST", f"{a}{scope}/commands", self.post_command)
            r("GET", f"{a}{scope}/commands/{{command_id}}", self.get_command)
            r("PATCH", f"{a}{scope}/commands/{{command_id}}", self.patch_command)
            r("DELETE", f"{a}{scope}/commands/{{command_id}}", self.delete_command)
        r("GET", f"{a}/guilds/{{guild_id}}/commands/permissions", self.command_permissions)
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_roles)
        r("GET", "/guilds/{guild_id}/members", self.list_members)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        c = "/channels/{channel_id}"
        r("GET", c, self.get_channel)
        r("GET", f"{c}/messages", self.list_messages)
        r("POST", f"{c}/messages", self.create_message)
        r("GET", f"{c}/messages/{{message_id}}", self.get_message)
        r("PATCH", f"{c}/messages/{{message_id}}", self.edit_message)
        r("DELETE", f"{c}/messages/{{message_id}}", self.delete_message)
        r("POST", f"{c}/typing", self.typing)
        r("GET", f"{c}/messages/{{message_id}}/reactions/{{emoji}}", self.reaction_users)
        r("PUT", f"{c}/messages/{{message_id}}/reactions/{{emoji}}/@me", self.add_reaction)
        r("DELETE", f"{c}/messages/{{message_id}}/reactions/{{emoji}}/@me", self.remove_reaction)

    # -- users / gateway / application ---------------------------------------------------------
    async def get_me(self, call: Call) -> Any:
        return call.me.me_payload()

    async def get_user(self, call: Call) -> Any:
        user = self.sb.users.get(call.id("user_id"))
        if user is None:
            raise not_found("User", 10013)
        return user.payload()

    async def create_dm(self, call: Call) -> Any:
        body, _ = await self.sb.read_body(call.request)
        user = self.sb.users.get(int(body.get("recipient_id", 0)))
        if user is None:
            raise not_found("User", 10013)
        return self.sb.dm_channel(call.me, user).payload()

    async def get_gateway(self, call: Call) -> Any:
        return {"url": self.sb.gateway_url}

    async def get_gateway_bot(self, call: Call) -> Any:
        guilds = sum(call.me.id in g.members for g in self.sb.guilds.values())
        return {
            "url": self.sb.gateway_url,
            "shards": self.sb.recommended_shards or recommended_shards(guilds),
            "session_start_limit": self.sb.gateway.starts(call.me).payload(),
        }

    async def get_application(self, call: Call) -> Any:
        return call.me.application_payload()

    # -- application commands ------------------------------------------------------------------
    def scope(self, call: Call) -> tuple[int, int | None]:
        if call.id("app_id") != call.me.application_id:
            raise missing_access(f"application {call.params['app_id']} is not {call.me.name}'s")
        guild_id = call.id("guild_id") if "guild_id" in call.params else None
        if guild_id is not None:
            self.guild_for(call, guild_id)
        return call.me.application_id, guild_id

    async def list_commands(self, call: Call) -> Any:
        return self.sb.commands.list(*self.scope(call))

    async def put_commands(self, call: Call) -> Any:
        app_id, guild_id = self.scope(call)
        body = await call.request.json()
        result = self.sb.commands.overwrite(app_id, guild_id, body)
        self.sb.notify()
        return result

    async def post_command(self, call: Call) -> Any:
        app_id, guild_id = self.scope(call)
        result = self.sb.commands.upsert(app_id, guild_id, await call.request.json())
        self.sb.notify()
        return result

    async def get_command(self, call: Call) -> Any:
        return self.sb.commands.get(*self.scope(call), call.id("command_id"))

    async def patch_command(self, call: Call) -> Any:
        return self.sb.commands.edit(*self.scope(call), call.id("command_id"), await call.request.json())

    async def delete_command(self, call: Call) -> Any:
        self.sb.commands.delete(*self.scope(call), call.id("command_id"))

    async def command_permissions(self, call: Call) -> Any:
        self.scope(call)
        return []

    # -- guilds ----------------------------------------------------------------------------------
    def guild_for(self, call: Call, guild_id: int | None = None) -> Any:
        guild = self.sb.guilds.get(guild_id if guild_id is not None else call.id("guild_id"))
        if guild is None:
            raise not_found("Guild", 10004)
        if call.me.id not in guild.members:
            raise missing_access(f"{call.me.name} is not in guild {guild.name!r}")
        return guild

    async def get_guild(self, call: Call) -> Any:
        guild = self.guild_for(call)
        data = guild.payload(members=[], me=guild.members[call.me.id])
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
        ):
            data.pop(key, None)
        if call.request.query.get("with_counts") in ("true", "1"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return data

    async def get_guild_channels(self, call: Call) -> Any:
        return [c.payload() for c in self.guild_for(call).channels.values()]

    async def get_roles(self, call: Call) -> Any:
        return [r.payload() for r in self.guild_for(call).roles.values()]

    async def list_members(self, call: Call) -> Any:
        guild = self.guild_for(call)
        if not call.me.enabled_intents & Intent.GUILD_MEMBERS:
            raise missing_access("listing members needs the GUILD_MEMBERS privileged intent")
        after = int(call.request.query.get("after", 0))
        limit = min(int(call.request.query.get("limit", 1)), 1000)
        members = sorted((m for m in guild.members.values() if m.user.id > after), key=lambda m: m.user.id)
        return [m.payload() for m in members[:limit]]

    async def get_member(self, call: Call) -> Any:
        member = self.guild_for(call).members.get(call.id("user_id"))
        if member is None:
            raise not_found("Member", 10007)
        return member.payload()

    # -- channels and messages -------------------------------------------------------------------
    def channel_for(self, call: Call, need: int = 0) -> Channel:
        channel = self.sb.channels.get(call.id("channel_id"))
        if channel is None:
            raise not_found("Channel", 10003)
        if channel.type == ChannelType.DM:
            if all(u.id != call.me.id for u in channel.recipients):
                raise missing_access(f"{call.me.name} is not in DM channel {channel.id}")
            return channel
        guild = self.sb.guilds[channel.guild_id]  # type: ignore[index]
        member = guild.members.get(call.me.id)
        perms = channel_permissions(guild, member, channel) if member else 0
        if not perms & Perm.VIEW_CHANNEL:
            raise missing_access(f"{call.me.name} cannot view #{channel.name}")
        if perms & need != need:
            missing = [n for n, v in vars(Perm).items() if isinstance(v, int) and v & need & ~perms and n != "ALL"]
            raise missing_permissions(f"{call.me.name} lacks {', '.join(missing)} in #{channel.name}")
        return channel

    def message_for(self, call: Call, channel: Channel) -> Message:
        msg = self.sb.messages.get(call.id("message_id"))
        if msg is None or msg.channel_id != channel.id or msg.deleted or msg.ephemeral:
            raise not_found("Message", 10008)
        return msg

    async def get_channel(self, call: Call) -> Any:
        return self.channel_for(call).payload()

    async def list_messages(self, call: Call) -> Any:
        channel = self.channel_for(call)
        if channel.guild_id and not self._can(call, channel, Perm.READ_MESSAGE_HISTORY):
            return []
        q = call.request.query
        limit = max(1, min(int(q.get("limit", 50)), 100))
        msgs = [m for m in self.sb.messages.values() if m.channel_id == channel.id and not m.deleted and not m.ephemeral]
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            pivot = int(q["around"])
            older = [m for m in msgs if m.id <= pivot][-(limit // 2 + 1) :]
            msgs = older + [m for m in msgs if m.id > pivot][: limit - len(older)]
        else:
            msgs = msgs[-limit:]
        return [m.payload(viewer=call.me.id) for m in reversed(msgs)]

    def _can(self, call: Call, channel: Channel, perm: int) -> bool:
        guild = self.sb.guilds[channel.guild_id]  # type: ignore[index]
        return bool(channel_permissions(guild, guild.members[call.me.id], channel) & perm)

    def strip_embeds(self, call: Call, channel: Channel, payload: Payload) -> tuple[Payload, str]:
        """Without EMBED_LINKS in a guild channel, Discord drops the embeds of a bot's message (a message
        left with nothing else is then refused with 50006). Returns the body and what was dropped, if any."""
        embeds = payload.get("embeds")
        if not embeds or channel.guild_id is None or self._can(call, channel, Perm.EMBED_LINKS):
            return payload, ""
        return {**payload, "embeds": []}, f"{len(embeds)} embed(s) dropped: {call.me.name} lacks EMBED_LINKS in #{channel.name}"

    async def create_message(self, call: Call) -> Any:
        channel = self.channel_for(call, Perm.SEND_MESSAGES)
        payload, uploads = await self.sb.read_body(call.request)
        validate_message(payload, len(uploads))
        payload, dropped = self.strip_embeds(call, channel, payload)
        if dropped and is_empty(payload, len(uploads)):
            raise empty_message(f"{dropped}, and the message has nothing else")
        if uploads and channel.guild_id and not self._can(call, channel, Perm.ATTACH_FILES):
            raise missing_permissions(f"{call.me.name} lacks ATTACH_FILES in #{channel.name}")
        reference, referenced = self.sb.resolve_reference(channel, payload.get("message_reference"))
        if reference and channel.guild_id and not self._can(call, channel, Perm.READ_MESSAGE_HISTORY):
            raise missing_permissions(f"replying needs READ_MESSAGE_HISTORY in #{channel.name}")
        msg = self.sb.new_message(
            channel, call.me, payload, uploads, type=19 if reference else 0, message_reference=reference, referenced=referenced
        )
        self.sb.publish(msg)
        if dropped:
            self.sb.record_violation("embeds_dropped", f"{dropped} (message {msg.id} sent without them)", call.route)
        return msg.payload(viewer=call.me.id)

    async def get_message(self, call: Call) -> Any:
        channel = self.channel_for(call, Perm.READ_MESSAGE_HISTORY)
        return self.message_for(call, channel).payload(viewer=call.me.id)

    async def edit_message(self, call: Call) -> Any:
        channel = self.channel_for(call)
        msg = self.message_for(call, channel)
        payload, uploads = await self.sb.read_body(call.request)
        if msg.author.id != call.me.id and set(payload) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        validate_message(payload, len(uploads), existing_attachments=len(msg.attachments), creating=False)
        payload, dropped = self.strip_embeds(call, channel, payload)
        if edit_leaves_empty(msg, payload, len(uploads)):
            raise empty_message(f"editing message {msg.id} would leave it empty" + (f" ({dropped})" if dropped else ""))
        apply_edit(msg, payload, uploads, self.sb.file_store(channel.id), self.sb.users.get)
        self.sb.edited(msg)
        if dropped:
            self.sb.record_violation("embeds_dropped", f"{dropped} (edit of message {msg.id})", call.route)
        return msg.payload(viewer=call.me.id)

    async def delete_message(self, call: Call) -> Any:
        channel = self.channel_for(call)
        msg = self.message_for(call, channel)
        if msg.author.id != call.me.id and channel.guild_id and not self._can(call, channel, Perm.MANAGE_MESSAGES):
            raise missing_permissions(f"deleting others' messages needs MANAGE_MESSAGES in #{channel.name}")
        self.sb.deleted(msg)

    async def typing(self, call: Call) -> Any:
        channel = self.channel_for(call, Perm.SEND_MESSAGES)
        self.sb.typing.append((channel.id, call.me.id, time.monotonic()))

    async def reaction_users(self, call: Call) -> Any:
        channel = self.channel_for(call, Perm.READ_MESSAGE_HISTORY)
        q = call.request.query
        try:
            after, limit = int(q.get("after", 0)), int(q.get("limit", 25))
        except ValueError:
            raise ApiError(400, 50035, "Invalid Form Body") from None
        if not 1 <= limit <= 100:  # Discord refuses, it does not clamp
            raise ApiError(
                400, 50035, "Invalid Form Body", errors={"limit": {"_errors": [{"code": "NUMBER_TYPE_MAX", "message": "1-100"}]}}
            )
        found = reactions.users(
            self.sb, self.message_for(call, channel), reactions.emoji_key(call.params["emoji"]), after=after, limit=limit
        )
        return [u.payload() for u in found]

    async def add_reaction(self, call: Call) -> Any:
        channel = self.channel_for(call)
        reactions.add(self.sb, self.message_for(call, channel), call.me, reactions.emoji_key(call.params["emoji"]))

    async def remove_reaction(self, call: Call) -> Any:
        channel = self.channel_for(call)
        reactions.remove(self.sb, self.message_for(call, channel), call.me, reactions.emoji_key(call.params["emoji"]))
