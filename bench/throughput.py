"""Import throughput against its peers, measured in one run on the same files.

    .venv/bin/python bench/throughput.py --model efficientnet-lite0 --items 1500 --precision fp32,int8 --repeats 3
    .venv/bin/python bench/throughput.py --model vgg16 --weights random --items 200 --precision fp32,bf16
    .venv/bin/python bench/throughput.py --model efficientnet-lite0 --items 0 --only-import   # all 21,215: memory

For the same N fashion-products photos (a seeded sample, or the bundled CC0 photos without
../shared/data; --items 0: all of them), one after another in this process:
  1. model only, on pre-decoded batches, for each --precision: the fast path's ceiling (fp32 and int8:
     ONNX Runtime; bf16: PyTorch channels-last under bfloat16 autocast, runtime.py);
  2. model only, PyTorch eager (float32) on the same batches;
  3. a plain PyTorch-eager loop over the files (decode, letterbox, one forward pass per batch), read from
     the same copies in the page cache that the imports read;
  4. `lookalike import` end to end into a fresh SQLite file, for each --precision (a subprocess: its
     own peak memory, from getrusage);
and, for vgg16, the machine's float32 matrix-multiply rate, and bfloat16's on a CPU with AVX512-BF16 (the best
of three), so its arithmetic limit is that rate over the network's cost per 224x224 photo, counted from the graph: 15.47 G
multiply-adds, which is 30.7 GFLOP in the matrix multiply's units (2 FLOP per multiply-add). The limit as
issue #9 writes it, GFLOP/s / 15.5 (multiply-adds taken as FLOP: twice the consistent limit), is printed
beside it. With --repeats N every measure is taken N times in a row and its median reported; the peak
memory is the largest. Prints a Markdown table with the ratios of the same run.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FASHION = ROOT.parent / "shared" / "data" / "fashion-products"
VGG16_GFLOP_AS_WRITTEN = 15.5  # issue #9's figure: torchvision's "GFLOPS" for vgg16, which are multiply-adds


def sample(n: int, seed: int = 0) -> list[Path]:
    """n photos (0: all of them)."""
    if (FASHION / "styles.csv").is_file():
        with (FASHION / "styles.csv").open(newline="", encoding="utf-8", errors="replace") as f:
            ids = [row["id"] for row in csv.DictReader(f) if (FASHION / "images" / f"{row['id']}.jpg").is_file()]
        random.Random(seed).shuffle(ids)
        return [FASHION / "images" / f"{i}.jpg" for i in ids[: n or None]]
    demo = sorted((ROOT / "tests" / "data" / "clothing-demo" / "images").rglob("*.jpg"))
    return (demo * (n // len(demo) + 1))[:n]


def rate(fn, items: int, min_s: float = 3.0) -> float:
    fn()  # warm
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_s:
        fn()
        done += items
    return done / (time.perf_counter() - t0)


def matmul_gflops(dtype: str = "float32") -> float:
    """The best of three 1-second runs of a 2048x2048 matrix multiply, 2 FLOP per multiply-add."""
    import torch

    a, b = torch.randn(2048, 2048).to(getattr(torch, dtype)), torch.randn(2048, 2048).to(getattr(torch, dtype))
    seconds = 1 / max(rate(lambda: a @ b, 1, 1.0) for _ in range(3))
    return 2 * 2048**3 / seconds / 1e9


def counted_gflop(net, input_size: int) -> float:
    """FLOP of one forward pass of `net` on one input_size x input_size photo, counted from the graph:
    2 per multiply-add of every convolution and linear layer (what a matrix multiply's GFLOP/s counts)."""
    import torch

    macs: list[int] = []

    def conv(m, _inp, out) -> None:
        macs.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    def linear(m, _inp, out) -> None:
        macs.append(out.numel() * m.in_features)

    hooks = [
        m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    return 2 * sum(macs) / 1e9


@functools.cache
def vgg16_gflop() -> float:
    """vgg16's FLOP per 224x224 photo, counted once from its graph (random weights: the count is the same)."""
    from recommender.backbones import load_backbone

    bb = load_backbone("vgg16", weights="random")
    return counted_gflop(bb.net, bb.input_size)


def limit_dtypes() -> tuple[str, ...]:
    """The matrix-multiply types whose rate gives a limit here: bfloat16 only on a CPU with its instructions
    (elsewhere torch emulates it at well under 1 GFLOP/s, minutes per measure, and bf16 runs in float32)."""
    import torch

    native = torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported()
    if not native:
        print("bfloat16: this CPU has no bfloat16 instructions (AVX512-BF16); its limit is not measured")
    return ("float32", "bfloat16") if native else ("float32",)


def vgg16_limits(dtype: str) -> tuple[float, float, float]:
    """(matmul GFLOP/s, limit in photos/s at the counted FLOP, limit as issue #9 writes it)."""
    gflops = matmul_gflops(dtype)
    return gflops, gflops / vgg16_gflop(), gflops / VGG16_GFLOP_AS_WRITTEN


def median(measure, repeats: int, *args) -> float:
    """The median of `repeats` calls of measure(*args) (this VM's speed drifts between minutes)."""
    return float(np.median([measure(*args) for _ in range(max(1, repeats))]))


def model_only(fast, batch) -> float:
    """Images/s of fast.net on the batch, run as the embedder runs it: `fast.lanes` calls at once."""
    import threading

    import torch

    def loop(seconds: float, counts: list[int]) -> None:
        with torch.inference_mode():
            t0, done = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                fast.net(batch)
                done += len(batch)
            counts.append(done)

    loop(0.5, [])  # warm
    counts: list[int] = []
    threads = [threading.Thread(target=loop, args=(3.0, counts)) for _ in range(fast.lanes)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def agree(fast, imgs) -> tuple[float, float]:
    """(mean, least) cosine between the fast path's vectors and its own PyTorch float32 module's."""
    import torch

    got = np.concatenate([fast.embed(imgs[i : i + 16]) for i in range(0, len(imgs), 16)])
    with torch.inference_mode():
        want = np.concatenate(
            [fast.net.module(fast._batch(imgs[i : i + 16])).float().flatten(1).numpy() for i in range(0, len(imgs), 16)]
        )
    cos = (got * want).sum(1) / np.linalg.norm(want, axis=1)
    return float(cos.mean()), float(cos.min())


def copies(paths: list[Path], tmp: Path) -> list[Path]:
    """The photos copied into one catalogue folder, which the eager loop and every import then read: the
    same files, all in the page cache (the first pass over ../shared would otherwise pay for the disk)."""
    folder = tmp / "catalogue" / "items"
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{i}-{p.name}" for i, p in enumerate(paths)]
    for p, c in zip(paths, out):
        if not c.is_file():
            shutil.copyfile(p, c)
    return out


def run_import(paths: list[Path], args: argparse.Namespace, precision: str, tmp: Path, cache: Path) -> tuple[float, float]:
    """`lookalike import` of the files into a fresh SQLite file: (items/s from its summary, peak MB)."""
    folder = copies(paths, tmp)[0].parent
    db = tmp / f"bench-{precision}.db"
    for old in tmp.glob(f"{db.name}*"):  # a fresh file each run (and its -wal, -shm)
        old.unlink()
    cmd = [sys.executable, "-m", "bot.cli", "import", str(folder.parent), "--model", args.model, "--db", str(db)]
    cmd += ["--no-train"] + (["--weights", args.weights] if args.weights else [])
    env = {**os.environ, "LOOKALIKE_CACHE_DIR": str(cache), "LOOKALIKE_PRECISION": precision}
    subprocess.run([*cmd[:3], "import", "--help"], capture_output=True, env=env)  # imports warmed on disk
    # GNU time forks from a small process: a child forked from this one (torch and the models loaded)
    # would report this process's resident memory as its own peak
    with tempfile.NamedTemporaryFile("r") as peak:
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name, *cmd], cwd=ROOT, capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            sys.exit(out.stderr)
        peak_mb = int(Path(peak.name).read_text().split()[-1]) / 1024
    stdout = out.stdout
    summary = stdout.splitlines()[0]  # "added N, ... in S s (R items/s)"
    return float(summary.rsplit("(", 1)[1].split()[0]), peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None, help="'random' for vgg16/resnet50 timing without their weights file")
    ap.add_argument("--items", type=int, default=2000, help="photos (0: all)")
    ap.add_argument("--batch", type=int, default=16, help="images per forward pass in 1-3")
    ap.add_argument("--precision", default="fp32", help="comma-separated: fp32, int8, bf16")
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--only-import", action="store_true", help="only 4 (a memory run)")
    ap.add_argument("--repeats", type=int, default=1, help="run every measure this often; the median is reported")
    args = ap.parse_args()
    precisions = args.precision.split(",")

    import torch

    from recommender.backbones import load_backbone
    from recommender.images import load_image
    from recommender.runtime import accelerate, cores

    paths = sample(args.items)
    rows: list[tuple[str, float]] = []
    peaks: dict[str, float] = {}
    agreement: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"  # one export (and int8 file) per model, shared by 1 and 4
        if not args.only_import:
            imgs = [load_image(p)[0] for p in paths[: args.batch]]
            for precision in precisions:
                fast = accelerate(load_backbone(args.model, weights=args.weights), cache / "onnx", 0, precision)
                batch = fast._batch(imgs)
                rows.append(
                    (f"model only, {RUNTIME[precision]}{LANES[fast.lanes > 1]}", median(model_only, args.repeats, fast, batch))
                )
                if precision != "fp32":
                    agreement[precision] = agree(fast, [load_image(p)[0] for p in paths[:48]])
                if fast.lanes > 1:  # the other way to use the cores, so the ceiling is the better of the two
                    other = accelerate(load_backbone(args.model, weights=args.weights), cache / "onnx", cores(), precision)
                    batch = other._batch(imgs)
                    rows.append(
                        (f"model only, {RUNTIME[precision]}{LANES[False]}", median(model_only, args.repeats, other, batch))
                    )
                    del other
                del fast
            eager = load_backbone(args.model, weights=args.weights)
            batch = eager._batch(imgs)
            rows.append(("model only, PyTorch eager", median(model_only, args.repeats, eager, batch)))

            files = copies(paths, Path(tmp))

            def eager_loop() -> float:
                t0 = time.perf_counter()
                for i in range(0, len(files), args.batch):
                    eager.embed([load_image(p)[0] for p in files[i : i + args.batch]])
                return len(files) / (time.perf_counter() - t0)

            rows.append((EAGER_LOOP, median(eager_loop, args.repeats)))
            del eager
        if not args.skip_import:
            for precision in precisions:
                runs = [run_import(paths, args, precision, Path(tmp), cache) for _ in range(args.repeats)]
                peaks[precision] = max(peak for _, peak in runs)
                rows.append((f"`lookalike import` end to end (SQLite), {precision}", float(np.median([r for r, _ in runs]))))

    print(
        f"\n{args.model}, {len(paths)} photos, batch {args.batch}; {platform.node()} ({os.cpu_count()} cores), "
        f"torch {torch.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| path | items/s |\n|---|---:|")
    for name, r in rows:
        print(f"| {name} | {r:.1f} |")
    by = dict(rows)
    for precision in precisions:
        imp = by.get(f"`lookalike import` end to end (SQLite), {precision}")
        if imp is None:
            continue
        line = f"\n{precision}: peak memory of the import {peaks[precision]:.0f} MB"
        ceiling = max((r for name, r in rows if name.startswith(f"model only, {RUNTIME[precision]}")), default=None)
        if ceiling:
            line += f"; import / its best model-only rate: {imp / ceiling:.0%}"
        if EAGER_LOOP in by:
            line += f"; import / plain eager loop: {imp / by[EAGER_LOOP]:.1f}x"
        print(line)
    for precision, (mean, least) in agreement.items():
        print(
            f"\n{precision}: cosine of its vectors to PyTorch float32's on {min(48, len(paths))} photos: mean {mean:.4f}, least {least:.4f}"
        )
    if args.model.startswith("vgg16"):
        print(f"\nvgg16 counted from the graph: {vgg16_gflop():.2f} GFLOP per 224x224 photo")
        for dtype in limit_dtypes():
            gflops, limit, as_written = vgg16_limits(dtype)
            print(
                f"\n{dtype} matmul {gflops:.0f} GFLOP/s -> vgg16 arithmetic limit {limit:.2f} images/s "
                f"(as issue #9 writes it, GFLOP/s / 15.5: {as_written:.2f})"
            )
            for name, r in rows:
                print(f"  {name}: {r / limit:.0%} of the limit ({r / as_written:.0%} as written)")


RUNTIME = {"fp32": "ONNX Runtime fp32", "int8": "ONNX Runtime int8", "bf16": "PyTorch bf16 (channels-last)"}
EAGER_LOOP = "plain PyTorch-eager loop over the files"
LANES = {True: ", one call per core (1 thread each)", False: ", one call on all cores"}


if __name__ == "__main__":
    main()
