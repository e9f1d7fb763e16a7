"""Metrics from plain arrays, and the report pictures and page."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recommender.errors import BadOption, CatalogEmpty
from recommender.evaluate import (
    classification_metrics,
    expected_calibration_error,
    retrieval_metrics,
    stratified_split,
    top_k_neighbours,
)
from recommender.report import QueryExample, render_confusion_matrix, render_query_grid, write_report

FASHION = Path("/work/shared/data/fashion-products")


def _unit(angles_deg: list[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- retrieval, by hand

# Five unit vectors in the plane; cosine order follows the angle gaps. By hand, per query
# (neighbours best first, 1 = same label):
#   0 (a,   0deg): 10a 30b 100b 110a -> 1 0 0 1   R = 2   AP@4 = (1 + 2/4) / 2 = 0.75
#   1 (a,  10deg):  0a 30b 100b 110a -> 1 0 0 1   R = 2   AP@4 = 0.75
#   2 (b,  30deg): 10a  0a 100b 110a -> 0 0 1 0   R = 1   AP@4 = 1/3
#   3 (b, 100deg): 110a 30b 10a  0a  -> 0 1 0 0   R = 1   AP@4 = 1/2
#   4 (a, 110deg): 100b 30b 10a  0a  -> 0 0 1 1   R = 2   AP@4 = (1/3 + 2/4) / 2 = 5/12
HAND_X = _unit([0, 10, 30, 100, 110])
HAND_Y = ["a", "a", "b", "b", "a"]


def test_retrieval_metrics_match_a_hand_computed_example():
    m = retrieval_metrics(HAND_X, HAND_Y, ks=(1, 2, 4))
    assert m["precision@1"] == pytest.approx(2 / 5)
    assert m["precision@2"] == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0) / 5)
    assert m["precision@4"] == pytest.approx(8 / 20)
    assert m["map@4"] == pytest.approx((0.75 + 0.75 + 1 / 3 + 0.5 + 5 / 12) / 5)  # = 0.55
    assert m["queries"] == 5 and m["skipped"] == 0


def test_map_denominator_is_min_of_k_and_relevant_available():
    # only 4 other items: k = 10 is cut to 4, and a perfect ranking with R < 10 scores 1
    m = retrieval_metrics(HAND_X, HAND_Y, ks=(1, 10))
    assert m["precision@10"] == pytest.approx(0.4)
    assert m["map@10"] == pytest.approx(0.55)
    # two tight groups: every query's relevant items come first -> AP = 1 although R < K
    X = _unit([0, 1, 2, 90, 91, 92])
    perfect = retrieval_metrics(X, list("aaabbb"), ks=(1, 3))
    assert perfect["map@3"] == pytest.approx(1.0)
    assert perfect["precision@3"] == pytest.approx(2 / 3)  # only 2 relevant in 3 slots
    # groups of four: R = 3 relevant but only K = 2 slots -> still 1 (denominator min(K, R) = 2)
    wide = retrieval_metrics(_unit([0, 1, 2, 3, 90, 91, 92, 93]), list("aaaabbbb"), ks=(2,))
    assert wide["map@2"] == pytest.approx(1.0) and wide["precision@2"] == pytest.approx(1.0)


def test_queries_without_any_relevant_item_are_skipped():
    m = retrieval_metrics(_unit([0, 5, 90]), ["a", "a", "lonely"], ks=(1,))
    assert m["queries"] == 2 and m["skipped"] == 1 and m["precision@1"] == 1.0
    with pytest.raises(CatalogEmpty):
        retrieval_metrics(_unit([0, 5, 90]), ["x", "y", "z"])


def test_top_k_neighbours_excludes_self_and_sorts():
    X = _unit([0, 0, 10, 50])  # items 0 and 1 identical
    idx, scores = top_k_neighbours(X, 3)
    assert idx.shape == scores.shape == (4, 3)
    assert not (idx == np.arange(4)[:, None]).any()
    assert idx[0, 0] == 1 and idx[1, 0] == 0 and scores[0, 0] == pytest.approx(1.0)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert list(idx[3]) == [2, 0, 1]  # 0 and 1 tie: lower index first
    same, _ = top_k_neighbours(np.ones((40, 3), np.float32) / np.sqrt(3), 25)
    assert all(list(row) == sorted(row) for row in same)  # all tied: ascending indices
    with pytest.raises(BadOption):
        top_k_neighbours(X, 4)


def test_batched_equals_unbatched():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 32)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = [f"c{i % 7}" for i in range(300)]
    whole = retrieval_metrics(X, labels, batch=10_000)
    for batch in (1, 7, 64):
        assert retrieval_metrics(X, labels, batch=batch) == pytest.approx(whole)
    i_all, s_all = top_k_neighbours(X, 10, batch=10_000)
    i_b, s_b = top_k_neighbours(X, 10, batch=7)
    np.testing.assert_array_equal(i_all, i_b)
    np.testing.assert_allclose(s_all, s_b, atol=1e-6)


def test_retrieval_on_real_photos_beats_chance():
    if not (FASHION / "styles.csv").exists():
        pytest.skip("real product photos not available")
    kinds = ["Watches", "Socks", "Flip Flops", "Jeans", "Handbags"]
    ids: dict[str, list[str]] = defaultdict(list)
    with open(FASHION / "styles.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["articleType"] in kinds and len(ids[row["articleType"]]) < 30:
                ids[row["articleType"]].append(row["id"])
    feats, labels = [], []
    for kind in kinds:
        for i in ids[kind]:
            with Image.open(FASHION / "images" / f"{i}.jpg") as im:
                v = np.asarray(im.convert("RGB").resize((12, 16)), dtype=np.float32).ravel()
            feats.append(v / np.linalg.norm(v))
            labels.append(kind)
    m = retrieval_metrics(np.stack(feats), labels, batch=50)
    assert m["queries"] == 150
    assert m["precision@1"] > 0.5 and m["precision@10"] > 0.4  # chance is about 0.2
    assert 0.3 < m["map@10"] <= 1.0


# --------------------------------------------------------------------------- splitting


def test_stratified_split_keeps_ratios_and_is_deterministic():
    labels = ["a"] * 40 + ["b"] * 20 + ["c"] * 8 + ["d"] + ["e"] * 2
    train, test = stratified_split(labels, 0.25, seed=1)
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    got = {k: sum(labels[i] == k for i in test) for k in "abcde"}
    assert got == {"a": 10, "b": 5, "c": 2, "d": 0, "e": 1}  # the singleton stays in train
    again = stratified_split(labels, 0.25, seed=1)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.25, seed=2)[1], test)
    with pytest.raises(BadOption):
        stratified_split(labels, 1.0)


# --------------------------------------------------------------------------- classification


def test_classification_metrics_by_hand():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", None, "a"]
    r = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert r.labels == ["a", "b", "c", "d"]
    assert r.confusion.dtype == np.int64
    np.testing.assert_array_equal(
        r.confusion,
        [
            [2, 1, 0, 0, 0],
            [0, 1, 0, 0, 1],  # the None ("not sure") lands in the last column
            [1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
    )
    assert r.accuracy == pytest.approx(3 / 6)
    assert r.coverage == pytest.approx(5 / 6) and r.sure_accuracy == pytest.approx(3 / 5)
    a, b, c = r.per_class["a"], r.per_class["b"], r.per_class["c"]
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((1 / 2, 1 / 2, 1 / 2, 2))
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)  # never predicted
    # macro-F1 over the labels present in y_true (a, b, c), not d
    assert r.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert r.n == 6 and r.to_dict()["confusion"][1] == [0, 1, 0, 0, 1]


def test_unknown_labels_are_appended_once():
    r = classification_metrics(["a", "x", "a"], ["a", "a", "y"], ["a"])
    assert r.labels == ["a", "x", "y"]
    assert r.confusion.shape == (3, 4)
    assert r.confusion[1, 0] == 1 and r.confusion[0, 2] == 1
    with pytest.raises(BadOption):
        classification_metrics(["a"], [], ["a"])


def test_expected_calibration_error():
    conf = np.full(100, 0.8)
    assert expected_calibration_error(conf, np.arange(100) < 80) == pytest.approx(0.0)
    assert expected_calibration_error(np.ones(10), np.zeros(10)) == pytest.approx(1.0)
    assert expected_calibration_error(conf, np.arange(100) < 50) == pytest.approx(0.3)


# --------------------------------------------------------------------------- report


def _jpeg(colour: tuple[int, int, int], size=(60, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def _count(img: Image.Image, colour: tuple[int, int, int]) -> int:
    return int((np.asarray(img.convert("RGB")) == colour).all(axis=2).sum())


def test_confusion_heatmap_is_row_normalised_and_truncates():
    from recommender.report import DARK

    img = render_confusion_matrix(np.array([[100, 0], [0, 1]]), ["big", "small"])
    # both rows are fully correct, so both diagonal cells get the darkest colour, whatever their counts
    cell = 44
    assert _count(img, DARK) > 1.3 * cell * cell
    many = np.diag(np.arange(1, 61)).astype(np.int64)
    full = render_confusion_matrix(many, [f"label {i}" for i in range(60)], max_labels=60)
    cut = render_confusion_matrix(many, [f"label {i}" for i in range(60)], max_labels=10)
    assert cut.width < full.width and cut.height < full.height
    with pytest.raises(BadOption):
        render_confusion_matrix(np.zeros((3, 5)), ["a", "b", "c"])


def test_query_grid_frames_right_green_and_wrong_red():
    from recommender.report import GREEN, RED

    q = QueryExample(_jpeg((200, 200, 0)), "shoe", [(_jpeg((0, 0, 200)), "shoe", 0.91), (b"not a jpeg", "shoe", 0.5)])
    good = render_query_grid([q])
    assert _count(good, GREEN) > 100 and _count(good, RED) == 0
    q.results.append((_jpeg((0, 200, 0)), "hat", 0.42))
    mixed = render_query_grid([q, q])
    assert _count(mixed, RED) > 100 and mixed.height > good.height and mixed.width > good.width


def test_write_report_makes_png_and_html(tmp_path):
    y_true = ["shoe", "shoe", "hat", "hat", "bag"]
    y_pred = ["shoe", "hat", "hat", None, "bag"]
    cls = classification_metrics(y_true, y_pred, ["bag", "hat", "shoe"])
    examples = [
        QueryExample(_jpeg((120, 30, 30)), "shoe", [(_jpeg((110, 40, 30)), "shoe", 0.987), (_jpeg((9, 9, 9)), "hat", 0.5)]),
        QueryExample(_jpeg((30, 30, 120)), "hat", [(_jpeg((30, 40, 110)), "hat", 0.876)]),
    ]
    metrics = {"model": "pixels", "precision@1": 0.7933, "map@10": 0.61234567, "queries": 300}
    paths = write_report(tmp_path / "out", title="Demo <report>", metrics=metrics, classification=cls, examples=examples)
    assert set(paths) == {"report.png", "confusion.png", "queries.png", "report.html"}
    sizes = {}
    for name in ("report.png", "confusion.png", "queries.png"):
        assert paths[name].stat().st_size > 0
        with Image.open(paths[name]) as im:
            assert im.format == "PNG"
            im.load()
            sizes[name] = im.size
    assert sizes["report.png"][1] > sizes["confusion.png"][1] + sizes["queries.png"][1]
    page = paths["report.html"].read_text(encoding="utf-8")
    for text in ("0.7933", "0.6123", "300", "pixels", "Demo &lt;report&gt;", f"{cls.accuracy:.4f}", f"{cls.macro_f1:.4f}"):
        assert text in page
    assert "<script" not in page and "Demo <report>" not in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 2
    for b64 in embedded:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.width > 0

    without = write_report(
        tmp_path / "bare", title="No classifier", metrics={"precision@1": 0.5}, classification=None, examples=[]
    )
    assert "confusion.png" not in without and without["report.png"].exists()
    assert "0.5000" in without["report.html"].read_text(encoding="utf-8")


# -- street to shop: members' photos of known kinds -------------------------------------------------


def test_street_metrics_count_acceptable_results_categories_and_verdicts() -> None:
    from recommender.evaluate import open_set_metrics, street_metrics

    accept = {"t-shirt": {"Tshirts", "Tops"}, "hat": {"Caps"}}
    shown = [["Tshirts", "Tops", "Jeans"] + ["Tshirts"] * 7, ["Caps"] * 5]  # the second photo got only 5 results
    m = street_metrics(shown, ["Tops", None], [False, True], ["t-shirt", "hat"], accept)
    assert m["precision@10"] == pytest.approx((9 + 5) / 20)
    assert m["first acceptable"] == 1.0
    assert (m["category accuracy"], m["coverage"], m["accuracy when sure"], m["answered"]) == (0.5, 0.5, 1.0, 0.5)
    m = street_metrics([["Jeans"] * 10], ["Jeans"], [False], ["hat"], accept)
    assert (m["precision@10"], m["category accuracy"], m["accuracy when sure"]) == (0.0, 0.0, 0.0)
    with pytest.raises(BadOption, match="no accepted categories for: dress"):
        street_metrics([["Dresses"]], [None], [False], ["dress"], accept)
    assert open_set_metrics(["Caps", None, None, None], [False, True, True, False]) == {
        "sure category": 0.25,
        "nothing like this": 0.5,
    }


async def test_evaluate_queries_scores_a_folder_of_photos_through_a_real_head(tmp_path) -> None:
    import shutil

    from recommender import images
    from recommender.assess import PhotoAnswer, evaluate_queries, read_accept
    from recommender.head import train_head

    from helpers import DEMO, backbone, demo_photos

    net = backbone("tiny")
    catalogue = [p for p in demo_photos() if int(p.stem[0], 16) % 2 == 0]  # about half of each kind
    cats = [p.parent.name.capitalize() for p in catalogue]
    G = net.embed([images.load_image(p)[0] for p in catalogue])
    head = train_head(G, cats, lambda idx: [images.load_image(catalogue[i])[0] for i in idx], net.embed, max_views=60)
    thumbs = [images.make_thumbnail(images.load_image(p)[0], 64) for p in catalogue]

    async def answer(path) -> PhotoAnswer:
        q = net.embed([images.load_image(path)[0]])[0]
        s = G @ q
        idx = np.argsort(-s, kind="stable")[:100]
        d = head.decide(q, s[idx], [cats[i] for i in idx], 10)
        shown = idx[d.order]
        return PhotoAnswer([cats[i] for i in shown], [thumbs[i] for i in shown], [float(s[i]) for i in shown],
                           d.prediction.category, d.nothing_like_this)  # fmt: skip

    queries = tmp_path / "queries"
    for kind in ("shoes", "hat"):
        (queries / kind).mkdir(parents=True)
        for p in [p for p in demo_photos(kind) if p not in catalogue][:3]:
            shutil.copy(p, queries / kind / p.name)
    (queries / "notes.txt").write_text("not a kind")
    result = await evaluate_queries(answer, queries, out_dir=tmp_path / "report", examples=4)
    m = result.metrics
    assert m["photos"] == 6 and m["kinds"] == 2
    assert 0.0 <= m["precision@10"] <= 1.0 and 0.0 <= m["answered"] <= 1.0
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "queries.png").is_file()
    # the default mapping is "kind = category of the same name"; a file maps kinds to several categories
    mapping = tmp_path / "accept.json"
    mapping.write_text('{"shoes": ["Shoes", "Sandals"], "hat": ["Hat", "Caps"]}')
    assert read_accept(mapping, ["shoes", "hat"]) == {"shoes": {"shoes", "sandals"}, "hat": {"hat", "caps"}}
    csv_mapping = tmp_path / "accept.csv"
    csv_mapping.write_text("shoes,Shoes\nhat,Caps\n")
    assert read_accept(csv_mapping, ["shoes", "hat"]) == {"shoes": {"shoes"}, "hat": {"caps"}}
    with pytest.raises(BadOption, match="no accepted categories for dress"):
        read_accept(csv_mapping, ["dress"])
    assert DEMO.is_dir()


def test_an_accept_file_saved_by_excel_or_in_latin_1(tmp_path: Path) -> None:
    """A BOM (Excel's CSV UTF-8) misread the first kind; a latin-1 file crashed with UnicodeDecodeError."""
    from recommender.assess import read_accept

    bom = tmp_path / "accept_bom.csv"
    bom.write_bytes("hat,hat\nshirt,shirt\n".encode("utf-8-sig"))
    assert read_accept(bom, ["hat", "shirt"]) == {"hat": {"hat"}, "shirt": {"shirt"}}
    latin = tmp_path / "accept_latin1.csv"
    latin.write_bytes("hat,hat\nshirt,chemise d'été\n".encode("latin-1"))
    with pytest.raises(BadOption, match="accept_latin1.csv is not UTF-8 text; save it as UTF-8"):
        read_accept(latin, ["hat", "shirt"])
