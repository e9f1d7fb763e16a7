"""Import throughput against its peers, measured in one run on the same files.

    .venv/bin/python bench/throughput.py --model efficientnet-lite0 --items 2000
    .venv/bin/python bench/throughput.py --model vgg16 --weights random --items 300

For the same N fashion-products photos (a seeded sample, or the bundled CC0 photos without
../shared/data), one after another in this process:
  1. model only, ONNX Runtime (the fast path) on pre-decoded batches: the runtime's ceiling;
  2. model only, PyTorch eager on the same batches;
  3. a plain PyTorch-eager loop over the files (decode, letterbox, one forward pass per batch);
  4. `lookalike import` end to end into a fresh SQLite file (a subprocess: its own peak memory);
and, for vgg16, the machine's float32 matrix-multiply rate, so its arithmetic limit is
GFLOP/s / 15.5 GFLOP per 224x224 image. Prints a Markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FASHION = ROOT.parent / "shared" / "data" / "fashion-products"
VGG16_GFLOP = 15.5


def sample(n: int, seed: int = 0) -> list[Path]:
    if (FASHION / "styles.csv").is_file():
        with (FASHION / "styles.csv").open(newline="", encoding="utf-8", errors="replace") as f:
            ids = [row["id"] for row in csv.DictReader(f) if (FASHION / "images" / f"{row['id']}.jpg").is_file()]
        random.Random(seed).shuffle(ids)
        return [FASHION / "images" / f"{i}.jpg" for i in ids[:n]]
    demo = sorted((ROOT / "tests" / "data" / "clothing-demo" / "images").rglob("*.jpg"))
    return (demo * (n // len(demo) + 1))[:n]


def rate(fn, items: int, min_s: float = 3.0) -> float:
    fn()  # warm
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_s:
        fn()
        done += items
    return done / (time.perf_counter() - t0)


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = 1 / rate(lambda: a @ b, 1, 3.0)
    return 2 * 2048**3 / seconds / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None, help="'random' for vgg16/resnet50 timing without their weights file")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16, help="images per forward pass in 1-3")
    ap.add_argument("--skip-import", action="store_true")
    args = ap.parse_args()

    import torch

    from recommender.backbones import load_backbone
    from recommender.images import load_image
    from recommender.runtime import accelerate

    paths = sample(args.items)
    eager = load_backbone(args.model, weights=args.weights)
    with tempfile.TemporaryDirectory() as cache:
        fast = accelerate(eager, Path(cache))
        imgs = [load_image(p)[0] for p in paths[: args.batch]]
        batch = eager._batch(imgs)
        rows: list[tuple[str, float]] = []
        with torch.inference_mode():
            rows.append(("model only, ONNX Runtime", rate(lambda: fast.net(batch), len(imgs))))
            rows.append(("model only, PyTorch eager", rate(lambda: eager.net(batch), len(imgs))))

        def eager_loop() -> None:
            for i in range(0, len(paths), args.batch):
                eager.embed([load_image(p)[0] for p in paths[i : i + args.batch]])

        t0 = time.perf_counter()
        eager_loop()
        rows.append(("plain PyTorch-eager loop over the files", len(paths) / (time.perf_counter() - t0)))

    peak_mb = None
    if not args.skip_import:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "catalogue" / "items"
            folder.mkdir(parents=True)
            for i, p in enumerate(paths):
                shutil.copyfile(p, folder / f"{i}-{p.name}")
            db = Path(tmp) / "bench.db"
            cmd = [sys.executable, "-m", "bot.cli", "import", str(folder.parent), "--model", args.model, "--db", str(db)]
            cmd += ["--no-train"] + (["--weights", args.weights] if args.weights else [])
            env = {**os.environ, "LOOKALIKE_CACHE_DIR": str(Path(tmp) / "cache")}
            subprocess.run([*cmd[:3], "import", "--help"], capture_output=True, env=env)  # imports warmed on disk
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(out.stderr)
            peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
            summary = out.stdout.splitlines()[0]  # "added N, ... in S s (R items/s)"
            rows.append(("`lookalike import` end to end (SQLite)", float(summary.rsplit("(", 1)[1].split()[0])))

    print(
        f"\n{args.model}, {len(paths)} photos, batch {args.batch}; {platform.node()} ({os.cpu_count()} cores), "
        f"torch {torch.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| path | items/s |\n|---|---:|")
    for name, r in rows:
        print(f"| {name} | {r:.1f} |")
    by = dict(rows)
    if "`lookalike import` end to end (SQLite)" in by:
        imp = by["`lookalike import` end to end (SQLite)"]
        print(
            f"\nimport / ONNX model-only: {imp / by['model only, ONNX Runtime']:.0%}; "
            f"import / plain eager loop: {imp / by['plain PyTorch-eager loop over the files']:.1f}x; "
            f"peak memory of the import: {peak_mb:.0f} MB"
        )
    if args.model.startswith("vgg16"):
        gflops = matmul_gflops()
        limit = gflops / VGG16_GFLOP
        print(f"\nfloat32 matmul {gflops:.0f} GFLOP/s -> vgg16 arithmetic limit {limit:.2f} images/s")
        for name, r in rows:
            print(f"  {name}: {r / limit:.0%} of the limit")


if __name__ == "__main__":
    main()
