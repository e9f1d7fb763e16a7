"""The community simulation of bench/street2shop.py (issue #10 items 4 and 5): labelled member photos and adaptation.

* **Labels** (item 4): a guild's moderators label ``n`` of the 120 demo photos (a seeded sample, ``n / 10`` of
  each kind), each with its kind's catalogue category (:data:`CANONICAL`, one of the kind's accepted set). The
  figures are then measured on the *other* ``120 - n`` photos (and on all no-clothing photos), against the same
  head without labels on those same photos, averaged over ``seeds`` samples. Three ways to use the labels, as
  the engine does: the instant kNN vote (``CatalogueHead.decide(members=...)``), the head refitted with them
  (``head.fit_head(members=...)``), and both.
* **Adaptation** (item 5): an ``adapt.DomainState`` fed with the member photos' vectors as they arrive (never
  their labels): the 120 photos come in a seeded order, each is aligned with the state made from the photos before
  it (``DomainState.align``, reference = the catalogue's mean vector), then fed in; the no-clothing photos are
  aligned with the state after all 120.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recommender import adapt, head

CANONICAL = {  # kind -> the category a moderator labels a photo of it with (in bench/street2shop.ACCEPT[kind])
    "dress": "Dresses",
    "hat": "Caps",
    "longsleeve": "Tshirts",
    "outwear": "Jackets",
    "pants": "Trousers",
    "shirt": "Shirts",
    "shoes": "Casual Shoes",
    "shorts": "Shorts",
    "skirt": "Skirts",
    "t-shirt": "Tshirts",
}

Figures = Callable[..., dict[str, float]]  # street2shop.figures(garments, ooc, kinds, types)
Answer = Callable[..., list]  # street2shop.answer(hd, Q, G, types, members=None)


def labelled_sample(kinds: Sequence[str], n: int, seed: int) -> np.ndarray:
    """``n`` photo indices, the same number of each kind (seeded), sorted."""
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(kinds):
        by_kind.setdefault(k, []).append(i)
    per = n // len(by_kind)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(v, per, replace=False) for _, v in sorted(by_kind.items())]))


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {c: float(np.mean([r[c] for r in rows])) for c in rows[0]}


def labels_rows(
    hd: head.CatalogueHead, G: np.ndarray, types: np.ndarray, V: np.ndarray, owner: np.ndarray, Q: np.ndarray,
    Oo: np.ndarray, kinds: Sequence[str], answer: Answer, figures: Figures, *, ns: Sequence[int] = (10, 50, 100),
    seeds: int = 3, refit: bool = True, log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """The figures on the photos not labelled, after ``n`` labelled ones, averaged over ``seeds`` samples."""
    rows: dict[str, dict[str, float]] = {}
    kinds_arr = np.asarray(kinds)
    for n in ns:
        acc: dict[str, list[dict[str, float]]] = {}
        for seed in range(seeds):
            lab = labelled_sample(kinds, n, seed)
            rest = np.setdiff1d(np.arange(len(Q)), lab)
            members = (Q[lab], [CANONICAL[k] for k in kinds_arr[lab]])
            rk = list(kinds_arr[rest])

            def score(h: head.CatalogueHead, m: head.Members | None, Qr: np.ndarray = Q[rest], rk: list = rk) -> dict[str, float]:
                return figures(answer(h, Qr, G, types, members=m), answer(h, Oo, G, types, members=m), rk, types)

            acc.setdefault("none", []).append(score(hd, None))
            acc.setdefault("vote", []).append(score(hd, members))
            if refit:
                refitted = head.fit_head(G, list(types), V, owner, members=members)
                acc.setdefault("refit", []).append(score(refitted, None))
                acc.setdefault("both", []).append(score(refitted, members))
            log(f"community n={n} seed={seed}: " + ", ".join(f"{k} p@10 {v[-1]['precision@10']:.3f} "
                f"acc {v[-1]['category accuracy']:.3f}" for k, v in acc.items()))  # fmt: skip
        rest_n = len(Q) - n
        names = {
            "none": f"no labels, on the same {rest_n} photos (baseline for the rows below)",
            "vote": f"{n} labelled: their kNN vote in decide (instant)",
            "refit": f"{n} labelled: head refitted with them (next fit)",
            "both": f"{n} labelled: refitted head + kNN vote (what the engine does)",
        }
        for key, rs in acc.items():
            rows[f"community, {n} labelled, {seeds} seeds: " + names[key]] = _mean(rs)
    return rows


def adaptation_rows(
    hd: head.CatalogueHead, G: np.ndarray, types: np.ndarray, Q: np.ndarray, Oo: np.ndarray, kinds: Sequence[str],
    answer: Answer, figures: Figures, *, seeds: int = 3,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Adaptation on, photos arriving in ``seeds`` seeded orders (figures averaged)."""
    reference = G.mean(axis=0)
    runs = []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(Q))
        state = adapt.DomainState.empty(G.shape[1])
        aligned = np.zeros_like(Q)
        for i in order:
            aligned[i] = state.align(Q[i], reference)
            state = state.update(Q[i])
        runs.append(figures(answer(hd, aligned, G, types), answer(hd, state.align(Oo, reference), G, types), list(kinds), types))
    return {f"adaptation on (DomainState fed as photos arrive, {seeds} orders)": _mean(runs)}
