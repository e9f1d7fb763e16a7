"""Message bodies: reading JSON or multipart (``payload_json`` + ``files[n]``) requests,
storing uploads on the sandbox CDN, resolving ``attachment://`` embed URLs, and edits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .files import StoredFile, guess_content_type
from .limits import ApiError, is_empty, too_large
from .state import Message, MessageFlag, Payload, User

_FILE_FIELD = re.compile(r"^(?:files\[(\d+)\]|file(\d*))$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


@dataclass
class Upload:
    """One file part of a multipart request."""

    index: int
    filename: str
    data: bytes
    content_type: str


async def read_body(request: web.Request, upload_limit: int, request_limit: int) -> tuple[Payload, list[Upload]]:
    """Parse a JSON or multipart/form-data body the way Discord does: 413 (40005) for any one file over
    ``upload_limit`` (the limit "applies to each file in a request") or a request over ``request_limit``."""
    if request.content_type == "multipart/form-data":
        payload: Payload = {}
        uploads: list[Upload] = []
        size = 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            name = getattr(part, "name", None) or ""
            data = bytes(await part.read(decode=False))  # type: ignore[union-attr]
            size += len(data)
            if name == "payload_json":
                payload = _json(data.decode("utf-8", "replace"))
                continue
            match = _FILE_FIELD.match(name)
            if match is None:
                continue
            index = int(match.group(1) or match.group(2) or len(uploads))
            filename = getattr(part, "filename", None) or f"file{index}"
            declared = part.headers.get("Content-Type")
            uploads.append(Upload(index, filename, data, guess_content_type(filename, declared)))
        size = max(size, request.content_length or 0)
        if size > request_limit:
            raise too_large("the request", size, request_limit)
        for upload in uploads:
            if len(upload.data) > upload_limit:
                raise too_large(f"file {upload.filename!r}", len(upload.data), upload_limit)
        return payload, uploads
    raw = await request.read()
    if len(raw) > request_limit:
        raise too_large("the request", len(raw), request_limit)
    if not raw.strip():
        return {}, []
    return _json(raw.decode("utf-8", "replace")), []


def _json(text: str) -> Payload:
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    return value


StoreFile = Callable[[Upload, "str | None"], StoredFile]


def attach_uploads(
    payload: Payload, uploads: list[Upload], store: StoreFile, existing: list[StoredFile] | None = None
) -> list[StoredFile]:
    """Resolve the ``attachments`` array: ids of kept attachments, or indices into ``files[n]``."""
    existing = existing or []
    by_index = {u.index: u for u in uploads}
    spec = payload.get("attachments")
    if spec is None:  # no array: keep what is there and append every uploaded file
        return existing + [store(u, None) for u in uploads]
    result: list[StoredFile] = []
    used: set[int] = set()
    old = {a.id: a for a in existing}
    for i, item in enumerate(spec):
        if not isinstance(item, dict) or "id" not in item:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "attachments": {
                        str(i): {"id": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}}
                    }
                },
            )
        ident = int(item["id"])
        if ident in by_index and ident not in used:
            used.add(ident)
            upload = by_index[ident]
            if item.get("filename"):
                upload.filename = str(item["filename"])
                upload.content_type = guess_content_type(upload.filename, upload.content_type)
            result.append(store(upload, item.get("description")))
        elif ident in old:
            result.append(old[ident])
        else:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "attachments": {
                        str(i): {"_errors": [{"code": "ATTACHMENT_NOT_FOUND", "message": f"Attachment data not found: {ident}"}]}
                    }
                },
            )
    return result


def normalize_embeds(embeds: list[Payload], attachments: list[StoredFile]) -> list[Payload]:
    """Give embeds their ``type`` and swap ``attachment://name`` for the CDN URL, like Discord."""
    files = {a.filename: a for a in attachments}
    out = []
    for embed in embeds:
        embed = json.loads(json.dumps(embed))
        embed.setdefault("type", "rich")
        _trim(embed, "title", "description")
        for part in [embed.get("footer"), embed.get("author"), *(embed.get("fields") or [])]:
            _trim(part, "text", "name", "value")
        for key, url_key in (("image", "url"), ("thumbnail", "url"), ("author", "icon_url"), ("footer", "icon_url")):
            part = embed.get(key)
            url = part.get(url_key) if isinstance(part, dict) else None
            if isinstance(url, str) and url.startswith("attachment://"):
                stored = files.get(url[len("attachment://") :])
                if stored is not None:
                    part[url_key] = stored.url
                    part["proxy_" + url_key] = stored.proxy_url
                    info = stored.payload()
                    if key in ("image", "thumbnail") and "width" in info:
                        part["width"], part["height"] = info["width"], info["height"]
        out.append(embed)
    return out


def _trim(part: Any, *keys: str) -> None:
    """Discord stores embed texts without leading/trailing whitespace ("they are trimmed automatically")."""
    if isinstance(part, dict):
        for key in keys:
            if isinstance(part.get(key), str):
                part[key] = part[key].strip()


def parse_mentions(content: str, lookup_user: Callable[[int], User | None]) -> tuple[list[User], list[int]]:
    users = [u for uid in dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)) if (u := lookup_user(uid)) is not None]
    roles = list(dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content)))
    return users, roles


def edit_leaves_empty(message: Message, payload: Payload, upload_count: int) -> bool:
    """Whether a PATCH would leave ``message`` with nothing to show (Discord answers 50006)."""
    after = {key: payload[key] if key in payload else getattr(message, key) for key in ("content", "embeds", "components")}
    spec = payload.get("attachments")
    files = len(spec) if isinstance(spec, list) else len(message.attachments) + upload_count
    return is_empty(after, files)


def apply_edit(
    message: Message, payload: Payload, uploads: list[Upload], store: StoreFile, lookup_user: Callable[[int], User | None]
) -> None:
    """PATCH semantics: only the fields present change; ``attachments`` lists what survives."""
    if "content" in payload:
        message.content = payload["content"] or ""
        message.mentions, message.mention_role_ids = parse_mentions(message.content, lookup_user)
    if uploads or "attachments" in payload:
        message.attachments = attach_uploads(payload, uploads, store, message.attachments)
    if "embeds" in payload:
        message.embeds = normalize_embeds(payload["embeds"] or [], message.attachments)
    if "components" in payload:
        message.components = payload["components"] or []
    if "flags" in payload and payload["flags"] is not None:
        keep = message.flags & ~MessageFlag.SUPPRESS_EMBEDS
        message.flags = keep | (int(payload["flags"]) & MessageFlag.SUPPRESS_EMBEDS)


def fill_message(
    message: Message, payload: Payload, attachments: list[StoredFile], lookup_user: Callable[[int], User | None]
) -> Message:
    """Populate a new message from a create body (content, embeds, components, flags, nonce)."""
    message.content = payload.get("content") or ""
    message.attachments = attachments
    message.embeds = normalize_embeds(payload.get("embeds") or [], attachments)
    message.components = payload.get("components") or []
    message.flags |= int(payload.get("flags") or 0)
    message.tts = bool(payload.get("tts", False))
    message.nonce = payload.get("nonce")
    message.mentions, message.mention_role_ids = parse_mentions(message.content, lookup_user)
    return message


def find_component(components: list[Any], custom_id: str) -> Payload | None:
    """Depth-first search of a message's components for ``custom_id``."""
    for comp in components:
        if not isinstance(comp, dict):
            continue
        if comp.get("custom_id") == custom_id:
            return comp
        for key in ("components", "accessory"):
            inner = comp.get(key)
            found = find_component(inner if isinstance(inner, list) else [inner], custom_id) if inner else None
            if found:
                return found
    return None
