"""The fast path for a backbone on a CPU: its PyTorch graph exported once to ONNX and run by ONNX
Runtime, measured faster per backbone (docs/BENCHMARKS.md, bench/throughput.py).

`accelerate(backbone, cache_dir, threads, precision)` returns the same Backbone with its modules (`net`,
and `trunk` where it has one) replaced by faster callables behind the same call, so every method of
the backbone keeps working. The export is cached per model, weights, input size and library
versions; a cached file that is corrupt, stale or from another version is rebuilt, never trusted.
The first images of the first real batch are also run through PyTorch and compared: a runtime that disagrees is dropped
(with a warning) and PyTorch serves. Without onnxruntime installed, PyTorch serves from the start.

Precision (`Settings.precision`, `LOOKALIKE_PRECISION`): "fp32", "int8" (ONNX Runtime on a statically
quantized export, quantize.py: checked by the cosine of its vectors to PyTorch's), "bf16" (PyTorch,
channels-last, bfloat16 autocast on oneDNN: only on a CPU with AVX512-BF16 or AMX), or "auto" (the
default): int8 for the backbones whose quality was measured to hold in it (`AUTO_PRECISION`), float32 for
the others. Each one's speed and its effect on quality are in docs/BENCHMARKS.md.

Threads are set deliberately: the session runs on `threads` cores without spinning, so the image
decoding threads beside it are not starved of the two cores this machine has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BadOption

if TYPE_CHECKING:
    import torch

    from .backbones import Backbone

log = logging.getLogger(__name__)

VERIFY_IMAGES = 4  # images of the first real batch also run through PyTorch (vgg16: 0.8 s, not 3 s for 16)
TOLERANCE = 1e-3  # largest difference between the two runtimes' outputs on the first real batch (float32)
FORMAT = 1  # bump when the export itself changes
PRECISIONS = ("auto", "fp32", "int8", "bf16")
# "auto": a backbone's precision where reduced precision was measured to keep its quality figures within
# noise (docs/BENCHMARKS.md, issue #9): efficientnet-lite0 in int8 (leave-one-out precision@10 0.6434 ->
# 0.6428, accuracy 0.796 -> 0.799, street-to-shop within paired-bootstrap noise) at twice the speed;
# efficientnet-lite2 in int8 (precision@10 0.6449 -> 0.6438, accuracy -0.005 over three splits that
# themselves differ by 0.027, street-to-shop within noise) at 2.4 times the speed.
# vgg16's real weights cannot be measured here, so it stays float32; so do the others.
AUTO_PRECISION = {"efficientnet-lite0": "int8", "efficientnet-lite2": "int8"}
# reduced precision: the least mean cosine between its outputs and float32 PyTorch's on the first real batch
# (measured on fashion-products photos with efficientnet-lite0: int8 0.997, bf16 0.9997)
AGREEMENT = {"int8": 0.97, "bf16": 0.995}
# Light models whose forward pass of one batch is too short to split across cores well: with
# `threads` = 0 they run one session thread per call and one call per core at once (`Backbone.lanes`),
# so no thread of a forward pass waits for another that a decoding thread has taken the core from.
# Heavy ones (vgg16: same throughput either way, measured) keep all cores on each call: one photo
# answers sooner.
DATA_PARALLEL = frozenset({"efficientnet-lite0", "efficientnet-lite2", "tiny"})
# int8: how many of the first convolutions stay float32 (quantize.py). efficientnet-lite0's first three
# (the stem and block 0, at 112x112) keep its vectors at a cosine of 0.997 to float32's, against 0.994 with
# only the first and 0.987 with none: bench/quantize_variants.py, docs/BENCHMARKS.md. Others keep only the
# one that reads the photo.
INT8_FLOAT_CONVS = {"efficientnet-lite0": 3}


# glibc's malloc: allocations of this size and more get their own pages, returned to the system when freed
# (M_MMAP_THRESHOLD, fixed, instead of glibc raising it as big arrays come and go), and at most this many
# heaps (M_ARENA_MAX). See tune_allocator.
MMAP_THRESHOLD, ARENA_MAX = 1 << 20, 2


def tune_allocator() -> bool:
    """Keep freed matrices from piling up in glibc's heaps (a process's entry point calls it once, before
    its threads start). A catalogue head's fit allocates and frees matrices of tens of MB many times over
    from several threads; with glibc's defaults the freed ones stay in the process: a 21,215-item import
    peaked at 1,908 MB, 1,586 MB with these settings (docs/BENCHMARKS.md). False where the C library is not
    glibc (nothing changed)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        m_arena_max, m_mmap_threshold = -8, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(libc.mallopt(m_arena_max, ARENA_MAX))
    except (OSError, AttributeError):
        return False


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("LOOKALIKE_CACHE_DIR") or Path.home() / ".cache" / "lookalike") / "onnx"


def accelerate(backbone: Backbone, cache_dir: Path | None = None, threads: int = 0, precision: str = "fp32") -> Backbone:
    """The backbone on its fast path where it can be (see the module docstring); else unchanged."""
    if precision not in PRECISIONS:
        raise BadOption(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    precision = resolve_precision(backbone.name, precision)
    if precision == "bf16":
        return _bfloat16(backbone)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("onnxruntime is not installed: %s runs on PyTorch", backbone.name)
        return backbone
    cache = cache_dir or default_cache_dir()
    lanes = cores() if threads == 0 and backbone.name in DATA_PARALLEL else 1
    replaced: dict[str, Any] = {}
    for part in ("net", "trunk"):
        module = getattr(backbone, part, None)
        if module is None:
            continue
        try:
            session = _session(module, f"{backbone.name}-{part}", backbone, cache, 1 if lanes > 1 else threads, precision)
        except Exception as e:  # an export or a runtime that fails: PyTorch serves
            log.warning("ONNX Runtime unavailable for %s (%s): %s; PyTorch serves", backbone.name, part, e)
            continue
        replaced[part] = Checked(session, module, f"{backbone.name} {part}", AGREEMENT.get(precision))
    if not replaced:
        return backbone
    if "net" not in replaced:  # PyTorch serves the embedding: its passes use every core, so one at a time
        lanes = 1
    log.info("%s runs on ONNX Runtime (%s, %s, %d at once)", backbone.name, ", ".join(replaced), precision, lanes)
    return dataclasses.replace(backbone, lanes=lanes, **replaced)


def resolve_precision(name: str, precision: str) -> str:
    """The precision a backbone runs in: `precision` itself, or for "auto" its measured choice."""
    return AUTO_PRECISION.get(name, "fp32") if precision == "auto" else precision


def _bfloat16(backbone: Backbone) -> Backbone:
    import torch

    if not (torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported()):
        log.warning("this CPU has no bfloat16 instructions (AVX512-BF16, AMX): %s runs in float32", backbone.name)
        return backbone
    replaced: dict[str, Any] = {
        part: Checked(BFloat16(module), module, f"{backbone.name} {part}", AGREEMENT["bf16"])
        for part in ("net", "trunk")
        if (module := getattr(backbone, part, None)) is not None
    }
    log.info("%s runs on PyTorch in bfloat16 (%s)", backbone.name, ", ".join(replaced))
    return dataclasses.replace(backbone, **replaced)


def fingerprint(module: torch.nn.Module, name: str, input_size: int) -> str:
    """Names the export: model, its weights, input size, and the versions that made and run it."""
    import onnxruntime
    import torch

    h = hashlib.sha256(f"{FORMAT}|{name}|{input_size}|{torch.__version__}|{onnxruntime.__version__}".encode())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _session(
    module: torch.nn.Module, name: str, backbone: Backbone, cache: Path, threads: int, precision: str, retried: bool = False
) -> Any:
    import onnxruntime

    key = fingerprint(module, name, backbone.input_size)
    path = cache / f"{name}-{key}.onnx"
    meta = path.with_suffix(".json")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    fresh = not _trusted(path, meta, key)
    if fresh:
        _export(module, backbone.input_size, path, meta, key)
    quantized = False
    if precision == "int8":
        try:
            path, fresh = _int8(path, key, backbone, fresh)
            quantized = True
        except Exception as e:  # no calibration photos, a quantizer that fails, refused before: float32 serves
            log.warning("no int8 export of %s (%s): float32 serves", name, e)
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        if quantized and (fresh or retried):  # made just now, or again after a cached one failed: it will not load
            log.warning("int8 export of %s cannot be loaded (%s): float32 serves", name, e)
            path.with_suffix(".json").write_text(json.dumps({"refused": path.name}))  # not quantized at every start
            return _session(module, name, backbone, cache, threads, "fp32")
        if fresh or retried:
            raise
        log.warning("cached ONNX export %s unreadable (%s): exporting again", path, e)
        path.unlink(missing_ok=True)
        return _session(module, name, backbone, cache, threads, precision, retried=True)


def _int8(fp32: Path, key: str, backbone: Backbone, fresh: bool) -> tuple[Path, bool]:
    """The int8 export made from the float32 one (quantize.py), cached beside it under its own key; and whether
    it was made just now."""
    from . import images, quantize

    photos = quantize.calibration_photos()
    float_convs = INT8_FLOAT_CONVS.get(backbone.name, 1)
    qkey = f"{key}-int8-{quantize.calibration_key(photos, float_convs)}"
    path = fp32.with_name(fp32.name.replace(key, qkey))
    meta = path.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(meta.read_text()).get("refused") == path.name:
            raise RuntimeError("this ONNX Runtime could not load it before")
    if fresh or not _trusted(path, meta, qkey):
        quantize.quantize(fp32, path, lambda p: backbone.prepare(images.load_image(p)[0]), photos, float_convs)
        quantize.record(meta, qkey, _sha256(path))
        return path, True
    return path, False


def _trusted(path: Path, meta: Path, key: str) -> bool:
    """The cached file is the export for this key, whole (its recorded hash matches its bytes)."""
    try:
        recorded = json.loads(meta.read_text())
        return bool(recorded.get("key") == key and recorded.get("sha256") == _sha256(path))
    except (OSError, ValueError, AttributeError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _export(module: torch.nn.Module, input_size: int, path: Path, meta: Path, key: str) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    example = torch.zeros(1, 3, input_size, input_size)
    try:
        with torch.inference_mode(), warnings.catch_warnings():  # once, at start-up: the exporter's chatter
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["out"],
                dynamic_axes={"images": {0: "n"}, "out": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)  # whole or not at all: a crash never leaves half a file under the real name
    finally:
        tmp.unlink(missing_ok=True)  # an export that failed leaves nothing behind
    meta.write_text(json.dumps({"key": key, "sha256": _sha256(path)}))
    log.info("exported %s to ONNX (%s)", key, path)


class BFloat16:
    """A torch module run channels-last (oneDNN's layout for convolutions) under bfloat16 autocast;
    float32 out."""

    def __init__(self, module: torch.nn.Module) -> None:
        import torch

        self.module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(batch.contiguous(memory_format=torch.channels_last)).float()


class Checked:
    """A fast runtime behind a torch module's call: tensor in, tensor out. Its first batch is also run
    through the module and compared (float32: elementwise within TOLERANCE; reduced precision: mean
    cosine per image of at least `min_cosine`); a disagreement hands every later call to the module."""

    def __init__(self, fast: Any, module: torch.nn.Module, what: str, min_cosine: float | None = None) -> None:
        self.session = fast  # an onnxruntime.InferenceSession, or a callable on tensors (BFloat16)
        self.module = module
        self.what = what
        self.min_cosine = min_cosine
        self.verified = False
        self.failed = False
        self._lock = threading.Lock()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        if self.failed:
            return self.module(batch)
        if callable(self.session):
            out = self.session(batch)
        else:
            out = torch.from_numpy(self.session.run(None, {"images": batch.contiguous().numpy()})[0])
        if not self.verified:
            with self._lock:
                if not self.verified:
                    self._verify(batch[:VERIFY_IMAGES], out[:VERIFY_IMAGES])
            if self.failed:
                return self.module(batch)
        return out

    def _verify(self, batch: torch.Tensor, out: torch.Tensor) -> None:
        import torch

        with torch.inference_mode():
            expected = self.module(batch).float()
        if self.min_cosine is None:
            scale = max(float(expected.abs().max()), 1.0)
            worst = float((out.float() - expected).abs().max()) / scale
            bad = not np.isfinite(worst) or worst > TOLERANCE
        else:
            worst = float(
                torch.nn.functional.cosine_similarity(out.detach().float().flatten(1), expected.flatten(1), dim=1).mean()
            )
            bad = not np.isfinite(worst) or worst < self.min_cosine
        if bad:
            self.failed = True
            log.warning("the fast runtime disagrees with PyTorch on %s (%.3g); PyTorch serves", self.what, worst)
        self.verified = True

    def eval(self) -> Checked:  # what callers of a torch module may call
        return self
