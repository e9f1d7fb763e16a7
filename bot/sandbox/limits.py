"""Discord's documented limits, Discord-shaped API errors, and the violation record.

Every error the sandbox answers to the bot is an :class:`ApiError`; the server records it as a
:class:`Violation` so tests can assert that a well-behaved bot produced none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_ATTACHMENTS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_FIELDS = 25
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
FIELD_LIMITS = {"name": 256, "value": 1024}
#: Per file, not summed: "The file upload size limit applies to each file in a request. The default limit is
#: `20 MiB`" (discord-api-docs developers/reference.mdx, Uploading Files; raised from 10 MiB on 2026-09-04, PR #8578).
DEFAULT_UPLOAD_LIMIT = 20 * 1024 * 1024
#: "The maximum request size when sending a message is 25 MiB" (developers/resources/message.mdx, Create Message).
DEFAULT_REQUEST_LIMIT = 25 * 1024 * 1024
#: Flags a message create/edit may set: suppress embeds, suppress notifications, voice message, components v2.
CHANNEL_MESSAGE_FLAGS = (1 << 2) | (1 << 12) | (1 << 13) | (1 << 15)
EPHEMERAL_FLAG = 1 << 6  # only interaction responses and followups may be ephemeral


@dataclass(frozen=True)
class Violation:
    """Something a real Discord would have refused or penalised."""

    kind: str
    detail: str
    at: float = field(default_factory=time.monotonic)
    route: str | None = None

    def __str__(self) -> str:
        where = f" [{self.route}]" if self.route else ""
        return f"{self.kind}: {self.detail}{where}"


class ApiError(Exception):
    """An HTTP error answered the way Discord answers it."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: Payload | None = None,
        kind: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors
        self.kind = kind or _KIND_BY_CODE.get(code, f"http_{status}")
        self.detail = detail or message

    def body(self) -> Payload:
        data: Payload = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


_KIND_BY_CODE = {
    0: "http_error",
    10003: "unknown_channel",
    10004: "unknown_guild",
    10007: "unknown_member",
    10008: "unknown_message",
    10011: "unknown_role",
    10013: "unknown_user",
    10014: "unknown_emoji",
    10015: "unknown_webhook",
    10062: "unknown_interaction",
    10063: "unknown_command",
    30010: "max_reactions",
    30032: "max_commands",
    40005: "payload_too_large",
    40060: "interaction_already_acknowledged",
    50001: "missing_access",
    50006: "empty_message",
    50013: "missing_permissions",
    50027: "invalid_webhook_token",
    50035: "invalid_form_body",
}


def not_found(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def missing_permissions(detail: str) -> ApiError:
    return ApiError(403, 50013, "Missing Permissions", detail=detail)


def missing_access(detail: str) -> ApiError:
    return ApiError(403, 50001, "Missing Access", detail=detail)


def too_large(what: str, size: int, limit: int) -> ApiError:
    return ApiError(413, 40005, "Request entity too large", detail=f"{what} is {size} bytes, limit is {limit} bytes")


def empty_message(detail: str = "Cannot send an empty message") -> ApiError:
    return ApiError(400, 50006, "Cannot send an empty message", detail=detail)


class FormErrors:
    """Collects field errors into Discord's nested ``errors`` object (code 50035)."""

    def __init__(self) -> None:
        self.tree: Payload = {}
        self.flat: list[str] = []

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
        self.flat.append(f"{'.'.join(map(str, path))}: {message}")

    def max_length(self, path: tuple[str | int, ...], limit: int) -> None:
        self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise ApiError(400, 50035, "Invalid Form Body", errors=self.tree, detail="; ".join(self.flat))


def _text(value: Any) -> str:
    """An embed text as Discord measures it: leading and trailing whitespace "are not included (they are
    trimmed automatically)" (message.mdx, Embed Limits)."""
    return (value if isinstance(value, str) else ("" if value is None else str(value))).strip()


def _check_url(errors: FormErrors, path: tuple[str | int, ...], url: Any, *, attachment_ok: bool) -> None:
    if url is None:
        return
    scheme = str(url).split(":", 1)[0].lower() if ":" in str(url) else ""
    allowed = ("http", "https", "attachment") if attachment_ok else ("http", "https")
    if scheme not in allowed:
        errors.add(path, "URL_TYPE_INVALID_SCHEME", f'Scheme "{scheme}" is not supported. Scheme must be one of {allowed}.')


def validate_embeds(errors: FormErrors, embeds: Any, root: tuple[str | int, ...] = ("embeds",)) -> None:
    """Per-embed limits plus the 6000-character total over all embeds of one message."""
    if not isinstance(embeds, list):
        errors.add(root, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(embeds) > MAX_EMBEDS:
        errors.max_length(root, MAX_EMBEDS)
    total = 0
    for i, embed in enumerate(embeds):
        path = (*root, i)
        if not isinstance(embed, dict):
            errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        for key, limit in EMBED_TEXT_LIMITS.items():
            text = _text(embed.get(key))
            total += len(text)
            if len(text) > limit:
                errors.max_length((*path, key), limit)
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            part = embed.get(key) or {}
            text = _text(part.get(sub))
            total += len(text)
            if len(text) > limit:
                errors.max_length((*path, key, sub), limit)
            if key == "footer" and part and not text:
                errors.add((*path, key, sub), "BASE_TYPE_REQUIRED", "This field is required")
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            errors.max_length((*path, "fields"), MAX_EMBED_FIELDS)
        for j, fld in enumerate(fields):
            for key, limit in FIELD_LIMITS.items():
                text = _text(fld.get(key))
                total += len(text)
                if not text:
                    errors.add((*path, "fields", j, key), "BASE_TYPE_REQUIRED", "This field is required")
                elif len(text) > limit:
                    errors.max_length((*path, "fields", j, key), limit)
        _check_url(errors, (*path, "url"), embed.get("url"), attachment_ok=False)
        for key in ("image", "thumbnail"):
            _check_url(errors, (*path, key, "url"), (embed.get(key) or {}).get("url"), attachment_ok=True)
        _check_url(errors, (*path, "author", "icon_url"), (embed.get("author") or {}).get("icon_url"), attachment_ok=True)
        _check_url(errors, (*path, "footer", "icon_url"), (embed.get("footer") or {}).get("icon_url"), attachment_ok=True)
    if total > MAX_EMBED_TOTAL:
        errors.add(root, "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")


def validate_message(
    payload: Payload, file_count: int, *, existing_attachments: int = 0, creating: bool = True, interaction: bool = False
) -> None:
    """Raise :class:`ApiError` (400) if a create/edit message body breaks Discord's limits."""
    if not isinstance(payload, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    errors = FormErrors()
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errors.add(("content",), "STRING_TYPE_CONVERT", "Could not interpret value as string.")
    elif content and len(content) > MAX_CONTENT:
        errors.max_length(("content",), MAX_CONTENT)
    if "embeds" in payload and payload["embeds"] is not None:
        validate_embeds(errors, payload["embeds"])
    attachments = payload.get("attachments")
    count = max(file_count, len(attachments) if isinstance(attachments, list) else 0)
    if count + (0 if attachments is not None else existing_attachments) > MAX_ATTACHMENTS:
        errors.max_length(("attachments",), MAX_ATTACHMENTS)
    nonce = payload.get("nonce")
    if nonce is not None and len(str(nonce)) > 25:
        errors.max_length(("nonce",), 25)
    flags = payload.get("flags")
    allowed = CHANNEL_MESSAGE_FLAGS | (EPHEMERAL_FLAG if interaction else 0)
    if flags is not None and (not isinstance(flags, int) or flags & ~allowed):
        errors.add(("flags",), "MESSAGE_FLAGS_INVALID", "Invalid message flags")
    components = payload.get("components")
    if isinstance(components, list) and len(components) > 5 and not (flags or 0) & (1 << 15):
        errors.max_length(("components",), 5)
    errors.raise_if_any()
    if creating and is_empty(payload, count):
        raise empty_message()


def is_empty(payload: Payload, file_count: int) -> bool:
    """Nothing a message could show: no content, embeds, files, components, stickers or poll."""
    keys = ("content", "embeds", "components", "sticker_ids", "poll")
    return not (file_count or any(payload.get(key) for key in keys))
