"""Category classifier: real product photos (reduced to pixel vectors) and synthetic clusters."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from recommender.classify import (
    ClassifierDataError,
    KnnClassifier,
    LinearClassifier,
    classifier_from_bytes,
    fit_classifier,
    fit_linear,
    fit_temperature,
)
from recommender.errors import BadOption, CatalogEmpty, RecommenderError
from recommender.evaluate import expected_calibration_error, stratified_split
from recommender.softmax import TRAIN_ROWS

from helpers import zip_directory_damaged

FASHION = Path("/work/shared/data/fashion-products")
CLASSES = ["Watches", "Socks", "Belts", "Flip Flops", "Handbags", "Jeans", "Shirts", "Sunglasses", "Tshirts", "Casual Shoes"]
PER_CLASS = 40


def _pixel_features(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        v = np.asarray(im.convert("RGB").resize((12, 16), Image.BILINEAR), dtype=np.float32).ravel()
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    """40 real photos for each of 10 article types, as L2-normalised 16x12 RGB pixel vectors."""
    if not (FASHION / "styles.csv").exists():
        pytest.skip("real product photos (/work/shared/data/fashion-products) not available")
    ids: dict[str, list[str]] = defaultdict(list)
    with open(FASHION / "styles.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind = row["articleType"]
            if kind in CLASSES and len(ids[kind]) < PER_CLASS and (FASHION / "images" / f"{row['id']}.jpg").exists():
                ids[kind].append(row["id"])
    assert all(len(ids[c]) == PER_CLASS for c in CLASSES)
    X = np.stack([_pixel_features(FASHION / "images" / f"{i}.jpg") for c in CLASSES for i in ids[c]])
    y = np.array([c for c in CLASSES for _ in range(PER_CLASS)])
    return X, y


def clusters(n_per: int, n_classes: int, dims: int, spread: float, seed: int = 0, centre_seed: int = 0):
    """Gaussian clusters around fixed random centres (``centre_seed``), unit-normalised."""
    centres = np.random.default_rng(centre_seed).standard_normal((n_classes, dims))
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_classes), n_per)
    X = centres[codes] + spread * rng.standard_normal((len(codes), dims))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.array([f"class{c:02d}" for c in codes])


def _accuracy(clf, X, y) -> tuple[float, np.ndarray, np.ndarray]:
    P = clf.predict_proba(X)
    correct = np.asarray(clf.labels)[P.argmax(axis=1)] == y
    return float(correct.mean()), P, correct


# --------------------------------------------------------------------------- linear, real photos


def test_linear_beats_chance_on_real_photos_and_is_calibrated(photos):
    X, y = photos
    train, test = stratified_split(y, 0.3, seed=0)
    clf = fit_classifier(X[train], y[train])
    assert isinstance(clf, LinearClassifier) and clf.method == "linear"
    assert clf.labels == sorted(CLASSES)
    acc, P, correct = _accuracy(clf, X[test], y[test])
    assert acc > 0.6  # chance is 0.1
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-6)
    # calibrated: the mean top probability is close to the accuracy on unseen photos
    assert abs(P.max(axis=1).mean() - acc) < 0.12
    assert expected_calibration_error(P.max(axis=1), correct) < 0.2


def test_linear_is_deterministic(photos):
    X, y = photos[0][::2], photos[1][::2]
    a = fit_classifier(X, y, seed=3)
    b = fit_classifier(X, y, seed=3)
    assert a.temperature == b.temperature and a.l2 == b.l2
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.predict_proba(X[::7]), b.predict_proba(X[::7]))


def test_predictions_are_ranked_and_consistent(photos):
    X, y = photos
    clf = fit_classifier(X, y)
    P = clf.predict_proba(X[:30])
    preds = clf.predict(X[:30], threshold=0.0, top=3)
    for p, row in zip(preds, P):
        assert p.sure and p.method == "linear" and len(p.ranked) == 3
        probs = [q for _, q in p.ranked]
        assert probs == sorted(probs, reverse=True)
        assert p.category == p.ranked[0][0] == clf.labels[int(row.argmax())]
        assert p.probability == pytest.approx(row.max())
    assert len(clf.predict(X[:1], top=50)[0].ranked) == len(CLASSES)


# --------------------------------------------------------------------------- calibration, synthetic


def test_temperature_scaling_fixes_an_overconfident_model():
    # overlapping clusters, few items, almost no regularisation: at T = 1 the model is far too sure
    X, y = clusters(40, 5, 200, spread=6.0, seed=1)
    Xt, yt = clusters(300, 5, 200, spread=6.0, seed=99)
    clf = fit_classifier(X, y, l2=1e-4)
    raw = dataclasses.replace(clf, temperature=1.0)
    assert clf.temperature > 1.5
    acc, P, correct = _accuracy(clf, Xt, yt)
    _, P_raw, correct_raw = _accuracy(raw, Xt, yt)
    assert 0.4 < acc < 0.9  # a genuinely uncertain problem
    ece_cal = expected_calibration_error(P.max(axis=1), correct)
    ece_raw = expected_calibration_error(P_raw.max(axis=1), correct_raw)
    assert ece_raw > 0.1  # the setup really is over-confident ...
    assert ece_cal <= ece_raw / 2 and ece_cal < 0.1  # ... and scaling repairs it
    assert abs(P.max(axis=1).mean() - acc) < 0.1


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.standard_normal((4000, 6))
    z = logits / 2.5
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(6, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)


def test_threshold_makes_unsure_predictions_none():
    X, y = clusters(30, 3, 16, spread=0.3, seed=1)
    clf = fit_classifier(X, y)
    centres = np.random.default_rng(0).standard_normal((3, 16))
    # walk from the centre of class00 to that of class01: somewhere the two are equally likely
    line = np.stack([(1 - t) * centres[0] + t * centres[1] for t in np.linspace(0, 1, 201)])
    line /= np.linalg.norm(line, axis=1, keepdims=True)
    P = clf.predict_proba(line)
    ambiguous = line[np.argmin(np.abs(P[:, 0] - P[:, 1]))]
    sure, unsure = clf.predict(np.stack([centres[2], ambiguous]), threshold=0.6)
    assert sure.sure and sure.category == "class02" and sure.probability >= 0.9
    assert not unsure.sure and unsure.category is None and unsure.probability < 0.6
    assert {unsure.ranked[0][0], unsure.ranked[1][0]} == {"class00", "class01"}  # still ranked
    assert clf.predict(ambiguous, threshold=0.0)[0].sure
    assert all(p.category is None for p in clf.predict(X[:5], threshold=1.0))
    with pytest.raises(BadOption):
        clf.predict(X[:1], threshold=1.5)


def test_rare_categories_are_dropped_from_the_head():
    X, y = clusters(25, 3, 16, spread=0.3, seed=2)
    rare, _ = clusters(3, 4, 16, spread=0.3, seed=3, centre_seed=7)
    X = np.concatenate([X, rare[:3]])
    y = np.concatenate([y, ["rare"] * 3])
    clf = fit_classifier(X, y, min_per_class=5)
    assert isinstance(clf, LinearClassifier)
    assert clf.labels == ["class00", "class01", "class02"] and clf.dropped == ["rare"]


# --------------------------------------------------------------------------- kNN fallback


def test_tiny_catalogue_uses_knn_and_votes_sensibly():
    X, y = clusters(6, 3, 32, spread=0.2, seed=4)  # 18 items: too few to train
    clf = fit_classifier(X, y)
    assert isinstance(clf, KnnClassifier) and clf.method == "knn" and clf.k == 10
    queries, truth = clusters(5, 3, 32, spread=0.2, seed=5)
    P = clf.predict_proba(queries)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    preds = clf.predict(queries)
    assert [p.category for p in preds] == list(truth)
    assert all(p.method == "knn" and 0.5 < p.probability <= 1.0 for p in preds)


def test_knn_when_fewer_than_two_categories_are_learnable():
    X, y = clusters(30, 2, 16, spread=0.3, seed=6)
    y = np.where(np.arange(len(y)) < 4, "class00", "class01")  # class00 has only 4 items
    assert isinstance(fit_classifier(X, y, min_per_class=5), KnnClassifier)


def test_knn_when_the_learnable_categories_hold_less_than_half_of_the_items():
    """A shop of a few items in many categories: two categories of 6 items are learnable, 14 others have 2
    each. A linear head over the two would call every photo one of them; kNN names all 16."""
    X, y = clusters(2, 16, 16, spread=0.3, seed=9)  # 32 items, 2 per category
    y = np.asarray(y, dtype=object)
    extra, extra_y = clusters(4, 2, 16, spread=0.3, seed=10)
    X, y = np.vstack([X, extra]), np.concatenate([y, extra_y])
    counts = {c: int(n) for c, n in zip(*np.unique(y, return_counts=True))}
    assert sorted(counts.values())[-2:] == [6, 6] and len(counts) == 16  # 12 of 40 items learnable
    clf = fit_classifier(X, list(y), min_per_class=5)
    assert isinstance(clf, KnnClassifier) and len(clf.labels) == 16


def test_single_category_knn_reflects_similarity_not_certainty():
    X, _ = clusters(8, 1, 32, spread=0.2, seed=8)
    clf = fit_classifier(X, ["shoe"] * 8)
    assert isinstance(clf, KnnClassifier) and clf.labels == ["shoe"]
    near = clf.predict(X[0] + 0.01)[0]
    assert near.category == "shoe" and near.probability > 0.95
    far = clf.predict(np.random.default_rng(9).standard_normal(32))[0]  # unlike anything stored
    assert far.category is None and far.probability < 0.5
    assert far.ranked[0][0] == "shoe"


# --------------------------------------------------------------------------- saving and loading


@pytest.mark.parametrize("n_per", [30, 4], ids=["linear", "knn"])
def test_round_trip_without_pickle(n_per):
    X, y = clusters(n_per, 3, 24, spread=0.4, seed=10)
    clf = fit_classifier(X, y)
    data = clf.to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    assert all(a.dtype.kind in "fiu" for a in arrays.values())  # no object arrays anywhere
    meta = json.loads(arrays["meta"].tobytes())
    assert meta["method"] == clf.method and meta["labels"] == clf.labels and meta["dims"] == 24
    assert meta["version"] == 1 and meta["temperature"] == clf.temperature
    back = classifier_from_bytes(data)
    assert type(back) is type(clf) and back.labels == clf.labels
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.predict(X[:3]) == clf.predict(X[:3])


def _rewrite(data: bytes, **changes) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    for key, value in changes.items():
        if key == "meta":
            meta.update(value)
        else:
            arrays[key] = value
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_corrupt_or_foreign_bytes_raise_a_clear_error():
    X, y = clusters(30, 3, 24, spread=0.4, seed=11)
    data = fit_classifier(X, y).to_bytes()
    assert isinstance(classifier_from_bytes(_rewrite(data)), LinearClassifier)  # the rewriter itself is sound
    pickled, no_meta, text_zip = io.BytesIO(), io.BytesIO(), io.BytesIO()
    np.savez(pickled, meta=np.array([{"evil": True}], dtype=object))
    np.savez(no_meta, weights=np.zeros((24, 3), np.float32))
    with zipfile.ZipFile(text_zip, "w") as zf:
        zf.writestr("meta.npy", "not an array")
    bad = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "garbage": bytes(range(256)) * 4,
        "zip of text": text_zip.getvalue(),
        "no metadata": no_meta.getvalue(),
        "pickled object array": pickled.getvalue(),
        "wrong version": _rewrite(data, meta={"version": 99}),
        "wrong format": _rewrite(data, meta={"format": "something-else"}),
        "wrong shape": _rewrite(data, weights=np.zeros((5, 3), np.float32)),
        "label count": _rewrite(data, meta={"labels": ["a", "b"]}),
        "nan weights": _rewrite(data, weights=np.full((24, 3), np.nan, np.float32)),
        "bad temperature": _rewrite(data, meta={"temperature": -1.0}),
        "empty bias": _rewrite(data, bias=np.zeros(0, np.float32)),
        "unknown compression in the zip directory": zip_directory_damaged(data, "method"),
        "encryption flag in the zip directory": zip_directory_damaged(data, "encrypted"),
    }
    for name, blob in bad.items():
        with pytest.raises(ClassifierDataError) as info:
            classifier_from_bytes(blob)
        assert isinstance(info.value, RecommenderError) and isinstance(info.value, ValueError), name
        assert str(info.value), name


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused():
    X, y = clusters(30, 3, 24, spread=0.4, seed=12)
    with pytest.raises(CatalogEmpty):
        fit_classifier(np.zeros((0, 24), np.float32), [])
    with pytest.raises(BadOption):
        fit_classifier(X, y[:-1])
    clf = fit_classifier(X, y)
    with pytest.raises(BadOption, match="24"):
        clf.predict_proba(np.ones((2, 25), np.float32))
    with pytest.raises(BadOption):
        clf.predict_proba(np.full((1, 24), np.nan, np.float32))


def test_fitted_weights_minimise_the_penalised_loss_on_standardised_features() -> None:
    """The fit folds the standardisation into the weights instead of copying the matrix. Checked from
    outside: at the weights it returns, the gradient of mean cross-entropy + l2/2 |W|^2 on explicitly
    standardised rows (numpy, float64) is zero. Features with a mean far from 0 and unequal spreads make a
    wrongly folded mean or scale show."""
    rng = np.random.default_rng(5)
    codes = np.arange(3_000) % 4
    X = (rng.normal(size=(4, 24))[codes] + rng.normal(size=(3_000, 24))) * rng.uniform(0.1, 3, 24) + 5.0
    clf = fit_linear(X.astype(np.float32), [f"c{c}" for c in codes], l2=0.05, calibrate=False, max_iter=500)
    Xs = (X - clf.mean.astype(np.float64)) / clf.scale.astype(np.float64)
    W, b = clf.weights.astype(np.float64), clf.bias.astype(np.float64)
    Z = Xs @ W + b
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(len(codes)), codes] -= 1.0  # dLoss/dlogits, times n
    grad_W, grad_b = Xs.T @ P / len(codes) + 0.05 * W, P.mean(axis=0)
    assert np.abs(grad_W).max() < 1e-3 and np.abs(grad_b).max() < 1e-3, (np.abs(grad_W).max(), np.abs(grad_b).max())
    np.testing.assert_allclose(clf.mean, X.mean(axis=0), rtol=1e-4)


def test_fitting_on_chosen_rows_equals_fitting_on_their_copy() -> None:
    """fit_linear(X, y, rows=r) reads X[r] a piece at a time (slices where r runs on, gathers where it
    skips): the same classifier as fitted on the copy X[r]."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9_000, 32)).astype(np.float32) + np.repeat(rng.normal(size=(3, 32)), 3_000, axis=0)
    rows = np.concatenate([np.arange(0, 5_000), np.arange(5_003, 9_000, 2)])  # runs on, then skips
    y = [f"c{i // 3_000}" for i in rows]
    a = fit_linear(X, y, rows=rows, max_iter=30)
    b = fit_linear(np.ascontiguousarray(X[rows]), y, max_iter=30)
    assert a.temperature == pytest.approx(b.temperature, rel=1e-3) and a.l2 == b.l2
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.predict_proba(X[:50]), b.predict_proba(X[:50]), atol=1e-4)
    with pytest.raises(BadOption):
        fit_linear(X, y[:-1], rows=rows)


def test_fitting_copies_no_more_than_a_piece_of_the_training_matrix() -> None:
    """The head is fitted beside the index and the model. Fitting once held four copies of the (rows, dims)
    matrix (a float64 one for the spread, the standardised one, its two halves), which took a 21,215-item
    catalogue's import to 2,102 MB; then one standardised copy plus the rows of the categories it keeps (2.4x
    the matrix here). Now nothing the size of the matrix is made: the spread, the loss and its gradient are
    summed a piece of TRAIN_ROWS rows at a time, also when a rare category is left out. numpy's arrays are
    traced by tracemalloc, torch's are not (the pieces it gathers are as big as numpy's)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 256)).astype(np.float32)
    codes = np.arange(12_000) % 12
    X = centres[codes] + rng.normal(scale=2.0, size=(12_000, 256)).astype(np.float32)
    labels = [f"c{c}" for c in codes]
    labels[5] = labels[17] = "rare"  # too rare to learn: its rows are skipped, not copied around
    fit_classifier(X[:240], labels[:240], max_iter=2)  # imports torch.optim & co. before tracing
    tracemalloc.start()
    try:
        clf = fit_classifier(X, labels, max_iter=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clf.method == "linear" and len(clf.labels) == 12 and clf.dropped == ["rare"]
    assert TRAIN_ROWS * 256 * 4 < 0.4 * X.nbytes  # a piece is a third of the matrix
    assert peak < 0.9 * X.nbytes, f"fitting peaked at {peak / X.nbytes:.2f} times the matrix"
    P = clf.predict_proba(X[:500])
    assert np.mean(np.asarray(clf.labels)[P.argmax(1)] == np.array([f"c{c}" for c in codes[:500]])) > 0.9
