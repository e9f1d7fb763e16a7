"""``DiscordSandbox``: a local fake of Discord (gateway + REST + CDN on 127.0.0.1) that the
real, unmodified discord.py connects to, plus the API tests and demos drive it with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from . import reactions
from .gateway import Gateway
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    CommandNotAvailable,
    FileSpec,
    InteractionRecord,
    OptionBuilder,
    check_default_permissions,
    find_command,
    interaction_payload,
    new_token,
)
from .limits import DEFAULT_REQUEST_LIMIT, DEFAULT_UPLOAD_LIMIT, ApiError, validate_message
from .messages import Upload, find_component
from .permissions import channel_permissions
from .rest import RestApi
from .router import Router
from .state import BotUser, Channel, ChannelType, Guild, Message, Payload, User
from .webhooks import WebhookApi
from .world import World

# A 1x1 PNG for default avatars (cdn /embed/avatars/N.png).
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class DiscordConfig:
    """Points discord.py's REST base, gateway URL and CDN base at the sandbox; ``restore()`` undoes it.
    Usable as a context manager."""

    def __init__(self, api_url: str, gateway_url: str, cdn_url: str) -> None:
        import discord.asset
        import discord.gateway
        import discord.http
        import yarl

        self._targets = [
            (discord.http.Route, "BASE", api_url),
            (discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(gateway_url)),
            (discord.asset.Asset, "BASE", cdn_url),
        ]
        self._saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in self._targets]
        for cls, name, value in self._targets:
            setattr(cls, name, value)

    def restore(self) -> None:
        for cls, name, value in self._saved:
            setattr(cls, name, value)
        self._saved = []

    def __enter__(self) -> DiscordConfig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


class DiscordSandbox(World):
    """A Discord stand-in on loopback. Build a world (users, guilds, channels, roles), start a
    discord.py bot with a token from :meth:`create_bot_user`, then act as users and inspect
    :attr:`violations`, :attr:`bot_messages` and interaction records."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 41.25,
        heartbeat_grace: float = 1.0,
        interaction_ack_timeout: float = 3.0,
        followup_ttl: float = 900.0,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        request_limit: int = DEFAULT_REQUEST_LIMIT,
        host: str = "127.0.0.1",
        identify_interval: float = 0.0,
    ) -> None:
        super().__init__()
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_grace = heartbeat_grace
        self.interaction_ack_timeout = interaction_ack_timeout
        self.followup_ttl = followup_ttl
        self.upload_limit = upload_limit  # per file
        self.request_limit = request_limit  # per request
        self.host = host
        #: Seconds between two IDENTIFYs of a bot (per ``max_concurrency`` bucket): 5.0 on Discord; 0 = no limit.
        self.identify_interval = identify_interval
        #: ``shards`` in ``GET /gateway/bot``; None: Discord's rule (about one shard per 1,000 guilds).
        self.recommended_shards: int | None = None
        #: Seconds the CDN takes to serve an attachment (a slow network), and the most it served at once.
        self.cdn_delay_s = 0.0
        self.cdn_peak = 0
        self._cdn_now = 0
        self.port = 0
        self.gateway = Gateway(self)
        self._runner: web.AppRunner | None = None
        self._config: DiscordConfig | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> DiscordSandbox:
        router = Router(self)
        RestApi(self, router)
        WebhookApi(self, router)
        app = web.Application(client_max_size=2 * max(self.request_limit, self.upload_limit) + 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        app.router.add_route("*", r"/api/v{version:\d+}/{tail:.*}", router.handle)
        app.router.add_get("/embed/avatars/{index}.png", self._avatar)
        app.router.add_get("/{path:(?:media/)?(?:ephemeral-)?attachments/.*}", self._cdn)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self.gateway.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.restore_discord()

    async def __aenter__(self) -> DiscordSandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:  # type: ignore[override]
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/resume"

    def configure_discord(self) -> DiscordConfig:
        """Point discord.py (class attributes only, no source edits) at this sandbox."""
        self.restore_discord()
        self._config = DiscordConfig(self.api_url, self.gateway_url, self.base_url)
        return self._config

    def restore_discord(self) -> None:
        if self._config is not None:
            self._config.restore()
            self._config = None

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/media")
        stored = self.files.get(path)
        if stored is None:
            self.unknown_routes.append(f"GET {request.path}")
            return web.Response(status=404, text="404: Not Found")
        self._cdn_now += 1
        self.cdn_peak = max(self.cdn_peak, self._cdn_now)
        try:
            await asyncio.sleep(self.cdn_delay_s)
        finally:
            self._cdn_now -= 1
        return web.Response(body=stored.data, content_type=stored.content_type)

    async def _avatar(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_PIXEL, content_type="image/png")

    # -- observation -----------------------------------------------------------------------------
    @property
    def max_heartbeat_gap(self) -> float:
        """Largest gap between heartbeats seen so far, counting the open gap of live sessions."""
        now = time.monotonic()
        live = [now - c.last_beat for c in self.gateway.connections if c.session is not None]
        return max([self.gateway.max_gap, *live])

    def violations_of(self, kind: str) -> list[Any]:
        return [v for v in self.violations if v.kind == kind]

    async def wait_for_ready(
        self, bot: BotUser | None = None, *, shard: tuple[int, int] | None = None, timeout: float = 10.0
    ) -> None:
        """Wait until ``bot`` (or any bot) has an identified session (on ``shard``: [shard_id, num_shards],
        if given) that got its GUILD_CREATEs."""
        await self.wait_until(
            lambda: any(
                s.connection and s.ready and (bot is None or s.bot.id == bot.id) and (shard is None or s.shard == shard)
                for s in self.gateway.sessions.values()
            ),
            timeout,
            f"a bot session{f' on shard {shard}' if shard else ''} to be READY",
        )

    async def wait_for_commands(
        self, bot: BotUser, *names: str, guild: Guild | None = None, timeout: float = 10.0
    ) -> list[Payload]:
        """Wait until ``bot`` synced commands with these top-level names (global or ``guild``)."""

        def synced() -> list[Payload] | None:
            cmds = self.commands.list(bot.application_id, guild.id if guild else None)
            return cmds if {c["name"] for c in cmds} >= set(names) else None

        return await self.wait_until(synced, timeout, f"commands {names} to be synced")

    async def wait_for_bot_message(self, predicate: Callable[[Message], bool] | None = None, *, timeout: float = 10.0) -> Message:
        """First (already recorded or future) bot message matching ``predicate``, in its latest state."""

        def find() -> Message | None:
            return next((m for m in self.bot_messages if not m.deleted and (predicate is None or predicate(m))), None)

        return await self.wait_until(find, timeout, "a matching bot message")

    async def reconnect_all(self) -> None:
        """Ask every connected bot to reconnect (gateway op 7); discord.py resumes its session."""
        await self.gateway.reconnect_all()

    # -- acting as users -------------------------------------------------------------------------
    def _check_author(self, channel: Channel, author: User) -> None:
        if channel.type == ChannelType.DM:
            if all(u.id != author.id for u in channel.recipients):
                raise PermissionError(f"{author.name} is not in this DM")
            return
        guild = self.guilds[channel.guild_id]  # type: ignore[index]
        if author.id not in guild.members:
            raise PermissionError(f"{author.name} is not a member of {guild.name}")

    async def post_message(
        self,
        channel: Channel,
        author: User,
        content: str = "",
        *,
        attachments: Iterable[FileSpec] = (),
        embeds: Iterable[Payload] = (),
        reply_to: Message | None = None,
    ) -> Message:
        """A user posts a message (files are served by the CDN); dispatches MESSAGE_CREATE."""
        self._check_author(channel, author)
        uploads = [Upload(i, f[0], f[1], f[2] if len(f) == 3 else "application/octet-stream") for i, f in enumerate(attachments)]
        payload: Payload = {"content": content, "embeds": list(embeds)}
        validate_message(payload, len(uploads))
        ref = {"message_id": str(reply_to.id)} if reply_to else None
        reference, referenced = self.resolve_reference(channel, ref)
        msg = self.new_message(
            channel, author, payload, uploads, type=19 if reference else 0, message_reference=reference, referenced=referenced
        )
        self.publish(msg)
        await asyncio.sleep(0)
        return msg

    async def edit_user_message(self, message: Message, content: str) -> Message:
        message.content, message.edited_at = content, self.now()
        self.edited(message)
        await asyncio.sleep(0)
        return message

    async def delete_message(self, message: Message) -> None:
        self.deleted(message)
        await asyncio.sleep(0)

    async def react(self, message: Message, user: User, emoji: str) -> bool:
        """``user`` adds ``emoji`` (``"👍"``, or ``"name:id"``) to ``message``, with Discord's permission
        rules (see :mod:`.reactions`): PermissionError when Discord would refuse. Dispatches
        MESSAGE_REACTION_ADD; False (and no event) when the user had already reacted so."""
        try:
            added = reactions.add(self, message, user, emoji)
        except ApiError as e:
            raise PermissionError(e.detail) from None
        await asyncio.sleep(0)
        return added

    async def unreact(self, message: Message, user: User, emoji: str) -> bool:
        """``user`` removes their ``emoji`` reaction; dispatches MESSAGE_REACTION_REMOVE (False: there was none)."""
        removed = reactions.remove(self, message, user, emoji)
        await asyncio.sleep(0)
        return removed

    def commands_for(self, bot: BotUser, guild: Guild | None = None) -> list[Payload]:
        return self.commands.list(bot.application_id, guild.id if guild else None)

    def _resolve_command(self, guild: Guild | None, path: str, application: BotUser | None) -> tuple[BotUser, Payload, list[str]]:
        bots = [application] if application else [b for b in self.bots if guild is None or b.id in guild.members]
        found = []
        for bot in bots:
            scopes = ([guild.id] if guild else []) + [None]
            for scope in scopes:
                try:
                    cmd, rest = find_command(self.commands.list(bot.application_id, scope), path)
                except CommandNotAvailable:
                    continue
                found.append((bot, cmd, rest))
                break
        if not found:
            raise CommandNotAvailable(f"no bot here has synced /{path.split()[0]}")
        if len(found) > 1:
            raise ValueError(f"several bots have /{path.split()[0]}; pass application=")
        if guild is not None and found[0][0].id not in guild.members:
            raise CommandNotAvailable(f"{found[0][0].name} is not in {guild.name}")
        return found[0]

    async def invoke_slash(
        self,
        guild: Guild | None,
        channel: Channel,
        user: User,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        attachments: Mapping[str, FileSpec] | None = None,
        application: BotUser | None = None,
        locale: str = "en-US",
        focused: str | None = None,
    ) -> InteractionRecord:
        """Use ``/command`` (``"catalog add"`` for subcommands) as ``user``, built from the synced
        schema. Values: str/int/float/bool, sandbox User/Member/Role/Channel, and
        ``(filename, bytes[, content_type])`` for attachment options. ``focused`` sends an
        autocomplete interaction for that option instead."""
        self._check_author(channel, user)
        bot, cmd, sub_path = self._resolve_command(guild, command, application)
        check_default_permissions(cmd, guild, user, channel, channel_permissions)
        builder = OptionBuilder(self, guild, channel, user, bot.application_id, focused)
        values = {**(options or {}), **(attachments or {})}
        opts = builder.build(cmd.get("options") or [], sub_path, values, cmd["name"])
        data: Payload = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": opts}
        if builder.resolved:
            data["resolved"] = builder.resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        kind = AUTOCOMPLETE if focused else APPLICATION_COMMAND
        return await self._dispatch_interaction(kind, bot, data, guild, channel, user, locale, command)

    async def autocomplete(
        self, guild: Guild | None, channel: Channel, user: User, command: str, options: Mapping[str, Any], focused: str, **kw: Any
    ) -> InteractionRecord:
        """Typing into an autocomplete option: the record's ``choices`` hold the bot's answer."""
        return await self.invoke_slash(guild, channel, user, command, options, focused=focused, **kw)

    async def click_component(
        self, message: Message, user: User, custom_id: str, *, values: list[str] | None = None, locale: str = "en-US"
    ) -> InteractionRecord:
        """Press a button / choose in a select menu of a bot message."""
        component = find_component(message.components, custom_id)
        if component is None:
            raise ValueError(f"message {message.id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise CommandNotAvailable(f"component {custom_id!r} is disabled")
        channel = self.channels[message.channel_id]
        self._check_author(channel, user)
        bot = self.users[message.application_id or message.author.id]
        assert isinstance(bot, BotUser)
        data: Payload = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = values
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT, bot, data, guild, channel, user, locale, custom_id, source=message
        )

    async def _dispatch_interaction(
        self,
        kind: int,
        bot: BotUser,
        data: Payload,
        guild: Guild | None,
        channel: Channel,
        user: User,
        locale: str,
        name: str,
        source: Message | None = None,
    ) -> InteractionRecord:
        sessions = [s for s in self.gateway.bot_sessions(bot.id) if s.wants(guild.id if guild else None, None)]
        if not sessions:
            raise RuntimeError(f"{bot.name} has no connected gateway session")
        ident, token = self.ids.next(), new_token()
        payload = interaction_payload(
            self,
            interaction_id=ident,
            token=token,
            type=kind,
            application_id=bot.application_id,
            data=data,
            guild=guild,
            channel=channel,
            user=user,
            locale=locale,
            message=source,
        )
        rec = InteractionRecord(
            ident,
            token,
            kind,
            bot.application_id,
            user,
            guild.id if guild else None,
            channel.id,
            payload,
            name=name,
            source_message=source,
            sandbox=self,
        )
        self.interactions[ident] = rec
        sessions[0].dispatch("INTERACTION_CREATE", payload)
        rec.dispatched_at = time.monotonic()
        await asyncio.sleep(0)
        return rec
