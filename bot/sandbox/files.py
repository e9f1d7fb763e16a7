"""Files served by the sandbox CDN, and the metadata Discord derives from them."""

from __future__ import annotations

import mimetypes
import struct
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]


@dataclass(eq=False)
class StoredFile:
    """A file served by the sandbox CDN (user upload, bot upload or slash-command attachment)."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    proxy_url: str
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "content_type": self.content_type,
            "flags": 0,
        }
        dims = image_size(self.data)
        if dims:
            data["width"], data["height"] = dims
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        return data


def guess_content_type(filename: str, declared: str | None = None) -> str:
    """Discord sniffs the type from the name; discord.py always declares application/octet-stream."""
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or declared or "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width/height of a PNG, GIF or JPEG, read from its header (None for anything else)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            i += 2 + length
    return None
