"""Where the garment is: the network's own activation map, used to weight the pooling of a query.

The last convolutional layer of an ImageNet CNN fires where there is an object and stays quiet on plain walls,
beds and floors. :func:`activation_map` sums it over channels; :func:`weighted_pool` averages the maps with
weights ``activation ** power``, so the vector describes the garment more than the room around it
(``Backbone.embed_garments``). Cropping to the activated region and embedding the crop again was measured too
and did not help (docs/BENCHMARKS.md, street-to-shop ablation), so it is not offered.

Pure numpy on arrays the backbone returns (``Backbone.feature_maps``): no weights, no download, no state.
"""

from __future__ import annotations

import numpy as np

from .errors import BadOption


def activation_map(maps: np.ndarray) -> np.ndarray:
    """``(n, C, h, w)`` feature maps -> ``(n, h, w)`` activation in [0, 1] (1 at each map's peak)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4:
        raise BadOption(f"expected feature maps of shape (n, C, h, w), got {maps.shape}")
    act = np.maximum(maps, 0).sum(axis=1)
    peak = act.reshape(len(act), -1).max(axis=1) if len(act) else np.zeros(0, np.float32)
    return act / np.where(peak > 0, peak, 1.0)[:, None, None]


def weighted_pool(maps: np.ndarray, power: float = 1.0) -> np.ndarray:
    """``(n, C, h, w)`` -> ``(n, C)``: the average of each map weighted by ``activation ** power``
    (``power = 0`` is plain global average pooling; a map with no activation at all is averaged plainly)."""
    if power < 0:
        raise BadOption(f"power must be >= 0, got {power}")
    act = activation_map(maps)
    weights = np.where(act.sum(axis=(1, 2), keepdims=True) > 0, act**power, 1.0)
    weights = weights / weights.sum(axis=(1, 2), keepdims=True)
    return np.einsum("nchw,nhw->nc", np.asarray(maps, dtype=np.float32), weights)
