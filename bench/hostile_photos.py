"""Re-measure issue #11's table of hostile photos against recommender.images (numbers in docs/SECURITY.md).

    nice -n 5 .venv/bin/python bench/hostile_photos.py [--side 512]

Every crafted photo of the issue (made on the fly by tests/test_hostile_photos.py's generators, never
stored), and the largest photos the limits accept, is decoded in a fresh interpreter after one normal
photo; CPU seconds and peak memory over that baseline come from getrusage. Then, each in one fresh
interpreter: a normal 3000x2000 JPEG decoded alone and while the slowest crafted photo decodes in
another thread (its wall time), and the two inputs with the largest peaks decoded at the same time
(what the engine's two decode threads can hold together).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_hostile_photos import CASES, SPAWNER, crafted, measure, tiny_webp  # noqa: E402

from helpers import demo_photos  # noqa: E402

_TOGETHER = r"""
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from recommender.errors import BadImage
from recommender.images import ImageLimits, decode_image

what, side = sys.argv[1], int(sys.argv[2])
normal, other, third = (Path(p).read_bytes() for p in sys.argv[3:6])
limits = ImageLimits(max_side=side)


def run(data):
    try:
        decode_image(data, limits)
    except BadImage:
        pass


def timed(data):
    t = time.perf_counter()
    run(data)
    return time.perf_counter() - t


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


run(normal)
with ThreadPoolExecutor(2) as pool:
    if what == "latency":  # the normal photo alone, then while `other` decodes in the other thread
        alone = sorted(timed(normal) for _ in range(20))[10]
        beside = []
        for _ in range(3):
            slow = pool.submit(run, other)
            time.sleep(0.05)  # `other` is inside its decoder
            beside.append(pool.submit(timed, normal).result())
            slow.result()
        print(json.dumps({"alone_ms": alone * 1e3, "beside_ms": max(beside) * 1e3}))
    else:  # `other` and `third` decoded at the same time
        peak0 = peak()
        list(pool.map(run, [other, third]))
        print(json.dumps({"two_at_once_mb": peak() - peak0}))
"""


def together(what: str, side: int, inputs: list[bytes]) -> dict:
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        paths = []
        for i, data in enumerate(inputs):
            paths.append(Path(tmp) / f"{i}")
            paths[-1].write_bytes(data)
        cmd = [sys.executable, "-c", _TOGETHER, what, str(side), *map(str, paths)]
        run = subprocess.run([sys.executable, "-S", "-c", SPAWNER, *cmd], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        sys.exit(run.stderr)
    return json.loads(run.stdout.strip().splitlines()[-1])


_ISOLATION = r"""
import json, multiprocessing, sys, time
from pathlib import Path
from recommender.images import ImageLimits, decode_image


def child(data, side, conn):
    conn.send(decode_image(data, ImageLimits(max_side=side)).tobytes())


def in_child(ctx, data, side):
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(data, side, send))
    proc.start()
    recv.recv()
    proc.join()


if __name__ == "__main__":
    data, side = Path(sys.argv[1]).read_bytes(), int(sys.argv[2])
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["recommender.images"])
    in_child(ctx, data, side)  # starts the fork server
    times = {}
    for name, fn in (("in_process", lambda: decode_image(data, ImageLimits(max_side=side))), ("forkserver_child", lambda: in_child(ctx, data, side))):
        runs = []
        for _ in range(11):
            t = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t)
        times[name] = sorted(runs)[5] * 1e3
    print(json.dumps(times))
"""


def isolation(side: int, photo: bytes) -> dict:
    """Median ms to decode ``photo`` here and in a child of a fork server that has recommender.images
    loaded (the cheapest way to put each photo in a process of its own with kernel limits)."""
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        (Path(tmp) / "photo").write_bytes(photo)
        (Path(tmp) / "iso.py").write_text(_ISOLATION)
        run = subprocess.run(
            [sys.executable, str(Path(tmp) / "iso.py"), str(Path(tmp) / "photo"), str(side)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if run.returncode:
        sys.exit(run.stderr)
    return json.loads(run.stdout.strip().splitlines()[-1])


def normal_photo() -> bytes:
    """A phone-sized photo (3000x2000 JPEG) made from a demo photo."""
    with Image.open(demo_photos()[0]) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((3000, 2000)).save(out, "JPEG", quality=90)
        return out.getvalue()


def extremes() -> dict[str, bytes]:
    """The largest photos the limits accept, one per kind of decoder path."""
    rng = np.random.default_rng(0)

    def noise(w: int, h: int, mode: str = "RGB", grain: int = 16) -> Image.Image:
        bands = {"RGB": 3, "L": 1}[mode]
        shape = (h // grain, w // grain, bands) if bands > 1 else (h // grain, w // grain)
        return Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).resize((w, h))

    def enc(img: Image.Image, fmt: str, **kw: object) -> bytes:
        out = io.BytesIO()
        img.save(out, fmt, **kw)
        return out.getvalue()

    return {
        "accepted: 64 MP baseline JPEG (draft-decoded at 1/8)": enc(noise(8000, 8000), "JPEG", quality=70),
        "accepted: 24 MP progressive JPEG": enc(noise(6000, 4000), "JPEG", quality=70, progressive=True),
        "accepted: 24 MP RGB PNG": enc(noise(6000, 4000, grain=400), "PNG", optimize=True),
        "accepted: 64 MP greyscale PNG": enc(noise(8000, 8000, "L", grain=400), "PNG", optimize=True),
        "accepted: 6.5 MP lossless RGBA WebP": tiny_webp(2550, 2550),
        "refused: 7 MP lossless RGBA WebP (over 128 MB)": tiny_webp(2650, 2650),
    }


def outcome(got: dict) -> str:
    if "refused" in got:
        return "refused: " + got["refused"].split(": ", 1)[1]
    return f"decoded to {got['size'][0]}×{got['size'][1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=512, help="longest side decoded to (Settings.decode_side)")
    args = ap.parse_args()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, side {args.side}"
    )
    print(f"# load average {os.getloadavg()[0]:.2f}\n")
    print("| input | size | CPU | peak memory over baseline | outcome |\n|---|---|---|---|---|")
    results, inputs = {}, {}
    for name, data in [*((n, crafted(n)) for n in CASES), *extremes().items()]:
        got = results[name] = measure(data, args.side)
        inputs[name] = data
        print(f"| {name} | {len(data):,} B | {got['cpu_s']:.2f} s | {got['peak_mb']:.0f} MB | {outcome(got)} |", flush=True)
    base = min(r["baseline_mb"] for r in results.values())
    print(f"\n(baseline: {base:.0f} MB, an interpreter with recommender.images that has decoded one normal photo)")

    normal = normal_photo()
    slowest = max(CASES, key=lambda n: results[n]["cpu_s"])
    lat = together("latency", args.side, [normal, inputs[slowest], normal])
    big1, big2 = sorted(results, key=lambda n: -results[n]["peak_mb"])[:2]
    mem = together("memory", args.side, [normal, inputs[big1], inputs[big2]])
    print(
        f"\nA normal 3000×2000 JPEG: {lat['alone_ms']:.1f} ms alone (median of 20), {lat['beside_ms']:.1f} ms "
        f"(worst of 3) while {slowest} decodes in another thread.\n"
        f"The two largest ({big1}; {big2}) decoded at the same time: {mem['two_at_once_mb']:.0f} MB over the baseline."
    )
    iso = isolation(args.side, normal)
    print(
        f"Decoding that JPEG in a process of its own (forkserver child): {iso['forkserver_child']:.1f} ms, "
        f"in the thread: {iso['in_process']:.1f} ms (medians of 11)."
    )


if __name__ == "__main__":
    main()
