"""ZIP archives read as untrusted data: the central directory parsed by hand, members inflated through
a counting reader, nothing trusted that the archive says about itself.

Why not `zipfile`: it raises UnicodeDecodeError on a member name flagged UTF-8 that is not, and it
checks sizes only against the header's word. Here a name is decoded leniently (`Member.name_note`
says so), a member stops inflating one byte past its limit, the archive has a total inflated-bytes
budget and a member-count limit, and every read is `pread` at an offset, so pool threads can read
members of one archive at the same time. Only Stored and Deflate are read (what ZIP tools write).
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BadImage, BadManifest, ImageTooLarge
from .names import shown

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CHUNK = 1 << 16
_NESTED = (b"PK\x03\x04", b"PK\x05\x06", b"7z\xbc\xaf", b"Rar!", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
ARCHIVE_EXTENSIONS = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".jar", ".cbz")


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 100_000
    max_member_bytes: int = 20 * 1024 * 1024
    total_ratio: int = 10  # all members together may inflate to this many times the archive's size ...
    min_total_bytes: int = 1024 * 1024 * 1024  # ... or this much, whichever is more
    max_ratio: int = 300  # past its first `ratio_slack` bytes, a member may inflate this many times its compressed bytes
    ratio_slack: int = 2 * 1024 * 1024

    def total_for(self, archive_bytes: int) -> int:
        return max(self.min_total_bytes, self.total_ratio * archive_bytes)


@dataclass(frozen=True)
class Member:
    name: str  # decoded leniently (bytes that are not UTF-8 stay as surrogate escapes)
    name_note: str | None  # why the name is not what its bytes say, if anything
    method: int
    flags: int
    crc: int
    compressed: int
    size: int  # as declared: never trusted for memory
    offset: int  # of the local header, in the file
    mode: int  # Unix mode bits when the archive was made on Unix, else 0

    @property
    def is_dir(self) -> bool:
        return self.name.endswith(("/", "\\")) or stat.S_ISDIR(self.mode)

    @property
    def kind(self) -> str | None:
        """Why this member is not a plain file (None: it is one)."""
        kind = stat.S_IFMT(self.mode)  # 0: the archive does not say (not made on Unix, or no type bits)
        if kind == stat.S_IFLNK:
            return "a symbolic link (links are not followed)"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "not a regular file"
        if self.flags & 0x1:
            return "encrypted (give the files without a password)"
        if self.method not in (0, 8):
            return f"compressed with method {self.method}, which is not read here (use the ZIP tool's standard Deflate)"
        return None


def _decode_name(raw: bytes, flags: int) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None  # flagged UTF-8, or plain ASCII, or UTF-8 without the flag (macOS)
    except UnicodeDecodeError:
        if flags & 0x800:
            return raw.decode("utf-8", "surrogateescape"), "the name is flagged UTF-8 but is not"
        return raw.decode("cp437"), None  # the historical ZIP encoding: every byte decodes


class Archive:
    """One ZIP file (a path, read with pread) or its bytes (an upload). `members` are its files in
    directory order; `read(member)` inflates one within the member limit and the archive's budget."""

    def __init__(self, pread: Callable[[int, int], bytes], size: int, label: str, limits: ArchiveLimits) -> None:
        self._pread = pread
        self.size = size
        self.label = label
        self.limits = limits
        self.budget = limits.total_for(size)
        self._spent = 0
        self._lock = threading.Lock()
        self.damage: str | None = None  # set when the archive was cut short and only its beginning was read
        self.members = self._directory()

    @classmethod
    def from_bytes(cls, data: bytes, label: str, limits: ArchiveLimits = ArchiveLimits()) -> Archive:
        view = memoryview(data)
        return cls(lambda offset, n: bytes(view[offset : offset + n]), len(data), label, limits)

    @classmethod
    def from_path(cls, path: Path, limits: ArchiveLimits = ArchiveLimits()) -> Archive:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadManifest(f"{path.name} is not a regular file.")

        def pread(offset: int, n: int) -> bytes:
            with open(path, "rb") as f:  # one open per read: no shared file position between threads
                return os.pread(f.fileno(), n, offset)

        return cls(pread, st.st_size, path.name, limits)

    # -- the central directory ----------------------------------------------------------------

    def _bad(self, why: str) -> BadManifest:
        return BadManifest(f"{self.label} is not a valid ZIP archive ({why}).")

    def _directory(self) -> list[Member]:
        tail_len = min(self.size, _EOCD.size + 0xFFFF)
        tail = self._pread(self.size - tail_len, tail_len)
        at = tail.rfind(b"PK\x05\x06")
        while at >= 0 and at + _EOCD.size > len(tail):
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            if tail_len and self._pread(0, 4) == b"PK\x03\x04":
                return self._salvage()
            raise self._bad("no ZIP directory found")
        eocd_pos = self.size - tail_len + at
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        if (count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF) and at >= _EOCD64_LOCATOR.size:
            sig, _, eocd64_at, _ = _EOCD64_LOCATOR.unpack_from(tail, at - _EOCD64_LOCATOR.size)
            if sig == b"PK\x06\x07":
                rec = self._pread(eocd64_at, _EOCD64.size)
                if len(rec) == _EOCD64.size and rec[:4] == b"PK\x06\x06":
                    *_, count, cd_size, cd_offset = _EOCD64.unpack(rec)
                    eocd_pos = eocd64_at
        if count > self.limits.max_members:
            raise BadManifest(
                f"{self.label} holds {count:,} entries; an import takes at most {self.limits.max_members:,}. Split it."
            )
        start = eocd_pos - cd_size  # the directory's real place: data may precede the archive
        shift = start - cd_offset
        if start < 0 or cd_size > self.size:
            raise self._bad("its directory points outside the file")
        members: list[Member] = []
        pos, end = start, start + cd_size
        buf, buf_at = b"", start
        while pos < end and len(members) <= self.limits.max_members:
            if buf_at + len(buf) < end and pos + _CENTRAL.size + 0x2FFFF > buf_at + len(buf):  # an entry: <= 46 + 3 * 64 KiB
                buf, buf_at = self._pread(pos, min(end - pos, 1 << 20)), pos
            head = buf[pos - buf_at : pos - buf_at + _CENTRAL.size]
            if len(head) < _CENTRAL.size or head[:4] != b"PK\x01\x02":
                raise self._bad(f"entry {len(members) + 1} of its directory is damaged")
            fields = _CENTRAL.unpack(head)
            flags, method, crc, csize, usize = fields[5], fields[6], fields[9], fields[10], fields[11]
            n_name, n_extra, n_comment, ext_attr, offset = fields[12], fields[13], fields[14], fields[17], fields[18]
            body = buf[pos - buf_at + _CENTRAL.size : pos - buf_at + _CENTRAL.size + n_name + n_extra]
            if len(body) < n_name + n_extra:
                raise self._bad(f"entry {len(members) + 1} of its directory is cut short")
            name, note = _decode_name(body[:n_name], flags)
            usize, csize, offset = _zip64(body[n_name:], usize, csize, offset)
            mode = (ext_attr >> 16) if fields[2] == 3 else 0  # made on Unix: st_mode in the high bits
            members.append(Member(name, note, method, flags, crc, csize, usize, offset + shift, mode))
            pos += _CENTRAL.size + n_name + n_extra + n_comment
        if len(members) > self.limits.max_members:
            raise BadManifest(f"{self.label} holds more than {self.limits.max_members:,} entries; split it.")
        return members

    def _salvage(self) -> list[Member]:
        """A ZIP cut short has lost its directory: walk the local headers from the start instead, and
        keep the files that are whole (sizes in the local header, data inside the file)."""
        members: list[Member] = []
        pos = 0
        while len(members) <= self.limits.max_members:
            head = self._pread(pos, _LOCAL.size)
            if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
                break
            _, _, _, flags, method, _, _, crc, csize, usize, n_name, n_extra = _LOCAL.unpack(head)
            data_at = pos + _LOCAL.size + n_name + n_extra
            if flags & 0x8 or csize == 0xFFFFFFFF or data_at + csize > self.size:
                break  # sizes only after the data (or ZIP64), or the data runs past the cut: the rest is lost
            name, note = _decode_name(self._pread(pos + _LOCAL.size, n_name), flags)
            members.append(Member(name, note, method, flags, crc, csize, usize, pos, 0))
            pos = data_at + csize
        if not members:
            raise self._bad("its directory at the end is missing and no whole file is left: the file may be cut short")
        if len(members) > self.limits.max_members:
            raise BadManifest(f"{self.label} holds more than {self.limits.max_members:,} entries; split it.")
        self.damage = (
            f"{self.label} is cut short (its directory at the end is missing): {len(members):,} whole files were read "
            "from its beginning; any after them are lost, so upload or copy it again to import them."
        )
        return members

    # -- members --------------------------------------------------------------------------------

    def _charge(self, n: int) -> None:
        with self._lock:
            self._spent += n

    def left(self) -> int:
        with self._lock:
            return self.budget - self._spent

    def read(self, m: Member, limit: int | None = None) -> bytes:
        """The member's bytes, inflated at most `limit` (default: the member limit) plus one byte.
        Raises ImageTooLarge past the limit or the archive's budget, BadImage when damaged."""
        name = shown(m.name, 120)
        if why := m.kind:
            raise BadImage(f"{name} is {why}.")
        limit = self.limits.max_member_bytes if limit is None else limit
        left = self.left()
        if left <= 0:
            raise ImageTooLarge(
                f"{name} was not read: the archive already inflated to {self.budget / 1e6:.0f} MB, "
                f"its limit ({self.limits.total_ratio} times its size, at least {self.limits.min_total_bytes / 1e6:.0f} MB)."
            )
        cap = min(limit, left)
        head = self._pread(m.offset, _LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
            raise BadImage(f"{name} is damaged in the archive (no local header where the directory points).")
        n_name, n_extra = _LOCAL.unpack(head)[-2:]
        pos = m.offset + _LOCAL.size + n_name + n_extra
        remaining = m.compressed
        out = bytearray()
        inflater = zlib.decompressobj(-15) if m.method == 8 else None
        try:
            while len(out) <= cap:
                if inflater is not None and inflater.unconsumed_tail:
                    chunk = inflater.unconsumed_tail
                elif remaining > 0:
                    chunk = self._pread(pos, min(_CHUNK, remaining, cap + 1 - len(out) if inflater is None else _CHUNK))
                    if not chunk:
                        raise BadImage(f"{name} is cut short in the archive.")
                    pos += len(chunk)
                    remaining -= len(chunk)
                elif inflater is not None and not inflater.eof:
                    chunk = b""  # all input in: output the inflater still holds
                else:
                    break
                if inflater is None:
                    out += chunk
                    continue
                piece = inflater.decompress(chunk, min(cap + 1 - len(out), _CHUNK * 16))  # 1 MiB at a time
                if not chunk and not piece:
                    break
                out += piece
                used = m.compressed - remaining - len(inflater.unconsumed_tail)
                if len(out) > self.limits.ratio_slack + self.limits.max_ratio * used:
                    raise ImageTooLarge(
                        f"{name} inflates more than {self.limits.max_ratio} times its compressed size, which no photo "
                        "does; refused as a likely zip bomb."
                    )
                if inflater.eof:
                    break
        except zlib.error:
            raise BadImage(f"{name} is damaged in the archive (its compressed data is invalid).") from None
        finally:
            self._charge(len(out))
        if len(out) > cap:
            if cap < limit:
                raise ImageTooLarge(
                    f"{name} was not read in full: the archive inflated past its total limit of {self.budget / 1e6:.0f} MB."
                )
            raise ImageTooLarge(
                f"{name} inflates to more than {limit / 1e6:.0f} MB (its header says {m.size:,} bytes); too large."
            )
        if inflater is not None and not inflater.eof:
            raise BadImage(f"{name} is cut short in the archive.")
        if zlib.crc32(out) != m.crc or len(out) != m.size:
            raise BadImage(f"{name} is damaged in the archive (its checksum or size does not match).")
        if out[:4].startswith(_NESTED):
            raise BadImage(f"{name} is an archive inside the archive; unpack it and import it on its own.")
        return bytes(out)


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset from the ZIP64 extra field, for those the entry marks 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        tag, n = struct.unpack_from("<2H", extra, at)
        if tag == 0x0001:
            values = list(struct.unpack_from(f"<{min(n, len(extra) - at - 4) // 8}Q", extra, at + 4))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        at += 4 + n
    return usize, csize, offset
