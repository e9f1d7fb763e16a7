"""Application command storage (global and per guild), validated by :mod:`.command_rules`."""

from __future__ import annotations

import builtins
from typing import Any

from .command_rules import MAX_OVERWRITE, check_counts, validate_command
from .limits import ApiError, FormErrors
from .snowflakes import SnowflakeGenerator
from .state import Payload


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

    def overwrite(self, app_id: int, guild_id: int | None, body: Any) -> builtins.list[Payload]:
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
        if len(body) > MAX_OVERWRITE:
            errors.max_length((), MAX_OVERWRITE)
        errors.raise_if_any()
        check_counts(body)
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
        check_counts([*scope, body])  # a new command must fit its type's limit
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
