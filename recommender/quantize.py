"""int8 exports of a backbone for ONNX Runtime: static quantization (QDQ, int8 weights per output
channel, uint8 activations) whose activation ranges are measured on a fixed set of photos shipped with
the package (`calibration/`, CC0), so the same model gives the same int8 file, and the same vectors,
on every machine.

`precision = "int8"` (`LOOKALIKE_PRECISION=int8`), and what "auto" picks for `efficientnet-lite0` and
`efficientnet-lite2` (runtime.AUTO_PRECISION): it runs them 2-2.4 times as fast on a CPU with VNNI and moves
their vectors a little (cosine to the float32 ones 0.997 on average on fashion-products photos for lite0,
with its first three convolutions kept in float32; 0.995 for lite2); docs/BENCHMARKS.md has the speed and
the effect on quality.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).with_name("calibration")
CALIBRATION_BATCH = 2  # photos per calibration run: the augmented model keeps every activation of a batch


def calibration_photos(folder: Path = CALIBRATION_DIR) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def calibration_key(photos: list[Path], float_convs: int = 1) -> str:
    """Names the calibration set (its bytes), the convolutions kept in float32 and the quantizer's version:
    part of the int8 cache key."""
    import onnxruntime

    h = hashlib.sha256(f"int8|qdq|per-channel|minmax|float-convs={float_convs}|{onnxruntime.__version__}".encode())
    for p in photos:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def quantize(fp32: Path, out: Path, prepare: Callable[[Path], np.ndarray], photos: list[Path], float_convs: int = 1) -> None:
    """Write the int8 version of the float32 export `fp32` to `out` (whole or not at all).

    `prepare` turns a calibration photo into the network's input, exactly as the backbone does. The first
    `float_convs` convolutions stay float32: the first reads the photo itself, whose uint8 steps over the
    normalised range fall between the pixels' own; they run at full resolution on few channels, so they
    cost little time (efficientnet-lite0: docs/BENCHMARKS.md measures how many)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not photos:
        raise FileNotFoundError(f"no calibration photos in {CALIBRATION_DIR}")
    inputs = np.stack([prepare(p) for p in photos])

    class Reader(CalibrationDataReader):
        """The photos in batches of CALIBRATION_BATCH, one batch per range: with `CalibStridedMinMax` the
        calibrator merges each batch's ranges and drops its activations (every activation of the 50 photos
        at once took about 1.1 GB for efficientnet-lite0; two photos at a time, 0.3 GB; same ranges)."""

        def __init__(self) -> None:
            self.all = np.array_split(inputs, max(1, len(inputs) // CALIBRATION_BATCH))
            self.batches: Iterator[np.ndarray] = iter(self.all)

        def __len__(self) -> int:
            return len(self.all)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter(self.all[start_index:end_index])

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    pre = out.with_name(f".{out.name}.{os.getpid()}.pre.onnx")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        quant_pre_process(str(fp32), str(pre))  # shapes and fusions the quantizer needs
        convs = [node.name for node in onnx.load(str(pre)).graph.node if node.op_type == "Conv"]
        quantize_static(
            str(pre),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=convs[:float_convs],
            extra_options={"CalibStridedMinMax": 1},  # one batch at a time (Reader)
        )
        os.replace(tmp, out)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        for leftover in out.parent.glob(f".{out.name}.{os.getpid()}.*"):  # the quantizer's scratch files
            leftover.unlink(missing_ok=True)
    log.info("quantized %s to int8 (%s)", fp32.name, out)


def record(meta: Path, key: str, digest: str) -> None:
    meta.write_text(json.dumps({"key": key, "sha256": digest}))
