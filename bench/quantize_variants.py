"""How many of a backbone's first convolutions to keep in float32 in its int8 export (runtime.INT8_FLOAT_CONVS).

    .venv/bin/python bench/quantize_variants.py --model efficientnet-lite0 --float-convs 0,1,2,3,5

For each count, quantize.quantize() makes the int8 export from the float32 one (the 50 shipped calibration
photos, as the engine does), then on the same photos, prepared as the backbone prepares them: the cosine
of each photo's vector to the float32 export's (product shots from ../shared/data/fashion-products, a seeded
sample, and the 120 CC0 member photos of tests/data/clothing-demo), and the model-only rate of one call on all
cores over a batch of 32. The float32 export is timed the same way, in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
FASHION = ROOT.parent / "shared" / "data" / "fashion-products" / "images"
DEMO = ROOT / "tests" / "data" / "clothing-demo" / "images"

from throughput import rate  # noqa: E402


def session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def vectors(s, x: np.ndarray) -> np.ndarray:
    out = np.concatenate([s.run(None, {"images": x[i : i + 32]})[0] for i in range(0, len(x), 32)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def speed(s, batch: np.ndarray) -> float:
    """Images/s of the session on the batch (throughput.rate: warmed, then 4 s)."""
    return rate(lambda: s.run(None, {"images": batch}), len(batch), 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--float-convs", default="0,1,2,3,5", help="comma-separated counts to compare")
    ap.add_argument("--products", type=int, default=300, help="fashion-products photos (a seeded sample)")
    a = ap.parse_args()

    from recommender import images, quantize
    from recommender.backbones import load_backbone
    from recommender.runtime import _export, cores, fingerprint

    bb = load_backbone(a.model, weights=a.weights)
    products = sorted(FASHION.glob("*.jpg"))
    random.Random(1).shuffle(products)
    products = products[: a.products]
    members = sorted(DEMO.rglob("*.jpg"))
    x = np.stack([bb.prepare(images.load_image(p)[0]) for p in products + members])
    threads = cores()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export(bb.net, bb.input_size, fp32, fp32.with_suffix(".json"), fingerprint(bb.net, a.model, bb.input_size))
        s = session(fp32, threads)
        ref = vectors(s, x)
        rows.append(("float32 (no int8)", 1.0, 1.0, 1.0, 1.0, speed(s, x[:32])))
        for n in [int(v) for v in a.float_convs.split(",")]:
            out = Path(tmp) / f"int8-{n}.onnx"
            quantize.quantize(fp32, out, lambda p: bb.prepare(images.load_image(p)[0]), quantize.calibration_photos(), n)
            s = session(out, threads)
            cos = (vectors(s, x) * ref).sum(1)
            np_, nm = cos[: len(products)], cos[len(products) :]
            rows.append((f"int8, first {n} convolutions float32", np_.mean(), np_.min(), nm.mean(), nm.min(), speed(s, x[:32])))
            print(f"{rows[-1][0]}: done", file=sys.stderr, flush=True)
    print(
        f"\n{a.model}: {len(products)} product shots, {len(members)} member photos; {platform.node()} ({os.cpu_count()} cores), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| export | cosine to float32, product shots: mean / least | member photos: mean / least | model only, images/s |")
    print("|---|---:|---:|---:|")
    for name, pm, pl, mm, ml, r in rows:
        print(f"| {name} | {pm:.4f} / {pl:.4f} | {mm:.4f} / {ml:.4f} | {r:.0f} |")


if __name__ == "__main__":
    main()
