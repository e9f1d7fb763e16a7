"""A local Discord sandbox for testing the real, unmodified discord.py bot offline.

Typical use::

    async with DiscordSandbox(heartbeat_interval=1.0) as sandbox:
        sandbox.configure_discord()              # discord.py now talks to 127.0.0.1
        bot_user = sandbox.create_bot_user("lookalike")
        guild = sandbox.create_guild("Shop A")   # existing bots are invited (shard=(1, 2): an id on shard 1 of 2)
        channel = sandbox.create_text_channel(guild, "photos")
        alice = sandbox.create_user("alice"); sandbox.add_member(guild, alice)
        task = asyncio.create_task(bot.start(bot_user.token))
        ...
        await sandbox.post_message(channel, alice, attachments=[("a.jpg", data, "image/jpeg")])
        reply = await sandbox.wait_for_bot_message(lambda m: m.reference_id == msg.id)
        await sandbox.react(reply, alice, "👍")  # MESSAGE_REACTION_ADD (unreact: _REMOVE), Discord's permission rules
        inter = await sandbox.invoke_slash(guild, channel, alice, "similar", {"image": ("a.jpg", data)})
        await inter.wait_done()
        assert [r.endpoint for r in inter.requests][-1] == "PATCH /webhooks/{app_id}/{token}/messages/@original"
        sandbox.revoke_permissions(guild, bot_user, Perm.EMBED_LINKS, channel=channel)  # or guild-wide
        assert not sandbox.violations      # everything Discord would refuse (or silently drop)
        assert not sandbox.deprecations    # deprecated calls Discord still accepts

``sandbox.requests`` records every REST request (method, route template, API path, status).
"""

from .files import StoredFile
from .interactions import CommandNotAvailable, InteractionRecord
from .limits import DEFAULT_REQUEST_LIMIT, DEFAULT_UPLOAD_LIMIT, ApiError, Violation
from .permissions import DEFAULT_BOT_PERMISSIONS, DEFAULT_EVERYONE_PERMISSIONS, Intent, Perm
from .router import RequestRecord
from .server import DiscordConfig, DiscordSandbox
from .shards import SessionStarts, shard_of
from .state import BotUser, Channel, Guild, Member, Message, MessageFlag, Role, User

__all__ = [
    "ApiError",
    "BotUser",
    "Channel",
    "CommandNotAvailable",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "DEFAULT_REQUEST_LIMIT",
    "DEFAULT_UPLOAD_LIMIT",
    "DiscordConfig",
    "DiscordSandbox",
    "Guild",
    "Intent",
    "InteractionRecord",
    "Member",
    "Message",
    "MessageFlag",
    "Perm",
    "RequestRecord",
    "Role",
    "SessionStarts",
    "StoredFile",
    "User",
    "shard_of",
    "Violation",
]
