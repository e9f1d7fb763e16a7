"""Adaptation to members' photos: the bounded running mean, per-domain centring, and its saved bytes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from recommender.adapt import MIN_COUNT, WINDOW, AdaptDataError, DomainState, domain_from_bytes
from recommender.errors import BadOption

from helpers import member_without_npy_header, zip_directory_damaged


def unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=-1, keepdims=True)).astype(np.float32)


def test_the_mean_is_exact_up_to_the_window_then_forgets_the_oldest() -> None:
    rng = np.random.default_rng(1)
    V = unit(rng.normal(size=(50, 8)))
    state = DomainState.empty(8)
    for chunk in np.array_split(V, 7):  # fed as photos arrive, in batches of any size
        state = state.update(chunk)
    assert state.count == 50 and np.allclose(state.mean, V.mean(axis=0), atol=1e-5)
    assert np.allclose(DomainState.empty(8).update(V * 3.0).mean, state.mean, atol=1e-5)  # vectors are normalised first
    old, new = unit(np.tile([1.0, 0, 0, 0, 0, 0, 0, 0], (WINDOW, 1))), unit(np.tile([0, 1.0, 0, 0, 0, 0, 0, 0], (3 * WINDOW, 1)))
    moved = DomainState.empty(8).update(old).update(new)
    assert moved.count == WINDOW  # bounded
    assert moved.mean[1] > 0.9 and moved.mean[0] < 0.1  # the old domain has been forgotten
    nan = np.full((1, 8), np.nan, np.float32)
    assert state.update(nan).count == state.count  # a broken vector is skipped, not averaged in


def test_align_moves_the_members_domain_onto_the_catalogues_and_waits_for_enough_photos() -> None:
    rng = np.random.default_rng(2)
    dim = 32
    catalogue_offset, member_offset = rng.normal(size=dim) * 1.25, rng.normal(size=dim) * 1.25  # the domains
    protos = rng.normal(size=(4, dim)) * 2 / np.sqrt(dim)  # four kinds of garment, closer than the domains are apart
    item_kinds, kinds = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    items = unit(protos[item_kinds] + catalogue_offset + 0.8 * rng.normal(size=(400, dim)) / np.sqrt(dim))
    photos = unit(protos[kinds] + member_offset + 0.8 * rng.normal(size=(200, dim)) / np.sqrt(dim))
    reference = items.mean(axis=0)
    few = DomainState.empty(dim).update(photos[: MIN_COUNT - 1])
    assert few.align(photos[0], reference) is photos[0] or np.array_equal(few.align(photos[0], reference), photos[0])
    state = DomainState.empty(dim).update(photos)
    aligned = state.align(photos, reference)
    assert aligned.shape == photos.shape and np.allclose(np.linalg.norm(aligned, axis=1), 1.0, atol=1e-5)
    assert np.allclose(state.align(photos[3], reference), aligned[3], atol=1e-6)  # one query or many

    def nearest_kind_right(Q: np.ndarray) -> float:
        return float(np.mean(item_kinds[np.argmax(Q @ items.T, axis=1)] == kinds))

    assert nearest_kind_right(aligned) > nearest_kind_right(photos) + 0.1
    with pytest.raises(BadOption):
        state.align(np.ones(dim + 1, np.float32), reference)
    with pytest.raises(BadOption):
        state.update(np.ones((2, dim + 1), np.float32))
    with pytest.raises(BadOption):
        DomainState.empty(0)


def test_a_domain_state_round_trips_and_bad_bytes_are_a_typed_error() -> None:
    state = DomainState.empty(16).update(unit(np.random.default_rng(3).normal(size=(30, 16))))
    again = domain_from_bytes(state.to_bytes())
    assert again.count == state.count and again.mean.dtype == np.float32 and np.array_equal(again.mean, state.mean)
    data = state.to_bytes()
    for bad in (b"", data[: len(data) // 2], b"\x00" * 64, data[:100] + bytes(x ^ 0xFF for x in data[100:300]) + data[300:],
                zip_directory_damaged(data, "method"), zip_directory_damaged(data, "encrypted"), member_without_npy_header(data)):  # fmt: skip
        with pytest.raises(AdaptDataError):
            domain_from_bytes(bad)
    with np.load(io.BytesIO(data)) as z:
        meta, mean = json.loads(z["meta"].tobytes()), z["mean"]
    for key, value, arr in (("version", 9, mean), ("count", WINDOW + 1, mean), ("format", "x", mean), ("count", 3, mean * np.nan),
                            ("count", 3, mean.astype(np.float64))):  # fmt: skip
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps({**meta, key: value}).encode(), np.uint8), mean=arr)
        with pytest.raises(AdaptDataError):
            domain_from_bytes(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, meta=np.array([object()], dtype=object), mean=mean)  # a pickled member is refused, never loaded
    with pytest.raises(AdaptDataError):
        domain_from_bytes(buf.getvalue())
