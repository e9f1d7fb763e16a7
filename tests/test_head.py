"""The catalogue-tuned head: fitted on member-like views, saved without pickle, and the per-photo decision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from recommender import classify, images
from recommender.errors import BadOption, CatalogEmpty
from recommender.head import CatalogueHead, HeadDataError, fit_head, head_from_bytes, train_head

from helpers import (
    FASHION,
    ROOT,
    backbone,
    demo_photos,
    fast_backbone,
    member_without_npy_header,
    needs_fashion,
    styles_rows,
    zip_directory_damaged,
)

NO_CLOTHING = sorted((ROOT / "tests" / "data" / "no-clothing").glob("*.jpg"))


def load(paths) -> list[Image.Image]:
    return [images.load_image(p)[0] for p in paths]


def decide_all(head: CatalogueHead, Q: np.ndarray, G: np.ndarray, cats: list[str], k: int = 5):
    out = []
    for q in Q:
        s = G @ q
        idx = np.argsort(-s, kind="stable")[:100]
        out.append((head.decide(q, s[idx], [cats[i] for i in idx], k), idx))
    return out


@pytest.fixture(scope="module")
def demo_head() -> tuple[CatalogueHead, np.ndarray, list[str], np.ndarray]:
    """A head over half the demo photos (tiny backbone), and the tiny vectors of the other half."""
    net = backbone("tiny")
    photos = demo_photos()
    cat_paths, query_paths = photos[0::2], photos[1::2]
    cats = [p.parent.name for p in cat_paths]
    G = net.embed(load(cat_paths))
    head = train_head(G, cats, lambda idx: load([cat_paths[i] for i in idx]), net.embed, max_views=120, batch=16)
    return head, G, cats, net.embed(load(query_paths))


def test_a_head_is_fitted_on_views_and_decides_every_photo(demo_head) -> None:
    head, G, cats, Q = demo_head
    assert head.info["views"] == 120 and head.info["items"] == 60 and head.info["classifier"] == "linear"
    assert head.rerank in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5) and 0 <= head.mix <= 0.75
    assert -1.0 <= head.open_threshold <= 1.0
    decisions = decide_all(head, Q, G, cats)
    for d, _idx in decisions:
        assert len(d.order) == 5 and len(set(d.order)) == 5 and all(0 <= i < 100 for i in d.order)
        assert d.prediction.category is None or (d.prediction.probability >= 0.5 and not d.nothing_like_this)
        assert [c for c, _ in d.prediction.ranked] and abs(d.closeness) <= 1.0
    # the threshold answers most of these same-domain photos, as fitted (answer rate 0.9 on views)
    assert np.mean([not d.nothing_like_this for d, _ in decisions]) >= 0.6


def test_a_near_copy_of_a_catalogue_picture_stays_first_whatever_the_category_prior(demo_head) -> None:
    head, G, cats, Q = demo_head
    strong = dataclasses.replace(head, rerank=10.0)  # a prior that would reorder everything
    scores = np.array([0.99, 0.95, 0.94, 0.93, 0.92])
    likely = max(head.classifier.labels, key=lambda c: cats.count(c))
    unlikely = [c for c in head.classifier.labels if c != likely][0]
    order = strong.decide(G[0], scores, [unlikely] + [likely] * 4, k=5).order
    assert order[0] == 0  # the product's own picture, re-encoded, is what the member is looking for
    assert strong.decide(G[0], scores - 0.05, [unlikely] + [likely] * 4, k=5).order[0] != 0  # not a copy: the prior weighs in


def test_a_head_round_trips_through_bytes(demo_head) -> None:
    head, G, cats, Q = demo_head
    again = head_from_bytes(head.to_bytes())
    assert (again.rerank, again.mix, again.open_threshold, again.info) == (head.rerank, head.mix, head.open_threshold, head.info)
    for (a, _), (b, _) in zip(decide_all(head, Q, G, cats), decide_all(again, Q, G, cats)):
        assert a == b


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b"",  # empty
        lambda b: b"\x00" * 64,  # not a zip
        lambda b: b[:100] + bytes(x ^ 0xFF for x in b[100:400]) + b[400:],  # bytes flipped
        lambda b: zip_directory_damaged(b, "method"),  # zipfile: NotImplementedError
        lambda b: zip_directory_damaged(b, "encrypted"),  # zipfile: RuntimeError
        lambda b: member_without_npy_header(b),  # np.load: bytes, not an array (AttributeError on .tobytes())
    ],
)
def test_corrupt_head_bytes_raise_a_typed_error(demo_head, corrupt) -> None:
    with pytest.raises(HeadDataError):
        head_from_bytes(corrupt(demo_head[0].to_bytes()))


def test_foreign_or_other_version_bytes_are_refused(demo_head) -> None:
    head = demo_head[0]
    with pytest.raises(HeadDataError, match="not a saved catalogue head"):
        head_from_bytes(head.classifier.to_bytes())
    import io
    import json

    with np.load(io.BytesIO(head.to_bytes())) as z:
        parts = {k: z[k] for k in z.files}
    meta = json.loads(parts["meta"].tobytes())
    for key, value, why in (("version", 99, "version 99"), ("mix", 2.0, "out of range"), ("typical", [0.5, 0.4], "out of range")):
        buf = io.BytesIO()
        bad = {**meta, key: value}
        np.savez(buf, meta=np.frombuffer(json.dumps(bad).encode(), np.uint8), classifier=parts["classifier"])
        with pytest.raises(HeadDataError, match=why):
            head_from_bytes(buf.getvalue())


def test_a_small_catalogue_works_on_raw_features_with_knn() -> None:
    net = backbone("tiny")
    paths = demo_photos("shoes")[:6] + demo_photos("hat")[:6]
    cats = [p.parent.name for p in paths]
    G = net.embed(load(paths))
    head = fit_head(G, cats)  # no views at all
    assert head.classifier.method == "knn" and head.rerank == 0.0 and head.mix == 0.0
    assert head.info["threshold_from"] == "items"
    Q = net.embed(load([demo_photos("shoes")[7], demo_photos("hat")[7]]))
    for (d, _idx), _kind in zip(decide_all(head, Q, G, cats, k=3), ("shoes", "hat")):
        assert len(d.order) == 3 and d.prediction.ranked[0][0] in ("shoes", "hat")
    assert head_from_bytes(head.to_bytes()).classifier.method == "knn"
    one = fit_head(G[:1], cats[:1])
    assert one.classifier.method == "knn" and one.decide(Q[0], np.array([0.5]), ["shoes"], 5).order == [0]


@needs_fashion
def test_a_tiny_shop_answers_members_garments() -> None:
    """Six real product shots of six kinds (a kNN head) and the pretrained backbone: "nothing like this" is
    calibrated on the member-like views, so the members' photos of those kinds are answered. Calibrated on the
    items' closeness to each other (product shots on white are close), it answered 32 % of them."""
    net = fast_backbone("efficientnet-lite0")
    rows = styles_rows(["Tshirts", "Jeans", "Casual Shoes", "Shorts", "Skirts", "Caps"], 1)
    paths = [FASHION / "images" / f"{r['id']}.jpg" for r in rows]
    cats = [r["articleType"] for r in rows]
    G = net.embed(load(paths))
    head = train_head(G, cats, lambda idx: load([paths[i] for i in idx]), net.embed)
    assert head.classifier.method == "knn" and head.info["threshold_from"] == "views"
    Q = net.embed(load([p for k in ("t-shirt", "pants", "shoes", "shorts", "skirt", "hat") for p in demo_photos(k)]))
    answered = [not d.nothing_like_this for d, _ in decide_all(head, Q, G, cats)]
    assert np.mean(answered) >= 0.8


@needs_fashion
def test_a_one_category_shop_is_sure_of_its_category_only_for_photos_typical_of_it() -> None:
    """A shop of 30 jeans (real product shots, lite0): a member's photo of pants is often named jeans, a photo of
    another kind or of no clothing almost never, though many are still answered with the closest jeans. Its
    category's probability was 1 for every answered photo: "Looks like: Jeans" to 43 % of these other photos."""
    net = fast_backbone("efficientnet-lite0")
    rows = styles_rows(["Jeans"], 30)
    paths = [FASHION / "images" / f"{r['id']}.jpg" for r in rows]
    cats = [r["articleType"] for r in rows]
    G = net.embed(load(paths))
    head = train_head(G, cats, lambda idx: load([paths[i] for i in idx]), net.embed)
    assert len(head.typical) == 101 and head_from_bytes(head.to_bytes()).typical == head.typical
    pants = [d for d, _ in decide_all(head, net.embed(load(demo_photos("pants"))), G, cats)]
    others = [p for k in ("t-shirt", "shoes", "hat", "dress", "shirt", "sweater", "skirt") for p in demo_photos(k)]
    other = [d for d, _ in decide_all(head, net.embed(load(others + NO_CLOTHING)), G, cats)]
    assert np.mean([d.prediction.category == "Jeans" for d in pants]) >= 0.5
    assert np.mean([d.prediction.category is not None for d in other]) <= 0.1
    assert np.mean([not d.nothing_like_this for d in other]) >= 0.2  # answered, but not as jeans


def test_one_category_probability_follows_how_typical_the_closeness_is() -> None:
    net = backbone("tiny")
    paths = demo_photos("hat")[:8]
    G = net.embed(load(paths))
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(len(G)), 4)
    V = G[owner] + 0.2 * rng.standard_normal((len(owner), G.shape[1])).astype(np.float32)
    head = fit_head(G, ["hat"] * len(G), V, owner)
    low, mid, high = head.typical[0], head.typical[50], head.typical[-1]
    P = [head.decide(G[0], np.full(len(G), c), ["hat"] * len(G), 3).prediction for c in (low - 0.01, mid, high + 0.01)]
    assert [p.probability for p in P] == pytest.approx([0.0, 0.5, 1.0], abs=0.01)
    assert (P[0].category, P[2].category) == (None, "hat")
    assert fit_head(G, ["hat", "cap"] * 4, V, owner).typical == ()  # two categories: the classifier's probabilities
    assert len(fit_head(G, ["hat"] * len(G)).typical) == 101  # no views yet: the items' closeness to each other
    one = fit_head(G[:1], ["hat"], V[:4], np.zeros(4, np.int64))  # one item: typical of its own views
    assert len(one.typical) == 101 and one.open_threshold == -1.0


def test_a_small_catalogue_with_rare_categories_fits_with_views() -> None:
    """8 real items (3 dresses, 3 shirts, a hat, shoes), 3 views each: the linear classifier drops the
    rare categories, while each fold's smaller classifier is a kNN that keeps them."""
    net = backbone("tiny")
    paths = demo_photos("dress")[:3] + demo_photos("shirt")[:3] + demo_photos("hat")[:1] + demo_photos("shoes")[:1]
    cats = [p.parent.name for p in paths]
    G = net.embed(load(paths))
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(len(G)), 3)
    V = G[owner] + 0.1 * rng.standard_normal((len(owner), G.shape[1])).astype(np.float32)
    head = fit_head(G, cats, V, owner)
    assert head.classifier.method == "linear" and set(head.classifier.dropped) == {"hat", "shoes"}
    assert head.info["threshold_from"] != "items"  # fitted on the views
    d = head.decide(G[6], G @ G[6], cats, 5)
    assert len(d.order) == 5


def test_categories_compare_case_insensitively_as_in_the_index() -> None:
    """A moderator re-capitalised some dresses: one category to the head, whichever spelling a hit carries."""
    net = backbone("tiny")
    paths = demo_photos("dress")[:6] + demo_photos("shoes")[:6]
    G = net.embed(load(paths))
    head = fit_head(G, ["dress"] * 2 + ["Dress"] * 4 + ["shoes"] * 6)
    assert head.classifier.labels == ["Dress", "shoes"]  # the most common spelling
    voting = dataclasses.replace(head, mix=1.0, rerank=1.0)
    q = net.embed(load(demo_photos("dress")[7:8]))[0]
    d = voting.decide(q, np.array([0.9, 0.9, 0.9]), ["shoes", "DRESS", "dress"], 3, threshold=0.0)
    assert d.prediction.ranked[0][0] == "Dress" and d.prediction.ranked[0][1] > 0.5  # both dresses vote
    members = (G[:2], ["DRESS", "dress"])
    assert voting.member_vote(q, members, 0.9)[0].tolist() == [1.0, 0.0]  # labels in any spelling count
    assert fit_head(G, ["dress"] * 6 + ["shoes"] * 6, members=members).info["members"] == 2


def test_bad_inputs_are_typed_errors() -> None:
    with pytest.raises(CatalogEmpty):
        fit_head(np.zeros((0, 8), np.float32), [])
    head = fit_head(np.eye(4, dtype=np.float32), list("aabb"))
    with pytest.raises(CatalogEmpty):
        head.decide(np.ones(4), np.zeros(0), [], 5)
    assert isinstance(head.classifier, classify.KnnClassifier)


@pytest.mark.slow
@needs_fashion
def test_lite0_head_answers_a_garment_photo_with_its_kind_and_a_cup_of_coffee_with_nothing() -> None:
    """A 240-item fashion-products catalogue (8 articleTypes), efficientnet-lite0 on the engine's fast path, the
    head as the engine fits it."""
    net = fast_backbone("efficientnet-lite0")
    types = ["Tshirts", "Jeans", "Casual Shoes", "Caps", "Skirts", "Watches", "Handbags", "Sunglasses"]
    rows = styles_rows(types, 30)
    paths = [FASHION / "images" / f"{r['id']}.jpg" for r in rows]
    cats = [r["articleType"] for r in rows]
    G = net.embed(load(paths))
    head = train_head(G, cats, lambda idx: load([paths[i] for i in idx]), net.embed, max_views=480)
    accept = {"shoes": {"Casual Shoes"}, "pants": {"Jeans"}, "hat": {"Caps"}, "skirt": {"Skirts"}}
    right = answered = 0
    for kind, ok in accept.items():
        photos = demo_photos(kind)
        for d, _idx in decide_all(head, net.embed(load(photos)), G, cats):
            answered += not d.nothing_like_this
            right += d.prediction.category in ok
    n = sum(len(demo_photos(k)) for k in accept)
    assert answered >= 0.8 * n and right >= 0.6 * n, (answered, right, n)
    nothing = [d for d, _ in decide_all(head, net.embed(load(NO_CLOTHING)), G, cats)]
    assert all(d.nothing_like_this and d.prediction.category is None for d in nothing), [d.closeness for d in nothing]


def test_labelled_member_photos_vote_in_the_category_and_the_order(demo_head) -> None:
    head, G, cats, Q = demo_head
    q = Q[0]
    s = G @ q
    idx = np.argsort(-s, kind="stable")[:100]
    scores, near = s[idx], [cats[i] for i in idx]
    plain = head.decide(q, scores, near, 5)
    wanted = min(head.classifier.labels, key=lambda c: dict(plain.prediction.ranked).get(c, 0.0))  # its least likely
    # no members, empty members and members whose labels the catalogue lacks change nothing
    for none in (None, (np.zeros((0, len(q)), np.float32), []), (np.stack([q, q]), ["spaceship", "teapot"])):
        assert head.decide(q, scores, near, 5, members=none) == plain
    # one labelled photo of the query itself outweighs the classifier; the share grows with how many and how close
    one = head.decide(q, scores, near, 5, members=(q[None, :], [wanted]))
    assert one.prediction.category == wanted and one.prediction.probability > 0.5
    _, share_close = head.member_vote(q, (q[None, :], [wanted]), float(scores[0]))
    far = np.roll(q, 7)
    _, share_far = head.member_vote(q, (far[None, :], [wanted]), float(scores[0]))
    _, share_many = head.member_vote(q, (np.stack([far] * 5), [wanted] * 5), float(scores[0]))
    assert 0.0 <= share_far < share_many and share_far < share_close < 1.0
    # the member vote joins the category prior of the search order: items of that category move up
    ranked = dataclasses.replace(head, rerank=0.5).decide(q, scores, near, 10, members=(q[None, :], [wanted]))
    before = dataclasses.replace(head, rerank=0.5).decide(q, scores, near, 10)
    assert sum(near[i] == wanted for i in ranked.order) >= sum(near[i] == wanted for i in before.order)
    with pytest.raises(BadOption):
        head.decide(q, scores, near, 5, members=(np.ones((2, 3), np.float32), ["a", "b"]))


def test_labelled_member_photos_train_the_head_and_unknown_labels_are_ignored() -> None:
    rng = np.random.default_rng(0)
    dim = 16
    centres = {c: rng.normal(size=dim) * 3 for c in "abc"}
    X = np.vstack([centres[c] + rng.normal(size=(30, dim)) for c in "abc"]).astype(np.float32)
    cats = [c for c in "abc" for _ in range(30)]
    elsewhere = rng.normal(size=dim) * 3  # members' photos of "c" look like nothing in the catalogue
    M = (elsewhere + 0.3 * rng.normal(size=(12, dim))).astype(np.float32)
    query = (elsewhere + 0.3 * rng.normal(size=(20, dim))).astype(np.float32)
    before = fit_head(X, cats, X, np.arange(len(X)))
    after = fit_head(X, cats, X, np.arange(len(X)), members=(np.vstack([M, M[:3]]), ["c"] * 12 + ["zebra"] * 3))
    assert before.info["members"] == 0 and after.info["members"] == 12  # the 3 "zebra" photos are not a category here
    assert "zebra" not in after.classifier.labels
    p_before = before.classifier.predict_proba(query)[:, before.classifier.labels.index("c")]
    p_after = after.classifier.predict_proba(query)[:, after.classifier.labels.index("c")]
    assert p_after.mean() > 0.8 and p_after.mean() > p_before.mean() + 0.2
    small = fit_head(X[:12], cats[:12], members=(M[:2], ["a", "a"]))  # kNN: each member photo is one neighbour
    assert small.classifier.method == "knn" and small.info["members"] == 2


def test_views_are_made_a_batch_of_pictures_at_a_time_and_do_not_depend_on_the_batch() -> None:
    """A shop's thumbnails are 256 px: fetching all 2,000 pictures a 4,000-view fit needs at once held
    hundreds of MB; they are fetched per batch, and the views (one seeded stream) stay the same."""
    net = backbone("tiny")
    paths = demo_photos()[0::2]
    cats = [p.parent.name for p in paths]
    G = net.embed(load(paths))
    asked: list[list[int]] = []

    def pictures(idx: list[int]) -> list[Image.Image]:
        asked.append(list(idx))
        return load([paths[i] for i in idx])

    small = train_head(G, cats, pictures, net.embed, max_views=120, batch=16)
    assert asked and max(len(a) for a in asked) <= 16 and len(asked) >= 120 // 16
    big = train_head(G, cats, lambda idx: load([paths[i] for i in idx]), net.embed, max_views=120, batch=120)
    assert small.open_threshold == pytest.approx(big.open_threshold, abs=1e-5)
    assert (small.rerank, small.mix, small.info["views"]) == (big.rerank, big.mix, big.info["views"])
