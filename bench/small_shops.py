"""Shops of one category, for bench/street2shop.py ``--one-category N``: a shoe shop, a hat community.

One shop per articleType of :data:`TYPES`: ``N`` of its gallery items (a seeded draw) and their member-like views,
its head fitted by ``head.fit_head`` as the engine does; all 120 demo photos and the no-clothing photos are asked.
"quick" is the head fitted from the items alone, without views: the one that answers until the full fit ends.
A photo is "of its kind" when its kind accepts the shop's type (street2shop.ACCEPT). Each figure is the mean
over the shops, except "right when sure", which pools every shop's sure answers. The same heads with
``typical`` emptied are the rule before 2026-12-07 (a one-category catalogue's category had probability 1),
measured in the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from recommender import head

Answer = Callable[..., list]  # street2shop.answer(hd, Q, G, types): (decision, order) per photo, as the engine does
TYPES = ("Tshirts", "Jeans", "Casual Shoes", "Shorts", "Skirts", "Caps", "Dresses", "Sweaters", "Jackets", "Handbags")


def one_category_rows(
    G: np.ndarray, types: np.ndarray, V: np.ndarray, owner: np.ndarray, Q: np.ndarray, Oo: np.ndarray,
    kinds: Sequence[str], accept: Mapping[str, set[str]], n: int, answer: Answer,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """{"before" | "now" | "quick": figures} for one-category shops of ``n`` items (see the module docstring)."""
    per: dict[str, list[list[float]]] = {"before": [], "now": [], "quick": []}
    tally = {name: np.zeros(2) for name in per}
    for t in TYPES:
        pool = np.flatnonzero(types == t)
        if len(pool) == 0:
            continue
        sub = np.sort(np.random.default_rng(0).choice(pool, min(n, len(pool)), replace=False))
        keep = np.isin(owner, sub)
        remap = {int(o): i for i, o in enumerate(sub)}
        now = head.fit_head(G[sub], list(types[sub]), V[keep], np.array([remap[int(o)] for o in owner[keep]]))
        ink = np.array([t in accept[kind] for kind in kinds])
        quick = head.fit_head(G[sub], list(types[sub]))
        for name, hd in (("before", replace(now, typical=())), ("now", now), ("quick", quick)):
            garments = [d for d, _ in answer(hd, Q, G[sub], types[sub])]
            away = [d for d, _ in answer(hd, Oo, G[sub], types[sub])]
            sure = np.array([d.prediction.category is not None for d in garments])
            answered = np.array([not d.nothing_like_this for d in garments])
            tally[name] += [(sure & ink).sum(), sure.sum()]
            per[name].append([
                sure[ink].mean() if ink.any() else np.nan, sure[~ink].mean(),
                float(np.mean([d.prediction.category is not None for d in away])),
                answered[ink].mean() if ink.any() else np.nan, answered[~ink].mean(),
                float(np.mean([not d.nothing_like_this for d in away])),
            ])  # fmt: skip
    cols = ("its kind: sure", "other kinds: sure", "no clothing: sure", "its kind: answered", "other kinds: answered",
            "no clothing: answered")  # fmt: skip
    rows = {}
    for name, values in per.items():
        rows[name] = dict(zip(cols, np.nanmean(np.array(values, dtype=np.float64), axis=0).tolist()))
        rows[name]["right when sure"] = float(tally[name][0] / max(tally[name][1], 1))
        rows[name]["sure answers"] = float(tally[name][1])
    return rows
