"""The sandbox refuses application commands exactly where Discord does, and no sooner.

Each rule comes from discord-api-docs (interactions/application-commands): naming, choice and
string-option lengths, the 8,000-character size of one command (only the longest localization of a
field counts), and 100 CHAT_INPUT / 15 USER / 15 MESSAGE commands per scope, counted apart. The
requests go through a real discord.py client's HTTP layer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from bot.sandbox import BotUser, DiscordSandbox
from bot.sandbox.command_rules import chat_input_name_error, command_size, context_menu_name_error

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sandbox() -> AsyncIterator[DiscordSandbox]:
    sb = DiscordSandbox()
    await sb.start()
    sb.configure_discord()
    try:
        yield sb
    finally:
        await sb.stop()


@asynccontextmanager
async def logged_in(bot_user: BotUser) -> AsyncIterator[discord.Client]:
    """A discord.py client logged in over REST only (no gateway): enough to sync commands."""
    client = discord.Client(intents=discord.Intents(guilds=True))
    await client.login(bot_user.token)
    try:
        yield client
    finally:
        await client.close()


def slash(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": 1, "name": name, "description": "d", **extra}


def menu(name: str, kind: int = 2) -> dict[str, Any]:
    return {"type": kind, "name": name}


def sized(extra: int, localizations: dict[str, str] | None = None) -> dict[str, Any]:
    """A command of 8,000 + ``extra`` characters by Discord's count (+ what ``localizations`` add):
    100 (name + description) + 100 + 25 x 200 (option a + choices) + 100 + 13 x 200 + (50 + 50 + extra)."""

    def choices(count: int, tag: str) -> list[dict[str, str]]:
        return [{"name": f"{tag}{i:02d}".ljust(100, "n"), "value": f"{tag}{i:02d}".ljust(100, "v")} for i in range(count)]

    last = {"name": "x" * 50, "value": "y" * (50 + extra)}
    options = [
        {"type": 3, "name": "aaaa", "description": "o" * 96, "choices": choices(25, "a")},
        {"type": 3, "name": "bbbb", "description": "o" * 96, "choices": [*choices(13, "b"), last]},
    ]
    command = slash("big", description="d" * 97, options=options)
    if localizations:
        command["description_localizations"] = localizations
    return command


async def refused(call: Any) -> discord.HTTPException:
    with pytest.raises(discord.HTTPException) as caught:
        await call
    return caught.value


def test_command_size_counts_names_descriptions_choice_values_and_longest_localization() -> None:
    assert command_size(sized(0)) == 8000
    assert command_size(sized(1)) == 8001
    # only the longest of the default and its localizations counts (97 -> 99), not their sum
    assert command_size(sized(-2, {"fr": "d" * 99, "de": "d" * 98, "es-ES": "d" * 50})) == 8000
    named = {"type": 2, "name": "Find", "name_localizations": {"fr": "Trouver pareil"}}
    assert command_size(named) == len("Trouver pareil")


async def test_the_8000_character_total_per_command(sandbox: DiscordSandbox) -> None:
    bot_user = sandbox.create_bot_user("cmds")
    async with logged_in(bot_user) as client:
        app = bot_user.application_id
        ok = await client.http.bulk_upsert_global_commands(app, [sized(0)])
        assert ok[0]["name"] == "big"
        localized = sized(-2, {"fr": "d" * 99, "de": "d" * 98, "es-ES": "d" * 50})
        await client.http.bulk_upsert_global_commands(app, [localized])
        assert sandbox.violations == []
        error = await refused(client.http.bulk_upsert_global_commands(app, [slash("small"), sized(1)]))
        assert (error.status, error.code) == (400, 50035)
        assert "In 1: Command exceeds maximum size (8000)" in error.text
        error = await refused(client.http.upsert_global_command(app, sized(-2, {"fr": "d" * 100})))
        assert "Command exceeds maximum size (8000)" in error.text
    assert [c["name"] for c in sandbox.commands_for(bot_user)] == ["big"]  # a refused overwrite changes nothing
    assert [v.kind for v in sandbox.violations] == ["invalid_form_body"] * 2


async def test_choice_names_and_string_option_lengths(sandbox: DiscordSandbox) -> None:
    bot_user = sandbox.create_bot_user("cmds")

    def option(**fields: Any) -> dict[str, Any]:
        return slash("pick", options=[{"type": 3, "name": "what", "description": "d", **fields}])

    accepted = [
        option(choices=[{"name": "n" * 100, "value": "v" * 100}, {"name": "a", "value": "a"}]),
        option(max_length=6000, min_length=0),
        option(min_length=6000, max_length=6000),
    ]
    refusals = {
        "options.0.choices.0.name: Must be between 1 and 100 in length.": option(choices=[{"name": "", "value": "v"}]),
        "options.0.choices.1.name: Must be between 1 and 100 in length.": option(
            choices=[{"name": "ok", "value": "ok"}, {"name": "n" * 101, "value": "v"}]
        ),
        "options.0.choices.0.name_localizations.fr: Must be between 1 and 100": option(
            choices=[{"name": "ok", "value": "ok", "name_localizations": {"fr": "n" * 101}}]
        ),
        "options.0.choices.0.value: Must be 100 or fewer in length.": option(choices=[{"name": "ok", "value": "v" * 101}]),
        "options.0.max_length: int value should be less than or equal to 6000.": option(max_length=6001),
        "options.0.max_length: int value should be greater than or equal to 1.": option(max_length=0),
        "options.0.min_length: int value should be less than or equal to 6000.": option(min_length=6001),
    }
    async with logged_in(bot_user) as client:
        for command in accepted:
            await client.http.upsert_global_command(bot_user.application_id, command)
        assert sandbox.violations == []
        for expected, command in refusals.items():
            error = await refused(client.http.upsert_global_command(bot_user.application_id, command))
            assert (error.status, error.code) == (400, 50035)
            assert expected in error.text, error.text
    assert len(sandbox.violations_of("invalid_form_body")) == len(refusals)


async def test_slash_user_and_message_commands_are_counted_apart(sandbox: DiscordSandbox) -> None:
    bot_user = sandbox.create_bot_user("cmds")
    full = (
        [slash(f"c{i}") for i in range(100)]
        + [menu(f"User {i}", 2) for i in range(15)]
        + [menu(f"Message {i}", 3) for i in range(15)]
    )
    async with logged_in(bot_user) as client:
        app = bot_user.application_id
        assert len(await client.http.bulk_upsert_global_commands(app, full)) == 130
        await client.http.upsert_global_command(app, menu("User 3", 2))  # an upsert of an existing name fits
        assert sandbox.violations == []
        for kind, extra in ((1, slash("c100")), (2, menu("User 15", 2)), (3, menu("Message 15", 3))):
            error = await refused(client.http.upsert_global_command(app, extra))
            limit = 100 if kind == 1 else 15
            assert (error.status, error.code) == (400, 30032)
            assert f"Maximum number of application commands reached ({limit})" in error.text
        error = await refused(client.http.bulk_upsert_global_commands(app, [*full[:100], *[menu(f"U{i}", 2) for i in range(16)]]))
        assert (error.status, error.code) == (400, 30032) and "(15)" in error.text
        error = await refused(client.http.bulk_upsert_global_commands(app, [*full, menu("One more", 3)]))
        assert (error.status, error.code) == (400, 50035) and "Must be 130 or fewer in length." in error.text
        guild = sandbox.create_guild("G", bots=[bot_user])  # the same counts again per guild
        assert len(await client.http.bulk_upsert_guild_commands(app, guild.id, full)) == 130
    assert len(sandbox.commands_for(bot_user)) == 130
    assert [v.kind for v in sandbox.violations] == ["max_commands"] * 4 + ["invalid_form_body"]


def test_command_names_follow_the_documented_rules() -> None:
    for name in ("similar", "similar-item", "o'neil", "größe", "ähnlich_2", "हिन्दी", "खोज", "ค้นหา", "類似", "x" * 32):
        assert chat_input_name_error(name) is None, name
    for name in ("", "x" * 33, "find similar", "Similar", "ÄHNLICH", "sim!lar", "a.b", "emoji😀"):
        assert chat_input_name_error(name) is not None, name
    assert chat_input_name_error("Similar") == "Command name must be lowercase"
    for name in ("Find Similar", "find similar", "Ähnliche finden!", "Report (spam)", "हिन्दी खोज", "x" * 32, " Padded "):
        assert context_menu_name_error(name) is None, name
    for name in ("", "   ", "x" * 33, "tab\there", "emoji😀", "new\nline"):
        assert context_menu_name_error(name) is not None, name


async def test_names_over_http_and_a_real_tree_with_context_menus(sandbox: DiscordSandbox) -> None:
    bot_user = sandbox.create_bot_user("cmds")

    async def find_similar(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message("ok")

    async def who(interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.send_message("ok")

    async with logged_in(bot_user) as client:
        tree = app_commands.CommandTree(client)
        tree.add_command(app_commands.ContextMenu(name="Find Similar Items", callback=find_similar))
        tree.add_command(app_commands.ContextMenu(name="Who's This?", callback=who))
        synced = await tree.sync()
        assert sorted(c.name for c in synced) == ["Find Similar Items", "Who's This?"]
        error = await refused(client.http.upsert_global_command(bot_user.application_id, slash("Find")))
        assert "name: Command name must be lowercase" in error.text
        error = await refused(client.http.upsert_global_command(bot_user.application_id, slash("find similar")))
        assert "name: Command name is invalid" in error.text
        error = await refused(
            client.http.upsert_global_command(bot_user.application_id, slash("ok", name_localizations={"de": "Ähnlich"}))
        )
        assert "name_localizations.de: Command name must be lowercase" in error.text
    async with aiohttp.ClientSession() as session:  # the body is Discord's: code 50035 + a nested errors object
        url = f"{sandbox.api_url}/applications/{bot_user.application_id}/commands"
        headers = {"Authorization": f"Bot {bot_user.token}"}
        async with session.put(url, json=[menu("Fine Name"), menu("")], headers=headers) as resp:
            body = await resp.json()
    assert resp.status == 400 and body["code"] == 50035 and body["message"] == "Invalid Form Body"
    assert body["errors"] == {
        "1": {"name": {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Command name is invalid"}]}}
    }
    assert [v.kind for v in sandbox.violations] == ["invalid_form_body"] * 4
