"""`lookalike evaluate`: score a stored catalogue and write the report.

Works on the stored embeddings only (no model is loaded): retrieval quality leave-one-out over
every item, classifier quality on a stratified held-out split, plus query -> results grids.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import classify, images
from .errors import BadImage, BadOption, CatalogEmpty
from .evaluate import (
    ClassificationReport,
    classification_metrics,
    expected_calibration_error,
    retrieval_metrics,
    stratified_split,
    street_metrics,
)
from .report import QueryExample, write_report
from .store import Store


@dataclass
class Evaluation:
    metrics: dict[str, float | str]
    classification: ClassificationReport
    files: dict[str, Path]


def _score(
    X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, threshold: float
) -> tuple[ClassificationReport, dict[str, float | str]]:
    train, test = stratified_split(list(y), test_fraction=test_fraction, seed=seed)
    clf = classify.fit_classifier(X[train], list(y[train]), seed=seed)
    proba = clf.predict_proba(X[test])
    labels = list(clf.labels)
    top = proba.argmax(axis=1)
    y_pred = [labels[i] for i in top]
    report = classification_metrics(list(y[test]), y_pred, sorted(set(y)))
    confidence = proba.max(axis=1)
    correct = np.asarray(y_pred) == y[test]
    sure = confidence >= threshold
    coverage, sure_accuracy = float(sure.mean()), float(correct[sure].mean()) if sure.any() else 0.0
    extra: dict[str, float | str] = {
        "classifier": clf.method,
        "train items": int(len(train)),
        "test items": int(len(test)),
        f"coverage@{threshold:g}": coverage,
        f"accuracy when sure@{threshold:g}": sure_accuracy,
        "ECE": expected_calibration_error(confidence, correct),
    }
    # the report's own coverage line says the same: every item got its top category above, so it read 1.0 there
    return dataclasses.replace(report, coverage=coverage, sure_accuracy=sure_accuracy), extra


async def evaluate_catalogue(
    store: Store,
    model: str,
    *,
    guild_id: int,
    out_dir: Path,
    min_class_size: int = 20,
    test_fraction: float = 0.25,
    seed: int = 0,
    examples: int = 8,
    k: int = 5,
    threshold: float = 0.5,
) -> Evaluation:
    rows = await store.load_vectors(guild_id, model)
    if len(rows.pks) == 0:
        raise CatalogEmpty(f"The catalogue has no {model} embeddings to evaluate. Import it with --model {model} first.")
    y_all = np.asarray(rows.categories)
    names, counts = np.unique(y_all, return_counts=True)
    keep_labels = set(names[counts >= min_class_size])
    keep = np.fromiter((c in keep_labels for c in y_all), dtype=bool, count=len(y_all))
    if len(keep_labels) < 2:
        raise CatalogEmpty(f"Fewer than 2 categories have {min_class_size} or more items; lower --min-class-size.")
    X, y, pks = rows.vectors[keep], y_all[keep], rows.pks[keep]

    retrieval = await asyncio.to_thread(retrieval_metrics, X, list(y), (1, 10))
    report, extra = await asyncio.to_thread(_score, X, y, test_fraction, seed, threshold)

    rng = np.random.default_rng(seed)
    queries = rng.choice(len(X), size=min(examples, len(X)), replace=False)
    picks: list[tuple[int, list[tuple[int, float]]]] = []
    for q in queries:
        scores = X @ X[q]
        scores[q] = -np.inf
        top = np.argsort(-scores)[:k]
        picks.append((int(q), [(int(i), float(scores[i])) for i in top]))
    need = {int(pks[q]) for q, _ in picks} | {int(pks[i]) for _, res in picks for i, _ in res}
    thumbs = await store.thumbnails(list(need))
    grid = [
        QueryExample(thumbs[int(pks[q])], str(y[q]), [(thumbs[int(pks[i])], str(y[i]), s) for i, s in res]) for q, res in picks
    ]

    metrics: dict[str, float | str] = {
        "model": model,
        "items": int(len(X)),
        "categories": len(keep_labels),
        "min class size": min_class_size,
        **{k2: v for k2, v in retrieval.items() if k2 != "skipped"},
        "accuracy": report.accuracy,
        "macro-F1": report.macro_f1,
        **extra,
    }
    files = await asyncio.to_thread(
        write_report,
        out_dir,
        title=f"lookalike evaluation: {model}, {len(X)} items",
        metrics=metrics,
        classification=report,
        examples=grid,
    )
    return Evaluation(metrics, report, files)


# --------------------------------------------------------------------------- members' photos (--queries DIR)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class PhotoAnswer:
    """What the bot answered to one photo: the results it showed (best first) and its verdict."""

    categories: list[str]
    thumbnails: list[bytes]
    scores: list[float]
    category: str | None  # None: not sure
    nothing_like_this: bool


@dataclass
class QueryEvaluation:
    metrics: dict[str, float | str]
    files: dict[str, Path]


def query_photos(folder: Path) -> list[tuple[str, Path]]:
    """``(kind, path)`` of every photo in ``folder/<kind>/`` (sub-folder name = kind), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadOption(f"{folder} is not a folder of photos (one sub-folder per kind).")
    out = [(d.name, p) for d in sorted(folder.iterdir()) if d.is_dir() for p in sorted(d.iterdir())
           if p.suffix.lower() in PHOTO_SUFFIXES]  # fmt: skip
    if not out:
        raise CatalogEmpty(f"No photos in the sub-folders of {folder}.")
    return out


def read_accept(path: Path | None, kinds: list[str]) -> dict[str, set[str]]:
    """The categories accepted for each kind, lower-cased: a JSON object ``{"kind": ["Category", ...]}`` or CSV
    rows ``kind,category`` (one pair a row). Without a file a kind accepts the category of the same name."""
    accept: dict[str, set[str]] = {k.lower(): {k.lower()} for k in kinds} if path is None else {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
        except UnicodeDecodeError:
            raise BadOption(f"{path} is not UTF-8 text; save it as UTF-8 (in Excel: CSV UTF-8).") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise BadOption(f"{path}: the JSON must map each kind to a list of categories.")
            pairs = [(str(k), str(c)) for k, v in data.items() for c in v]
        except json.JSONDecodeError:
            pairs = [(r[0], r[1]) for r in csv.reader(io.StringIO(text)) if len(r) >= 2 and r[0].strip()]
        for kind, cat in pairs:
            accept.setdefault(kind.strip().lower(), set()).add(cat.strip().lower())
    missing = sorted({k for k in kinds if k.lower() not in accept})
    if missing:
        raise BadOption(f"{path}: no accepted categories for {', '.join(missing)}.")
    return accept


async def evaluate_queries(
    answer: Callable[[Path], Awaitable[PhotoAnswer]], folder: Path, *, out_dir: Path, accept_file: Path | None = None,
    examples: int = 8, seed: int = 0, progress: Callable[[int, int], None] | None = None,
    skipped: Callable[[Path, str], None] | None = None,
) -> QueryEvaluation:  # fmt: skip
    """`lookalike evaluate --queries DIR [--accept FILE]`: ask ``answer`` (the bot's own path: the engine's
    similar + verdict) about every photo in ``DIR/<kind>/`` and score it with ``evaluate.street_metrics``; the
    report shows ``examples`` photos with the results they got. A file that is no usable photo is left out
    (``skipped(path, why)``), not the end of the run; ``progress(done, total)`` after each photo."""
    if examples < 0:
        raise BadOption("--examples must be 0 or more.")
    listed = query_photos(folder)
    accept = read_accept(accept_file, [k for k, _ in listed])
    photos, answers = [], []
    for n, (kind, path) in enumerate(listed, start=1):
        try:
            answers.append(await answer(path))
            photos.append((kind, path))
        except BadImage as e:  # a stray ._photo.jpg, a broken file: one photo less
            if skipped is not None:
                skipped(path, str(e))
        if progress is not None:
            progress(n, len(listed))
    if not photos:
        raise CatalogEmpty(f"None of the {len(listed)} files in the sub-folders of {folder} could be read as a photo.")
    kinds = [k.lower() for k, _ in photos]
    metrics: dict[str, float | str] = {"photos": len(photos), "kinds": len(set(kinds))}
    if len(photos) < len(listed):
        metrics["files skipped"] = len(listed) - len(photos)
    metrics.update(street_metrics([[c.lower() for c in a.categories] for a in answers],
                                  [None if a.category is None else a.category.lower() for a in answers],
                                  [a.nothing_like_this for a in answers], kinds, accept))  # fmt: skip
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(photos), size=min(examples, len(photos)), replace=False))

    def thumb(path: Path) -> bytes:
        img, _ = images.load_image(path)
        return images.make_thumbnail(img, 256)

    grid = []
    for i in picks:
        a, (kind, path) = answers[int(i)], photos[int(i)]
        verdict = "nothing like this" if a.nothing_like_this else (a.category or "not sure")
        label = f"{kind} -> {verdict}"
        right = [c.lower() in accept[kind.lower()] for c in a.categories]  # framed green when the kind accepts it
        results = list(zip(a.thumbnails, a.categories, a.scores))
        grid.append(QueryExample(await asyncio.to_thread(thumb, path), label, results, right))
    files = await asyncio.to_thread(write_report, out_dir, title=f"lookalike: {len(photos)} members' photos",
                                    metrics=metrics, classification=None, examples=grid)  # fmt: skip
    return QueryEvaluation(metrics, files)
