"""Folder trees: a folder on disk, or the folders inside a ZIP, as a stream of image files.

Both follow one rule for the category (README: "sub-folder name = category"): the first folder under
the root names it, however deep the file sits. Zipping a folder wraps everything in one more folder,
so the root goes down through a lone folder: while the root holds no images and exactly one
sub-folder, and that sub-folder holds no images of its own, the sub-folder becomes the root.
Hidden entries (a leading '.') and `__MACOSX` are skipped in both.

Files that are not regular (FIFOs, devices, sockets, links in an archive) are reported, never opened
for reading: `LocalFile` opens with O_NONBLOCK and checks the kind before it reads one byte.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .archives import ARCHIVE_EXTENSIONS, Archive, Member
from .config import PHOTO_EXTENSIONS
from .errors import BadImage, ImageTooLarge
from .names import PathName, clean_path, shown

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@dataclass(frozen=True)
class LocalFile:
    """A zero-argument reader of one image file: refuses anything but a regular file (a FIFO named in
    a manifest must not block the import) and reads at most `max_bytes` + 1."""

    path: Path
    max_bytes: int

    def __call__(self) -> bytes:
        name = shown(os.fspath(self.path), 200)
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BadImage(f"File not found: '{name}'.") from None
        except IsADirectoryError:
            raise BadImage(f"'{name}' is a folder, not an image file.") from None
        except (OSError, ValueError) as e:  # permission denied, a socket, a NUL byte in the path ...
            raise BadImage(f"Cannot read '{name}': {getattr(e, 'strerror', None) or e}.") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BadImage(f"'{name}' is {kind_of(st.st_mode)}, not a regular file; skipped.")
            if st.st_size > self.max_bytes:
                raise ImageTooLarge(f"'{name}' is {st.st_size / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.0f} MB.")
            chunks, total = [], 0
            while total <= self.max_bytes and (chunk := os.read(fd, min(1 << 20, self.max_bytes + 1 - total))):
                chunks.append(chunk)
                total += len(chunk)
        except OSError as e:
            raise BadImage(f"Cannot read '{name}': {e.strerror or e}.") from None
        finally:
            os.close(fd)
        if total > self.max_bytes:
            raise ImageTooLarge(f"'{name}' grew past the limit of {self.max_bytes / 1e6:.0f} MB while it was read.")
        return b"".join(chunks)


@dataclass(frozen=True)
class TreeFile:
    """One image file of a tree. `parts` is its clean path from the source (`name.notes` say how it
    differs from the real name), `category` the first folder under the category root (None: it sits
    at the root), `twin` that a sibling with the same stem sorts before it (hopper.png after hopper.jpg):
    the first keeps the stem as its id, so adding a twin later never renames an item already imported;
    `has_twin` that one sorts after it (before 2026-12-07 both twins had their full names as ids)."""

    where: str
    name: PathName
    category: str | None
    read: Callable[[], bytes] | None
    problem: str | None = None
    twin: bool = False
    has_twin: bool = False


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _is_image(name: str) -> bool:
    """An image or a photo to refuse with the decoder's sentence (HEIC, AVIF): listed, never skipped silently."""
    return PurePosixPath(name).suffix.lower() in PHOTO_EXTENSIONS


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


def _twins(paths: Iterable[tuple[str, ...]]) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(the paths whose folder and stem an earlier path (in name order) already has, those earlier paths)."""
    first: dict[tuple[str, ...], tuple[str, ...]] = {}
    later, earlier = set(), set()
    for p in sorted(paths):
        key = (*p[:-1], _stem(p[-1]))
        if key in first:
            later.add(p)
            earlier.add(first[key])
        first.setdefault(key, p)
    return later, earlier


def category_depth(has_images: Callable[[tuple[str, ...]], bool], subfolders: Callable[[tuple[str, ...]], list[str]]) -> int:
    """How many lone wrapper folders sit above the category folders (the rule in the module docstring)."""
    root: tuple[str, ...] = ()
    while not has_images(root) and len(subs := subfolders(root)) == 1 and not has_images((*root, subs[0])):
        root = (*root, subs[0])
    return len(root)


# -- a folder on disk -------------------------------------------------------------------------


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not _hidden(e.name)), key=lambda e: e.name)
    except OSError:
        return []


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir(follow_symlinks=False)  # a link to a folder is not walked (it may lead anywhere, or loop)
    except OSError:
        return False


def folder_files(root: Path, max_bytes: int) -> Iterator[TreeFile]:
    """Image files under `root`, depth first in name order, streamed (one folder listed at a time).
    Links to folders are not walked (as pathlib's rglob did); a link to a file is read only if it ends
    at a regular file."""

    def at(parts: tuple[str, ...]) -> list[os.DirEntry[str]]:
        return _listing(root.joinpath(*parts))

    depth = category_depth(
        lambda parts: any(_is_image(e.name) and not _is_dir(e) for e in at(parts)),
        lambda parts: [e.name for e in at(parts) if _is_dir(e)],
    )
    yield from _walk(root, (), depth, max_bytes)


def _walk(root: Path, parts: tuple[str, ...], depth: int, max_bytes: int) -> Iterator[TreeFile]:
    entries = _listing(root.joinpath(*parts))
    twins, firsts = _twins((e.name,) for e in entries if _is_image(e.name) and not _is_dir(e))
    for e in entries:
        rel = (*parts, e.name)
        if _is_dir(e):
            yield from _walk(root, rel, depth, max_bytes)
            continue
        if not _is_image(e.name):
            continue
        name = clean_path("/".join(rel))
        category = rel[depth] if len(rel) > depth + 1 else None
        problem = None
        try:
            mode = e.stat().st_mode  # follows a link
            if not stat.S_ISREG(mode):
                problem = f"it is {kind_of(mode)}, not a regular file; skipped"
        except OSError:
            problem = "it is a broken link; skipped"
        yield TreeFile(
            shown("/".join(rel), 200),
            name,
            category and clean_path(category).text,
            LocalFile(Path(e.path), max_bytes),
            problem,
            (e.name,) in twins,
            (e.name,) in firsts,
        )


# -- the folders inside a ZIP -----------------------------------------------------------------


def visible_members(archive: Archive) -> list[tuple[PathName, Member]]:
    """The archive's files (not folders, not hidden, not __MACOSX) with their clean paths."""
    out = []
    for m in archive.members:
        name = clean_path(m.name)
        if m.is_dir or not name.parts or any(_hidden(p) for p in name.parts):
            continue
        if m.name_note:
            name = PathName(name.parts, (m.name_note, *(n for n in name.notes if "UTF-8" not in n)))
        out.append((name, m))
    return out


def zip_categories(members: Iterable[tuple[PathName, Member]]) -> tuple[int, int]:
    """How many lone wrapper folders sit above the archive's category folders (the folder rule), and how
    many category folders hold images."""
    images, depth = _zip_layout(members)
    return depth, len({p[depth] for p in images if len(p) > depth + 1})


def _zip_layout(members: Iterable[tuple[PathName, Member]]) -> tuple[set[tuple[str, ...]], int]:
    """The image members' paths, and the depth of the category folders."""
    files = [nm[0].parts for nm in members]
    images = {parts for parts in files if _is_image(parts[-1])}
    folders: dict[tuple[str, ...], set[str]] = {}
    for parts in files:
        for i in range(len(parts) - 1):
            folders.setdefault(parts[:i], set()).add(parts[i])
    with_images = {p[:-1] for p in images}
    return images, category_depth(lambda root: root in with_images, lambda root: sorted(folders.get(root, ())))


def zip_files(archive: Archive, members: Iterable[tuple[PathName, Member]]) -> Iterator[TreeFile]:
    """Image members in name order (and nested archives, reported), with the same category rule."""
    files = sorted(members, key=lambda nm: nm[0].parts)
    images, depth = _zip_layout(files)
    twins, firsts = _twins(images)
    for name, m in files:
        parts = name.parts
        where = shown(m.name, 200)
        if PurePosixPath(parts[-1]).suffix.lower() in ARCHIVE_EXTENSIONS:
            yield TreeFile(where, name, None, None, "it is an archive inside the archive; unpack it and import it on its own")
            continue
        if parts not in images:
            continue
        category = parts[depth] if len(parts) > depth + 1 else None
        yield TreeFile(
            where,
            name,
            category,
            functools.partial(archive.read, m),
            f"it is {m.kind}" if m.kind else "the file is empty" if m.compressed <= 2 and m.size == 0 else None,
            parts in twins,
            parts in firsts,
        )
