"""Reactions, as Discord keeps and announces them.

Anyone who reacts (a member through :meth:`DiscordSandbox.react`, a bot through
``PUT .../reactions/{emoji}/@me``) needs View Channel and Read Message History in the channel, and
Add Reactions only to put a *new* emoji on the message: joining an emoji someone already used needs
no Add Reactions (https://discord.com/developers/docs/resources/message#create-reaction and the
ADD_REACTIONS permission). A message holds at most 20 different emojis (30010). Adding a reaction
that is already there, or removing one that is not, changes nothing and announces nothing.

Each change is dispatched to the bots of the guild that asked for GUILD_MESSAGE_REACTIONS (in a DM,
to its bot with DIRECT_MESSAGE_REACTIONS): ``MESSAGE_REACTION_ADD`` with ``user_id``, ``channel_id``,
``message_id``, ``guild_id``, ``member`` (the reacting member, in a guild), ``emoji``,
``message_author_id``, ``burst``, ``burst_colors`` and ``type``; ``MESSAGE_REACTION_REMOVE`` with the
same ids, ``emoji``, ``burst`` and ``type`` (https://discord.com/developers/docs/events/gateway-events
#message-reaction-add). Bots get their own reactions back too, as on Discord.

``GET .../reactions/{emoji}`` lists who reacted so, by id, ``limit`` (1-100, else 400; default 25) above the id
``after`` (https://discord.com/developers/docs/resources/message#get-reactions); it needs Read Message
History.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .limits import ApiError, missing_access, missing_permissions, not_found
from .permissions import Intent, Perm, channel_permissions
from .state import ChannelType, Message, Payload, User

if TYPE_CHECKING:
    from .world import World

MAX_EMOJIS = 20  # different emojis on one message


def emoji_payload(key: str) -> Payload:
    """The partial emoji of a stored reaction key: a Unicode emoji itself, or ``name:id`` for a custom one."""
    name, _, ident = key.partition(":")
    if ident.isdigit():
        return {"id": ident, "name": name or None, "animated": False}
    return {"id": None, "name": key}


def emoji_key(emoji: str) -> str:
    """What a route's ``{emoji}`` names: ``👍``, or ``name:id`` (``a:name:id`` for an animated one)."""
    parts = emoji.split(":")
    if len(parts) == 3 and parts[0] == "a" and parts[2].isdigit():
        return f"{parts[1]}:{parts[2]}"
    if not emoji or len(emoji) > 64:
        raise ApiError(400, 10014, "Unknown Emoji")
    return emoji


def refusal(world: World, message: Message, user: User, emoji: str) -> ApiError | None:
    """Why ``user`` may not add ``emoji`` to ``message`` (None: they may)."""
    channel = world.channels.get(message.channel_id)
    if channel is None or message.deleted or message.ephemeral:
        return not_found("Message", 10008)
    if channel.type == ChannelType.DM:
        if all(u.id != user.id for u in channel.recipients):
            return missing_access(f"{user.name} is not in DM channel {channel.id}")
    else:
        guild = world.guilds[channel.guild_id]  # type: ignore[index]
        member = guild.members.get(user.id)
        perms = channel_permissions(guild, member, channel) if member else 0
        if not perms & Perm.VIEW_CHANNEL:
            return missing_access(f"{user.name} cannot view #{channel.name}")
        if not perms & Perm.READ_MESSAGE_HISTORY:
            return missing_permissions(f"reacting needs READ_MESSAGE_HISTORY in #{channel.name} ({user.name})")
        if not message.reactions.get(emoji) and not perms & Perm.ADD_REACTIONS:
            return missing_permissions(f"{user.name} lacks ADD_REACTIONS in #{channel.name} to add a new {emoji}")
    if not message.reactions.get(emoji) and sum(1 for users in message.reactions.values() if users) >= MAX_EMOJIS:
        return ApiError(400, 30010, f"Maximum number of reactions reached ({MAX_EMOJIS})")
    return None


def add(world: World, message: Message, user: User, emoji: str) -> bool:
    """``user`` reacts with ``emoji`` (raises the ApiError Discord answers); False if they already had."""
    problem = refusal(world, message, user, emoji)
    if problem is not None:
        raise problem
    users = message.reactions.setdefault(emoji, set())
    if user.id in users:
        return False
    users.add(user.id)
    data = _event(world, message, user, emoji)
    data["message_author_id"] = str(message.author.id)
    data["burst_colors"] = []
    guild = world.guilds.get(message.guild_id) if message.guild_id else None
    member = guild.members.get(user.id) if guild else None
    if member is not None:
        data["member"] = member.payload()
    _dispatch(world, "MESSAGE_REACTION_ADD", message, data)
    return True


def remove(world: World, message: Message, user: User, emoji: str) -> bool:
    """``user`` takes their ``emoji`` reaction back; False if they had none."""
    if message.deleted:
        raise not_found("Message", 10008)
    users = message.reactions.get(emoji)
    if not users or user.id not in users:
        return False
    users.discard(user.id)
    if not users:
        del message.reactions[emoji]  # Discord drops an emoji nobody uses any more
    _dispatch(world, "MESSAGE_REACTION_REMOVE", message, _event(world, message, user, emoji))
    return True


def users(world: World, message: Message, emoji: str, *, after: int = 0, limit: int = 25) -> list[User]:
    """Who reacted to ``message`` with ``emoji``: up to ``limit`` users whose id is above ``after``, by id."""
    if message.deleted:
        raise not_found("Message", 10008)
    ids = sorted(i for i in message.reactions.get(emoji, ()) if i > after)[:limit]
    return [world.users[i] for i in ids]


def _event(world: World, message: Message, user: User, emoji: str) -> Payload:
    data: Payload = {
        "user_id": str(user.id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "emoji": emoji_payload(emoji),
        "burst": False,
        "type": 0,
    }
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    return data


def _dispatch(world: World, event: str, message: Message, data: Payload) -> None:
    if message.guild_id is not None:
        world.gateway.dispatch(event, data, guild_id=message.guild_id, intent=Intent.GUILD_MESSAGE_REACTIONS)
    else:
        channel = world.channels[message.channel_id]
        bots = {u.id for u in channel.recipients if u.bot}
        world.gateway.dispatch(event, data, intent=Intent.DIRECT_MESSAGE_REACTIONS, bot_ids=bots)
    world.notify()
