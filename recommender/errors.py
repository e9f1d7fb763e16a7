"""Typed errors. The library raises them; the CLI and the bot put them into words.

Every message is written for a person: it says what went wrong and, where there is one, what to do.
"""

from __future__ import annotations

import zipfile

# What reading saved bytes with ``np.load`` can raise when they are damaged. A flipped bit in a zip directory
# names an unknown compression method or says "encrypted": zipfile raises NotImplementedError or RuntimeError
# for those, not BadZipFile; a member without its .npy header comes back as bytes, not an array, so reading it as
# one raises AttributeError. The loaders of saved classifiers, heads and domain states turn these into their
# typed data errors, so a damaged row is refitted, never a crash on every query.
UNREADABLE_BYTES: tuple[type[Exception], ...] = (
    ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, NotImplementedError,
    RuntimeError, AttributeError,
)  # fmt: skip


class RecommenderError(Exception):
    """Base class: anything the recommender can tell a user about."""


class BadImage(RecommenderError):
    """The input is not an image we can use (empty, corrupt, truncated, unsupported, not an image)."""


class ImageTooLarge(BadImage):
    """Too many bytes or too many pixels (decompression-bomb guard)."""


class UnknownModel(RecommenderError):
    """No backbone is registered under that name."""


class WeightsUnavailable(RecommenderError):
    """Pretrained weights could not be found locally nor downloaded."""


class ItemNotFound(RecommenderError):
    """No catalogue item with that id in that catalogue."""


class DuplicateItem(RecommenderError):
    """An item with that id already exists in the catalogue."""


class CatalogEmpty(RecommenderError):
    """The catalogue has no items (for this model) to search or learn from."""


class Busy(RecommenderError):
    """The work queue is full; try again in a moment."""


class PhotoNotFound(RecommenderError):
    """The message is not one whose photo the bot remembers (never answered, forgotten, or pruned)."""


class BadManifest(RecommenderError):
    """An import source (folder, CSV, Parquet, ZIP) cannot be read as a catalogue."""


class BadOption(RecommenderError):
    """An option value is out of range or of the wrong kind."""


class DatabaseError(RecommenderError):
    """The catalogue database cannot be opened or upgraded."""


class DatabaseUnavailable(DatabaseError):
    """The database server went away or is busy for now; the same request may work in a moment."""


class SyncInProgress(RecommenderError):
    """A sync of that catalogue is already running."""
