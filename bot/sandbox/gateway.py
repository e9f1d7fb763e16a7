"""The sandbox gateway: websocket sessions speaking Discord's gateway protocol (v10, JSON,
optional ``zlib-stream`` transport compression), with a heartbeat watchdog.

A session survives its connection unless the bot closed with 1000/1001, so RESUME replays
the events it missed, as on Discord.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .permissions import Intent
from .shards import SessionStarts, wanted_by
from .state import BotUser, Guild, Message, Payload

if TYPE_CHECKING:
    from .server import DiscordSandbox

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11
HISTORY_SIZE = 2000


def _dumps(payload: Payload) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class _ZlibStream:
    """One deflate context per connection, each frame ending with Z_SYNC_FLUSH (0000ffff)."""

    def __init__(self) -> None:
        self._ctx = zlib.compressobj()

    def __call__(self, text: str) -> bytes:
        return self._ctx.compress(text.encode()) + self._ctx.flush(zlib.Z_SYNC_FLUSH)


class _ZstdStream:
    def __init__(self) -> None:
        import zstandard  # only if discord.py asked for zstd

        self._flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._ctx = zstandard.ZstdCompressor().compressobj()

    def __call__(self, text: str) -> bytes:
        return self._ctx.compress(text.encode()) + self._ctx.flush(self._flush)


class GatewaySession:
    """An identified session: its bot, intents, sequence number and replayable history."""

    def __init__(self, bot: BotUser, intents: int, shard: tuple[int, int] | None) -> None:
        self.session_id = secrets.token_hex(16)
        self.bot, self.intents, self.shard = bot, intents, shard
        self.seq = 0
        self.history: deque[Payload] = deque(maxlen=HISTORY_SIZE)
        self.connection: GatewayConnection | None = None
        self.ready = False

    def wants(self, guild_id: int | None, intent: int | None) -> bool:
        """An event of this guild (None: a direct message) needing this intent, for this session's shard."""
        if intent is not None and not self.intents & intent:
            return False
        return wanted_by(self.shard, guild_id)

    def dispatch(self, event: str, data: Payload) -> None:
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.history.append(payload)
        if self.connection is not None:
            self.connection.enqueue(payload)


class GatewayConnection:
    """One websocket: ordered writer queue plus heartbeat bookkeeping."""

    def __init__(self, ws: web.WebSocketResponse, compressor: Callable[[str], bytes] | None) -> None:
        self.ws, self.compressor = ws, compressor
        self.session: GatewaySession | None = None
        self.queue: asyncio.Queue[Payload | None] = asyncio.Queue()
        self.last_beat = time.monotonic()
        self.beat = asyncio.Event()
        self.flagged = False
        self.heartbeats = 0
        self.writer_task: asyncio.Task[None] | None = None

    def enqueue(self, payload: Payload | None) -> None:
        self.queue.put_nowait(payload)

    async def writer(self) -> None:
        while (payload := await self.queue.get()) is not None:
            text = _dumps(payload)
            try:
                if self.compressor is not None:
                    await self.ws.send_bytes(self.compressor(text))
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


class Gateway:
    """Accepts websocket connections and routes dispatches to the sessions that should see them."""

    def __init__(self, sandbox: DiscordSandbox) -> None:
        self.sandbox = sandbox
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        self.max_gap = 0.0
        self.heartbeat_gaps: list[float] = []
        #: Query of every websocket handshake (``v``, ``encoding``, ``compress``), in order.
        self.handshakes: list[dict[str, str]] = []
        #: ``(session_id, kind)`` per successful IDENTIFY (``"identify"``) or RESUME (``"resume"``).
        self.logins: list[tuple[str, str]] = []
        #: Per bot id: its session start limit (spent by each IDENTIFY, reported by ``GET /gateway/bot``).
        self.session_starts: dict[int, SessionStarts] = {}

    def starts(self, bot: BotUser) -> SessionStarts:
        return self.session_starts.setdefault(bot.id, SessionStarts())

    # -- dispatch ------------------------------------------------------------------------------
    def dispatch(
        self,
        event: str,
        data: Payload | Callable[[GatewaySession], Payload | None],
        *,
        guild_id: int | None = None,
        intent: int | None = None,
        bot_ids: set[int] | None = None,
    ) -> None:
        """Send ``event`` to every live session of a bot in the guild (or in ``bot_ids``)."""
        guild = self.sandbox.guilds.get(guild_id) if guild_id is not None else None
        for session in list(self.sessions.values()):
            if not session.ready or not session.wants(guild_id, intent):
                continue
            if bot_ids is not None and session.bot.id not in bot_ids:
                continue
            if bot_ids is None and guild is not None and session.bot.id not in guild.members:
                continue
            payload = data(session) if callable(data) else data
            if payload is not None:
                session.dispatch(event, payload)

    def dispatch_message(self, event: str, message: Message) -> None:
        """MESSAGE_CREATE/UPDATE, honouring GUILD_MESSAGES/DIRECT_MESSAGES and MESSAGE_CONTENT."""
        guild = self.sandbox.guilds.get(message.guild_id) if message.guild_id else None
        member = guild.members.get(message.author.id) if guild else None
        channel = self.sandbox.channels[message.channel_id]
        intent = Intent.GUILD_MESSAGES if guild else Intent.DIRECT_MESSAGES
        dm_bots = None if guild else {u.id for u in channel.recipients}

        def build(session: GatewaySession) -> Payload:
            data = message.payload(member=member, gateway=True, viewer=session.bot.id)
            sees_content = (
                session.intents & Intent.MESSAGE_CONTENT
                or guild is None
                or message.author.id == session.bot.id
                or any(u.id == session.bot.id for u in message.mentions)
            )
            if not sees_content:
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
            return data

        self.dispatch(event, build, guild_id=message.guild_id, intent=intent, bot_ids=dm_bots)

    def guild_create(self, session: GatewaySession, guild: Guild) -> Payload:
        me = guild.members.get(session.bot.id)
        if session.intents & Intent.GUILD_PRESENCES:
            members = list(guild.members.values())
        else:  # Discord only sends the bot itself (and voice users) without presences
            members = [me] if me else []
        return guild.payload(members=members, me=me)

    def bot_sessions(self, bot_id: int) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.bot.id == bot_id and s.connection and s.ready]

    # -- connection handling --------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        self.handshakes.append({**query, "path": request.path})
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = query.get("compress")
        compressor: Callable[[str], bytes] | None = None
        try:
            if compress == "zlib-stream":
                compressor = _ZlibStream()
            elif compress == "zstd-stream":
                compressor = _ZstdStream()
        except ImportError:
            await ws.close(code=4000, message=b"zstd-stream unavailable")
            return ws
        if query.get("v") not in ("9", "10"):
            await ws.close(code=4012, message=b"Invalid API version")
            return ws
        if query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Only encoding=json is supported")
            return ws
        conn = GatewayConnection(ws, compressor)
        self.connections.add(conn)
        writer = conn.writer_task = asyncio.create_task(conn.writer())
        interval = self.sandbox.heartbeat_interval
        conn.enqueue({"op": HELLO, "d": {"heartbeat_interval": int(interval * 1000)}, "s": None, "t": None})
        watchdog = asyncio.create_task(self.watchdog(conn))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await self.close(conn, 4002, "Error while decoding payload.")
                    break
                await self.on_payload(conn, payload)
        finally:
            watchdog.cancel()
            conn.enqueue(None)
            await asyncio.gather(writer, watchdog, return_exceptions=True)
            self.connections.discard(conn)
            self.detach(conn, ws.close_code)
        return ws

    async def close(self, conn: GatewayConnection, code: int, reason: str) -> None:
        """Flush what is queued, then close with a gateway close code."""
        conn.enqueue(None)
        if conn.writer_task is not None:
            await asyncio.wait([conn.writer_task], timeout=5)
        await conn.ws.close(code=code, message=reason.encode())

    def detach(self, conn: GatewayConnection, close_code: int | None) -> None:
        session = conn.session
        if session is None or session.connection is not conn:
            return
        session.connection = None
        if close_code in (1000, 1001):  # a clean close ends the session, as on Discord
            self.sessions.pop(session.session_id, None)
        self.sandbox.notify()

    async def on_payload(self, conn: GatewayConnection, payload: Any) -> None:
        op = payload.get("op") if isinstance(payload, dict) else None
        data = payload.get("d") if isinstance(payload, dict) else None
        if op == HEARTBEAT:
            self.on_heartbeat(conn)
            conn.enqueue({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self.on_identify(conn, data or {})
        elif op == RESUME:
            await self.on_resume(conn, data or {})
        elif conn.session is None:
            await self.close(conn, 4003, "Not authenticated.")
        elif op == REQUEST_MEMBERS:
            self.on_request_members(conn.session, data or {})
        elif op in (PRESENCE, VOICE_STATE):
            pass
        else:
            await self.close(conn, 4001, "Unknown opcode.")

    def on_heartbeat(self, conn: GatewayConnection) -> None:
        now = time.monotonic()
        gap = now - conn.last_beat
        if conn.heartbeats:  # the first beat is measured from HELLO, as Discord does
            self.heartbeat_gaps.append(gap)
        self.max_gap = max(self.max_gap, gap)
        if gap > self.sandbox.heartbeat_interval + self.sandbox.heartbeat_grace and not conn.flagged:
            self.missed(conn, gap)
        conn.heartbeats += 1
        conn.last_beat, conn.flagged = now, False
        conn.beat.set()

    def missed(self, conn: GatewayConnection, gap: float) -> None:
        conn.flagged = True
        who = conn.session.bot.name if conn.session else "unidentified connection"
        self.sandbox.record_violation(
            "missed_heartbeat",
            f"missed heartbeat: {gap:.2f}s since last (interval {self.sandbox.heartbeat_interval:g}s, "
            f"grace {self.sandbox.heartbeat_grace:g}s) from {who}",
        )

    async def watchdog(self, conn: GatewayConnection) -> None:
        """Flag a connection whose next heartbeat is later than interval + grace."""
        limit = self.sandbox.heartbeat_interval + self.sandbox.heartbeat_grace
        while not conn.ws.closed:
            conn.beat.clear()
            timeout = max(0.0, conn.last_beat + limit - time.monotonic())
            try:
                await asyncio.wait_for(conn.beat.wait(), timeout)
            except TimeoutError:
                gap = time.monotonic() - conn.last_beat  # a beat may have landed in the same loop pass
                if gap > limit and not conn.flagged and not conn.ws.closed:
                    self.missed(conn, gap)
                    await conn.beat.wait()

    async def on_identify(self, conn: GatewayConnection, data: Payload) -> None:
        if conn.session is not None:
            return await self.close(conn, 4005, "Already authenticated.")
        bot = self.sandbox.bot_by_token(str(data.get("token", "")))
        if bot is None:
            return await self.close(conn, 4004, "Authentication failed.")
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            return await self.close(conn, 4013, "Invalid intent(s).")
        if intents & Intent.PRIVILEGED & ~bot.enabled_intents:
            return await self.close(conn, 4014, "Disallowed intent(s).")
        shard = data.get("shard")
        if shard is not None and not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            return await self.close(conn, 4010, "Invalid shard.")
        if not self.starts(bot).admit(shard[0] if shard else None, self.sandbox.identify_interval):
            conn.enqueue({"op": INVALID_SESSION, "d": False, "s": None, "t": None})  # too soon: IDENTIFY later
            return None
        if not self.starts(bot).spend():  # Discord resets the token of a bot that runs out
            self.sandbox.record_violation("session_start_limit", f"{bot.name} used up its {self.starts(bot).total} IDENTIFYs")
            return await self.close(conn, 4004, "Authentication failed.")
        session = GatewaySession(bot, intents, tuple(shard) if shard else None)
        self.sessions[session.session_id] = session
        conn.session, session.connection = session, conn
        guilds = [g for g in self.sandbox.guilds.values() if bot.id in g.members and session.wants(g.id, None)]
        ready: Payload = {
            "v": 10,
            "user": bot.me_payload(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.sandbox.resume_gateway_url,
            "private_channels": [],
            "application": {"id": str(bot.application_id), "flags": bot.application_flags},
        }
        if shard is not None:
            ready["shard"] = list(shard)
        session.dispatch("READY", ready)
        for guild in guilds:
            session.dispatch("GUILD_CREATE", self.guild_create(session, guild))
        session.ready = True
        self.logins.append((session.session_id, "identify"))
        self.sandbox.notify()

    async def on_resume(self, conn: GatewayConnection, data: Payload) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.bot.token != data.get("token"):
            conn.enqueue({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None and session.connection is not conn:
            old = session.connection
            session.connection = None
            asyncio.create_task(self.close(old, 4000, "Session resumed elsewhere."))
        seq = data.get("seq") or 0
        conn.session, session.connection = session, conn
        for payload in list(session.history):
            if payload["s"] > seq:
                conn.enqueue(payload)
        session.dispatch("RESUMED", {})
        self.logins.append((session.session_id, "resume"))
        self.sandbox.notify()

    def on_request_members(self, session: GatewaySession, data: Payload) -> None:
        guild = self.sandbox.guilds.get(int(data.get("guild_id", 0)))
        if guild is None or session.bot.id not in guild.members:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(u) for u in (data["user_ids"] if isinstance(data["user_ids"], list) else [data["user_ids"]])}
            members = [m for m in members if m.user.id in wanted]
        elif data.get("query"):
            q = str(data["query"]).lower()
            members = [m for m in members if m.user.name.lower().startswith(q) or (m.nick or "").lower().startswith(q)]
        elif not session.intents & Intent.GUILD_MEMBERS:
            members = []
        if data.get("limit"):
            members = members[: int(data["limit"])]
        chunk: Payload = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def reconnect_all(self) -> None:
        """Send op 7 RECONNECT to every connection; discord.py then RESUMEs."""
        for conn in list(self.connections):
            conn.enqueue({"op": RECONNECT, "d": None, "s": None, "t": None})

    async def shutdown(self) -> None:
        for conn in list(self.connections):
            await self.close(conn, 1001, "Sandbox stopping")
