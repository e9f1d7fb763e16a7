"""Where a `lookalike import`'s time goes: a py-spy sampling profile of a real import, summed by stage.

    .venv/bin/pip install py-spy            # bench only, not a dependency of the project
    .venv/bin/python bench/profile_import.py --model efficientnet-lite0 --items 1500 [--precision int8]

The same seeded fashion-products sample as bench/throughput.py is copied into a folder and imported
into a fresh SQLite file by `python -m bot.cli import` (the model's export made beforehand, so it is
not part of the profile). py-spy samples every Python thread of that process 100 times a second
(idle samples dropped); each sample's stack is put in the first stage whose function it contains.
Samples are not CPU time (a thread waiting for a core, or for ONNX Runtime's workers inside
`Session.run`, is sampled too), so each thread's CPU time, read from /proc, is shared out over the
stages in proportion to that thread's samples. ONNX Runtime's own worker threads run no Python and
py-spy does not see them: their CPU time (every thread beyond the Python ones) is a stage of its own.
Prints a Markdown table: CPU seconds by stage and their share of the process's CPU.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from throughput import sample  # noqa: E402

RATE = 100  # samples per second
# (stage, any of these function names in the stack), first match wins: innermost work before the callers
STAGES = [
    ("model: forward pass (ONNX Runtime / PyTorch, calling thread)", ("Session.run", "_call_impl", "Checked.__call__")),
    ("network input (letterbox, resize, normalise)", ("_to_input", "Backbone.prepare")),
    ("thumbnail (JPEG encode)", ("make_thumbnail",)),
    ("decode (JPEG -> RGB)", ("decode_image",)),
    ("read + hash", ("read_source", "content_hash")),
    ("database writes (SQLAlchemy Core, aiosqlite)", ("upsert_items", "item_writes", "aiosqlite", "sqlalchemy", "known_hashes")),
    ("index update", ("Catalogues.written", "VectorIndex")),
    ("batcher (futures, queues)", ("Batcher.", "embed_bulk", "embed_prepared")),
    ("records (manifest, folder walk)", ("importer.py", "trees.py", "manifests.py", "names.py")),
    ("start-up (imports, model load, migrations)", ("_find_and_load", "load_backbone", "accelerate", "Store.open", "migrate")),
    ("event loop, thread pool hand-offs", ("asyncio", "selectors", "concurrent/futures", "threading")),
]


def stage_of(frames: list[str]) -> str:
    text = ";".join(frames)
    for stage, needles in STAGES:
        if any(n in text for n in needles):
            return stage
    return "other Python"


def thread_cpu(pid: int) -> dict[int, float]:
    """tid -> CPU seconds so far, for every thread of pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "catalogue" / "items"
        folder.mkdir(parents=True)
        for i, p in enumerate(sample(args.items)):
            shutil.copyfile(p, folder / f"{i}-{p.name}")
        env = {**os.environ, "LOOKALIKE_CACHE_DIR": str(Path(tmp) / "cache"), "LOOKALIKE_PRECISION": args.precision}
        cmd = [sys.executable, "-m", "bot.cli", "import", str(folder.parent), "--model", args.model, "--no-train"]
        cmd += ["--weights", args.weights] if args.weights else []
        warm = subprocess.run([*cmd, "--db", str(Path(tmp) / "warm.db")], cwd=ROOT, env=env, capture_output=True, text=True)
        if warm.returncode != 0:  # the export is made here, once, outside the profile
            sys.exit(warm.stderr)
        raw = Path(tmp) / "profile.txt"
        t0 = time.perf_counter()
        child = subprocess.Popen(
            [*cmd, "--db", str(Path(tmp) / "bench.db")], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        spying = subprocess.Popen(
            [spy, "record", "--pid", str(child.pid), "--rate", str(RATE), "--threads", "--format", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cpu: dict[int, float] = {}
        while child.poll() is None:
            try:
                for tid, used in thread_cpu(child.pid).items():  # a thread's last reading before it ends
                    cpu[tid] = max(used, cpu.get(tid, 0.0))
            except OSError:
                break
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        summary = (child.stdout.read() if child.stdout else "").splitlines()[:1]
        spying.wait(timeout=60)
        samples: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        names: dict[int, str] = {}
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            tid = int(frames[0].split("(", 1)[1].split(")", 1)[0], 0)  # "thread (TID): name"
            names[tid] = frames[0].partition(": ")[2].split("_")[0] or "?"
            samples[tid][stage_of(frames[1:])] += int(count)

    seconds: dict[str, float] = collections.defaultdict(float)
    for tid, stages in samples.items():
        n = sum(stages.values())
        for stage, k in stages.items():
            seconds[stage] += cpu.get(tid, 0.0) * k / n
    native = sum(t for tid, t in cpu.items() if tid not in samples)
    seconds["model: ONNX Runtime's worker threads (native, from /proc)"] = native
    total = sum(cpu.values())
    print(f"\n{args.model} {args.precision}, {args.items} photos: {' '.join(summary)}")
    print(
        f"process wall {wall:.1f} s, CPU {total:.1f} s (of {2 * wall:.1f} s on 2 cores); load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| stage | CPU s | share of the process's CPU |\n|---|---:|---:|")
    for stage, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {s:.1f} | {s / total:.0%} |")
    print(f"| (CPU of threads py-spy never sampled as busy) | {total - sum(seconds.values()):.1f} | |")
    by_thread: dict[str, float] = collections.defaultdict(float)
    for tid, used in cpu.items():
        by_thread[names.get(tid, "ONNX Runtime / OpenMP workers" if tid not in samples else "?")] += used
    print("\n| thread | CPU s |\n|---|---:|")
    for name, used in sorted(by_thread.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {used:.1f} |")


if __name__ == "__main__":
    main()
