"""Application command storage (global and per guild) with Discord's schema validation."""

from __future__ import annotations

import re
from typing import Any

from .limits import ApiError, FormErrors
from .state import Payload, SnowflakeGenerator

_NAME = re.compile(r"^[-_'\w]{1,32}$")
MAX_COMMANDS = 100


def _check_name(errors: FormErrors, path: tuple[Any, ...], name: Any, *, lower: bool) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    elif lower and name != name.lower():
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name must be lowercase")


def _check_description(errors: FormErrors, path: tuple[Any, ...], desc: Any) -> None:
    if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
        errors.add((*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def _check_options(errors: FormErrors, path: tuple[Any, ...], options: Any, depth: int) -> None:
    if not isinstance(options, list):
        return
    if len(options) > 25:
        errors.max_length((*path, "options"), 25)
    seen: set[str] = set()
    optional_seen = False
    for i, opt in enumerate(options):
        p = (*path, "options", i)
        if not isinstance(opt, dict):
            errors.add(p, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        kind = opt.get("type")
        _check_name(errors, p, opt.get("name"), lower=True)
        _check_description(errors, p, opt.get("description"))
        if opt.get("name") in seen:
            errors.add((*p, "name"), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
        seen.add(opt.get("name"))
        if kind not in range(1, 12):
            errors.add((*p, "type"), "BASE_TYPE_CHOICES", f"Value must be one of {list(range(1, 12))}.")
        if kind in (1, 2):
            if depth >= (1 if kind == 2 else 2):
                errors.add((*p, "type"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands cannot be nested this deep")
            children = opt.get("options") or []
            if kind == 2 and any(c.get("type") != 1 for c in children if isinstance(c, dict)):
                errors.add(
                    (*p, "options"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommand groups may only contain subcommands"
                )
            _check_options(errors, p, children, depth + 1)
            continue
        if opt.get("required"):
            if optional_seen:
                errors.add(
                    (*p, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = opt.get("choices") or []
        if len(choices) > 25:
            errors.max_length((*p, "choices"), 25)
        if choices and opt.get("autocomplete"):
            errors.add(
                (*p, "autocomplete"), "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", "Autocomplete cannot be used with choices"
            )
    kinds = {o.get("type") for o in options if isinstance(o, dict)}
    if kinds & {1, 2} and kinds - {1, 2}:
        errors.add(
            (*path, "options"), "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands cannot be mixed with other options"
        )


def validate_command(errors: FormErrors, path: tuple[Any, ...], cmd: Any) -> None:
    if not isinstance(cmd, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    kind = cmd.get("type", 1)
    _check_name(errors, path, cmd.get("name"), lower=kind == 1)
    if kind == 1:
        _check_description(errors, path, cmd.get("description"))
        _check_options(errors, path, cmd.get("options") or [], 0)
    elif cmd.get("description"):
        errors.add(
            (*path, "description"), "APPLICATION_COMMAND_INVALID_DESCRIPTION", "Context menu commands cannot have a description"
        )


class CommandStore:
    """Commands per ``(application_id, guild_id or None)``, ids stable across overwrites."""

    def __init__(self, ids: SnowflakeGenerator) -> None:
        self.ids = ids
        self.scopes: dict[tuple[int, int | None], list[Payload]] = {}

    def list(self, app_id: int, guild_id: int | None) -> list[Payload]:
        return self.scopes.get((app_id, guild_id), [])

    def get(self, app_id: int, guild_id: int | None, command_id: int) -> Payload:
        for cmd in self.list(app_id, guild_id):
            if int(cmd["id"]) == command_id:
                return cmd
        raise ApiError(404, 10063, "Unknown application command")

    def _stored(self, app_id: int, guild_id: int | None, body: Payload, old: Payload | None) -> Payload:
        perms = body.get("default_member_permissions")
        cmd: Payload = {
            "id": old["id"] if old else str(self.ids.next()),
            "application_id": str(app_id),
            "version": str(self.ids.next()),
            "type": body.get("type", 1),
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": body.get("description", ""),
            "description_localizations": body.get("description_localizations"),
            "default_member_permissions": None if perms is None else str(perms),
            "dm_permission": body.get("dm_permission", True),
            "nsfw": body.get("nsfw", False),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "options": body.get("options") or [],
        }
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    def overwrite(self, app_id: int, guild_id: int | None, body: Any) -> list[Payload]:
        """PUT (bulk overwrite): validate everything, then replace the scope atomically."""
        if not isinstance(body, list):
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used in a ListType"}]},
            )
        errors = FormErrors()
        seen: set[tuple[str, int]] = set()
        for i, cmd in enumerate(body):
            validate_command(errors, (i,), cmd)
            key = (cmd.get("name"), cmd.get("type", 1)) if isinstance(cmd, dict) else None
            if key in seen:
                errors.add((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
            seen.add(key)  # type: ignore[arg-type]
        if sum(1 for c in body if isinstance(c, dict) and c.get("type", 1) == 1) > MAX_COMMANDS:
            errors.max_length((), MAX_COMMANDS)
        errors.raise_if_any()
        old = {(c["name"], c["type"]): c for c in self.list(app_id, guild_id)}
        self.scopes[(app_id, guild_id)] = [
            self._stored(app_id, guild_id, c, old.get((c["name"], c.get("type", 1)))) for c in body
        ]
        return self.scopes[(app_id, guild_id)]

    def upsert(self, app_id: int, guild_id: int | None, body: Any) -> Payload:
        errors = FormErrors()
        validate_command(errors, (), body)
        errors.raise_if_any()
        scope = self.scopes.setdefault((app_id, guild_id), [])
        for i, cmd in enumerate(scope):
            if (cmd["name"], cmd["type"]) == (body["name"], body.get("type", 1)):
                scope[i] = self._stored(app_id, guild_id, body, cmd)
                return scope[i]
        scope.append(self._stored(app_id, guild_id, body, None))
        return scope[-1]

    def edit(self, app_id: int, guild_id: int | None, command_id: int, body: Any) -> Payload:
        current = self.get(app_id, guild_id, command_id)
        merged = {**current, **(body if isinstance(body, dict) else {})}
        errors = FormErrors()
        validate_command(errors, (), merged)
        errors.raise_if_any()
        scope = self.scopes[(app_id, guild_id)]
        scope[scope.index(current)] = stored = self._stored(app_id, guild_id, merged, current)
        return stored

    def delete(self, app_id: int, guild_id: int | None, command_id: int) -> None:
        current = self.get(app_id, guild_id, command_id)
        self.scopes[(app_id, guild_id)].remove(current)
