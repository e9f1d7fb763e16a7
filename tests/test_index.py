"""The in-memory vector index against brute-force numpy on random unit vectors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from recommender.index import SearchFilter, VectorIndex

CATS = ["Shirts", "Jeans", "Watches", "Socks"]


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def h(i: int) -> str:
    return hashlib.sha256(f"image {i}".encode()).hexdigest()


class Catalogue:
    """Reference model: plain dicts, scored by brute force."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vecs: dict[int, np.ndarray] = {}
        self.cats: dict[int, str] = {}
        self.prices: dict[int, float | None] = {}
        self.hashes: dict[int, str] = {}

    def put(self, pk, vec, cat, price, digest) -> None:
        self.vecs[pk], self.cats[pk], self.prices[pk], self.hashes[pk] = vec, cat, price, digest

    def drop(self, pk) -> None:
        for d in (self.vecs, self.cats, self.prices, self.hashes):
            d.pop(pk)

    def search(self, q, k, category=None, lo=None, hi=None, exclude=frozenset(), exclude_hash=None) -> list[int]:
        cand = []
        for pk, v in self.vecs.items():
            p = self.prices[pk]
            if category and self.cats[pk].lower() != category.lower():
                continue
            if lo is not None and (p is None or p < lo):
                continue
            if hi is not None and (p is None or p > hi):
                continue
            if pk in exclude or self.hashes[pk] == exclude_hash:
                continue
            cand.append((-float(v @ q), pk))
        return [pk for _, pk in sorted(cand)[:k]]


def fill(n: int, dim: int, seed: int, capacity: int = 1024) -> tuple[VectorIndex, Catalogue, np.ndarray]:
    vecs = unit_rows(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    ix, ref = VectorIndex(dim, capacity=capacity), Catalogue(dim)
    for i, v in enumerate(vecs):
        pk = 1000 + i
        cat = CATS[int(rng.integers(len(CATS)))]
        price = None if i % 7 == 0 else float(rng.integers(1, 200))
        ix.upsert(pk, v, cat, price, h(i))
        ref.put(pk, v, cat, price, h(i))
    return ix, ref, vecs


def pks(hits) -> list[int]:
    return [hit.pk for hit in hits]


@pytest.mark.parametrize("k", [1, 5, 25])
def test_search_equals_brute_force(k: int) -> None:
    ix, ref, _ = fill(500, 64, seed=1)
    for q in unit_rows(20, 64, seed=99):
        hits = ix.search(q, k)
        assert pks(hits) == ref.search(q, k)
        expected_scores = [float(ref.vecs[p] @ q) for p in pks(hits)]
        assert np.allclose([hit.score for hit in hits], expected_scores, atol=1e-5)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_build_from_arrays_equals_incremental_upserts() -> None:
    ix, ref, vecs = fill(300, 32, seed=2)
    order = sorted(ref.vecs)
    built = VectorIndex.build(
        np.array(order),
        np.stack([ref.vecs[p] for p in order]),
        [ref.cats[p] for p in order],
        np.array([np.nan if ref.prices[p] is None else ref.prices[p] for p in order]),
        [ref.hashes[p] for p in order],
        32,
    )
    assert len(built) == 300 and all(p in built for p in order)
    for q in unit_rows(10, 32, seed=5):
        flt = SearchFilter(category="jeans", max_price=120)
        assert pks(built.search(q, 8, flt)) == pks(ix.search(q, 8, flt)) == ref.search(q, 8, "Jeans", None, 120)
    built.upsert(5, vecs[0], "Socks", 3.0, h(-1))  # grows the built index like any other
    assert len(built) == 301


def test_add_remove_and_upsert_keep_results_right() -> None:
    ix, ref, _ = fill(200, 48, seed=3, capacity=16)
    rng = np.random.default_rng(7)
    queries = unit_rows(8, 48, seed=8)
    next_pk = 5000
    for step in range(300):
        op = rng.integers(3)
        if op == 0 or not ref.vecs:  # add
            v = unit_rows(1, 48, seed=10_000 + step)[0]
            cat, price = CATS[step % 4], float(step % 90)
            ix.upsert(next_pk, v, cat, price, h(next_pk))
            ref.put(next_pk, v, cat, price, h(next_pk))
            next_pk += 1
        elif op == 1:  # remove (any row: first, middle, last)
            pk = int(rng.choice(sorted(ref.vecs)))
            assert ix.remove(pk) is True
            ref.drop(pk)
        else:  # replace the vector and metadata of an existing pk
            pk = int(rng.choice(sorted(ref.vecs)))
            v = unit_rows(1, 48, seed=20_000 + step)[0]
            ix.upsert(pk, v, "Watches", None, h(pk + 77_777))
            ref.put(pk, v, "Watches", None, h(pk + 77_777))
        if step % 25 == 0:
            for q in queries:
                assert pks(ix.search(q, 10)) == ref.search(q, 10)
                assert pks(ix.search(q, 5, SearchFilter(category="watches"))) == ref.search(q, 5, "Watches")
    assert len(ix) == len(ref.vecs)
    for pk, v in ref.vecs.items():
        assert np.array_equal(ix.vector(pk), v)
    assert ix.remove(123456) is False and ix.vector(123456) is None


def test_growth_past_capacity_keeps_every_row() -> None:
    ix = VectorIndex(16, capacity=16)
    vecs = unit_rows(1000, 16, seed=4)
    for i, v in enumerate(vecs):
        ix.upsert(i, v, CATS[i % 4], float(i), h(i))
    assert len(ix) == 1000
    for i in (0, 15, 16, 17, 511, 999):
        assert pks(ix.search(vecs[i], 1)) == [i]
        assert np.array_equal(ix.vector(i), vecs[i])
    # metadata survived the copies too
    assert pks(ix.search(vecs[999], 3, SearchFilter(min_price=999))) == [999]
    assert set(pks(ix.search(vecs[0], 25, SearchFilter(category="socks")))) <= set(range(3, 1000, 4))


def test_filters_apply_before_ranking() -> None:
    ix, ref, _ = fill(400, 32, seed=6)
    q = unit_rows(1, 32, seed=61)[0]
    for k in (1, 5, 20):
        for flt, args in (
            (SearchFilter(category="SOCKS"), ("socks", None, None)),
            (SearchFilter(min_price=50, max_price=60), (None, 50, 60)),
            (SearchFilter(category="Shirts", max_price=20), ("Shirts", None, 20)),
        ):
            expected = ref.search(q, k, *args)
            got = pks(ix.search(q, k, flt))
            assert got == expected
            matching = len(ref.search(q, 10_000, *args))
            assert len(got) == min(k, matching)  # k results whenever k items match
    # the best filtered items are far down the unfiltered ranking, yet are found
    assert all(ref.cats[p] == "Socks" for p in pks(ix.search(q, 20, SearchFilter(category="socks"))))
    assert ix.search(q, 5, SearchFilter(category="Hats")) == []


def test_unknown_prices_never_pass_a_price_filter() -> None:
    ix = VectorIndex(4)
    e = np.eye(4, dtype=np.float32)
    ix.upsert(1, e[0], "A", None, h(1))
    ix.upsert(2, e[1], "A", 10.0, h(2))
    assert pks(ix.search(e[0], 5)) == [1, 2]
    assert pks(ix.search(e[0], 5, SearchFilter(min_price=0))) == [2]
    assert pks(ix.search(e[0], 5, SearchFilter(max_price=1e9))) == [2]
    ix.update_meta(1, "B", 4.0)
    assert pks(ix.search(e[0], 5, SearchFilter(max_price=5))) == [1]
    assert pks(ix.search(e[0], 5, SearchFilter(category="b"))) == [1]


def test_exact_duplicates_appear_once_and_the_query_hash_is_excluded() -> None:
    ix = VectorIndex(8)
    vecs = unit_rows(10, 8, seed=12)
    for i, v in enumerate(vecs):
        ix.upsert(i, v, "A", None, h(i))
    ix.upsert(100, vecs[3], "A", None, h(3))  # the same picture under another id
    ix.upsert(101, vecs[3], "A", None, h(3))
    hits = ix.search(vecs[3], 5)
    assert pks(hits).count(3) + pks(hits).count(100) + pks(hits).count(101) == 1
    assert len(hits) == 5 and len({hit.pk for hit in hits}) == 5
    # the query's own picture (and its copies) is left out entirely
    own = ix.search(vecs[3], 5, SearchFilter(exclude_hash=h(3)))
    assert not {3, 100, 101} & set(pks(own)) and len(own) == 5
    # excluding by pk leaves the other copies
    by_pk = ix.search(vecs[3], 5, SearchFilter(exclude_pks=frozenset({3})))
    assert pks(by_pk)[0] in (100, 101) and by_pk[0].score == pytest.approx(1.0, abs=1e-5)


def test_many_copies_of_one_picture_still_leave_k_results() -> None:
    ix = VectorIndex(8)
    vecs = unit_rows(11, 8, seed=13)
    for i in range(40):  # a placeholder "no photo" picture used by 40 products
        ix.upsert(i, vecs[0], "A", None, h(0))
    for i in range(1, 11):
        ix.upsert(100 + i, vecs[i], "A", None, h(i))
    q = vecs[0] * 0.9 + vecs[1] * 0.1
    hits = ix.search(q / np.linalg.norm(q), 5)
    assert len(hits) == 5


def test_empty_index_and_k_zero() -> None:
    ix = VectorIndex(8)
    q = unit_rows(1, 8, seed=1)[0]
    assert ix.search(q, 5) == [] and len(ix) == 0
    ix.upsert(1, q, "A", None, h(1))
    assert ix.search(q, 0) == []
    assert ix.remove(1) and ix.search(q, 5) == [] and 1 not in ix
