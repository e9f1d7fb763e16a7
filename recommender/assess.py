"""`lookalike evaluate`: score a stored catalogue and write the report.

Works on the stored embeddings only (no model is loaded): retrieval quality leave-one-out over
every item, classifier quality on a stratified held-out split, plus query -> results grids.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import classify
from .errors import CatalogEmpty
from .evaluate import (
    ClassificationReport,
    classification_metrics,
    expected_calibration_error,
    retrieval_metrics,
    stratified_split,
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
) -> tuple[ClassificationReport, dict[str, float]]:
    train, test = stratified_split(list(y), test_fraction=test_fraction, seed=seed)
    clf = classify.fit_classifier(X[train], list(y[train]), seed=seed)
    proba = clf.predict_proba(X[test])
    labels = list(clf.labels)
    top = proba.argmax(axis=1)
    y_pred = [labels[i] for i in top]
    report = classification_metrics(list(y[test]), y_pred, sorted(set(y)))
    confidence = proba.max(axis=1)
    correct = np.asarray(y_pred) == y[test]
    extra = {
        "classifier": clf.method,
        "train items": int(len(train)),
        "test items": int(len(test)),
        f"coverage@{threshold:g}": float((confidence >= threshold).mean()),
        f"accuracy when sure@{threshold:g}": float(correct[confidence >= threshold].mean())
        if (confidence >= threshold).any()
        else 0.0,
        "ECE": expected_calibration_error(confidence, correct),
    }
    return report, extra


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
