"""Photo-to-reply latency through the local Discord sandbox, and the worst event-loop stall in a burst.

    .venv/bin/python bench/latency.py --db CATALOGUE.db --model efficientnet-lite0
    .venv/bin/python bench/latency.py --db CATALOGUE.db --model vgg16 --weights random --fill-random --head-views 200
    .venv/bin/python bench/latency.py ... --precision bf16      # or LOOKALIKE_PRECISION=bf16 (runtime.py)

The real bot (real discord.py, real recommender, the SQLite catalogue given with --db, copied to a
temporary file first) runs against the sandbox on loopback. A member posts real photos (women-fashion
from ../shared/data when present, else the bundled CC0 demo photos) in a watched channel, one at a time
(latency: post -> the bot's reply arrives), then --burst members post at once (every reply's latency,
the sandbox's largest heartbeat gap, and the worst lateness of a 10 ms ticker on the bot's loop).

--fill-random gives every item of the copied catalogue a random unit vector for --model when it has
none (timing only: search cost depends on items x dimensions, not on the values).

A catalogue with no head yet gets a quick one at its first query and the full one in the background,
whose member-like views go through the model (4,000 by default: minutes with vgg16); the bench waits
for that fit to end before it measures, so photos are timed against a settled bot (--head-views makes
the fit shorter). For vgg16 it prints the burst against the arithmetic limit measured in the same run
(the float32 matrix multiply, and bfloat16's on a CPU with its instructions, over vgg16's 30.7 GFLOP per
photo counted from its graph, and as issue #9 writes it, GFLOP/s / 15.5: bench/throughput.py says why the
two differ).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def query_photos(n: int) -> list[tuple[str, bytes]]:
    folder = SHARED / "women-fashion" / "images"
    if not folder.is_dir():
        folder = ROOT / "tests" / "data" / "clothing-demo" / "images"
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    return [(f"photo{i}{p.suffix.lower()}", p.read_bytes()) for i, p in enumerate(paths[:n])]


def fill_random(db: Path, model: str, dim: int, limit: int | None) -> int:
    rng = np.random.default_rng(0)
    con = sqlite3.connect(db)
    pks = [
        r[0]
        for r in con.execute(
            "SELECT pk FROM items WHERE guild_id = 0 AND pk NOT IN (SELECT item_pk FROM embeddings WHERE model = ?) ORDER BY pk",
            (model,),
        )
    ]
    if limit is not None:
        pks = pks[:limit]
    for i in range(0, len(pks), 5000):
        chunk = pks[i : i + 5000]
        v = rng.standard_normal((len(chunk), dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        con.executemany(
            "INSERT INTO embeddings (item_pk, model, dim, vector) VALUES (?, ?, ?, ?)",
            [(pk, model, dim, vec.astype("<f2").tobytes()) for pk, vec in zip(chunk, v)],
        )
    con.execute("DELETE FROM classifiers WHERE model = ?", (model,))
    con.commit()
    con.close()
    return len(pks)


class LoopLag:
    """A 10 ms ticker: how late does the event loop wake it? (a blocked loop shows up here)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - t - 0.01)

    def start(self) -> None:
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> float:
        if self._task:
            self._task.cancel()
        return self.worst


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def bench(args: argparse.Namespace) -> None:
    from bot.app import create_bot, settle_heap
    from bot.cogs.utils.options import BotOptions
    from bot.sandbox import DiscordSandbox, User
    from recommender.config import load_settings
    from recommender.engine import Recommender

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    db = tmp / "catalogue.db"
    shutil.copy(args.db, db)
    settings = load_settings(db=db, model=args.model, weights=args.weights, head_views=args.head_views, precision=args.precision)
    rec = await Recommender.open(settings)
    if args.fill_random:
        n = fill_random(db, rec.model, rec.backbone.dim, args.items)
        print(f"filled {n} random {rec.backbone.dim}-d vectors for {rec.model}", file=sys.stderr)
    photos = query_photos(max(args.queries, args.burst))
    settle_heap()  # as `lookalike run` does once the model is loaded
    lag = LoopLag()
    lag.start()
    t0 = time.perf_counter()
    await rec.similar(photos[0][1], k=args.k)  # loads the index, trains the classifier if none is saved
    first_query = time.perf_counter() - t0
    load_lag = lag.stop()
    stats = await rec.stats(guild_id=0)
    print(f"first query (index load + classifier) {first_query:.1f}s; catalogue {stats['embeddings']}", file=sys.stderr)
    t0 = time.perf_counter()
    state = rec.catalogues.state(0)
    while pending := [t for t in (state.retrain_timer, state.training) if t is not None and not t.done()]:
        await asyncio.gather(*pending, return_exceptions=True)  # the head's background fit (views through the model)
    print(f"background head fit done after {time.perf_counter() - t0:.0f}s more", file=sys.stderr)

    sandbox = DiscordSandbox(heartbeat_interval=1.0, heartbeat_grace=0.5)
    await sandbox.start()
    config = sandbox.configure_discord()
    bot_user = sandbox.create_bot_user("lookalike")
    owner = sandbox.create_user("owner")
    guild = sandbox.create_guild("Shop", owner=owner)
    channel = sandbox.create_text_channel(guild, "photos")
    members = [sandbox.create_user(f"member{i}") for i in range(max(args.burst, 1))]
    for m in members:
        sandbox.add_member(guild, m)
    options = BotOptions.from_settings(settings, env={}, cooldown_per_s=0, sync_guilds=(guild.id,))
    bot = create_bot(rec, settings, options, guild_ready_timeout=0.1)
    runner = asyncio.create_task(bot.start(bot_user.token))
    try:
        await sandbox.wait_for_ready(bot_user)
        await sandbox.wait_for_commands(bot_user, "config", guild=guild)
        done = await (await sandbox.invoke_slash(guild, channel, owner, "config watch", {"channel": channel})).wait_done(10)
        assert not done.failed, done

        async def ask(member: User, name: str, data: bytes) -> float:
            t = time.perf_counter()
            msg = await sandbox.post_message(channel, member, attachments=[(name, data)])
            await sandbox.wait_for_bot_message(lambda m: m.reference_id == msg.id, timeout=120)
            return time.perf_counter() - t

        await ask(members[0], *photos[0])  # warm the whole path once
        sequential = []
        for i in range(args.queries):
            sequential.append(await ask(members[0], *photos[i % len(photos)]))
        gap_before = sandbox.max_heartbeat_gap
        lag.start()
        t = time.perf_counter()
        burst = await asyncio.gather(*(ask(members[i], *photos[i % len(photos)]) for i in range(args.burst)))
        burst_total = time.perf_counter() - t
        worst_lag = lag.stop()
        violations = list(sandbox.violations)
    finally:
        lag.stop()
        await bot.close()
        await asyncio.gather(runner, return_exceptions=True)
        await sandbox.stop()
        config.restore()
        await rec.close()
        shutil.rmtree(tmp, ignore_errors=True)

    ms = lambda s: f"{s * 1000:.0f}"  # noqa: E731
    print(
        f"# {datetime.date.today()} | {platform.node()} | {os.cpu_count()} cores | model {rec.model} "
        f"({'pretrained' if rec.backbone.pretrained else 'RANDOM weights'}) | {stats['embeddings']} | k={args.k}"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(f"| sequential photo -> reply, p50 (ms, n={len(sequential)}) | {ms(pct(sequential, 50))} |")
    print(f"| sequential photo -> reply, p99 (ms) | {ms(pct(sequential, 99))} |")
    print(f"| burst of {args.burst}: all answered after (ms) | {ms(burst_total)} |")
    print(f"| burst reply p50 / p99 (ms) | {ms(pct(burst, 50))} / {ms(pct(burst, 99))} |")
    print(f"| first query: index load + classifier (ms) / worst loop stall meanwhile (ms) | {ms(first_query)} / {ms(load_lag)} |")
    print(f"| worst event-loop stall during the burst (ms, 10 ms ticker) | {ms(worst_lag)} |")
    print(f"| largest heartbeat gap (s; interval 1.0) | {max(gap_before, sandbox.max_heartbeat_gap):.2f} |")
    print(f"| sandbox violations (missed heartbeats, limits) | {len(violations)} |")
    for v in violations:
        print(f"  violation: {v}", file=sys.stderr)
    if rec.model.startswith("vgg16"):
        sys.path.insert(0, str(ROOT / "bench"))
        from throughput import limit_dtypes, vgg16_limits

        for dtype in limit_dtypes():
            gflops, limit, as_written = vgg16_limits(dtype)
            need, need_as_written = args.burst / limit, args.burst / as_written
            print(
                f"{dtype} matmul {gflops:.0f} GFLOP/s, limit {limit:.2f} photos/s: a burst of {args.burst} needs {need:.2f} s; "
                f"answered in {burst_total / need:.2f}x that (as issue #9 writes the limit, {as_written:.2f} photos/s: "
                f"{burst_total / need_as_written:.2f}x)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="catalogue database to copy (e.g. from `lookalike import`)")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", help="local weights file, or 'random' (timing only)")
    ap.add_argument("--fill-random", action="store_true", help="random vectors for --model where an item has none")
    ap.add_argument("--items", type=int, default=None, help="with --fill-random: at most this many items")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--head-views", type=int, default=None, help="member-like views of the catalogue's head (default: settings)")
    ap.add_argument("--precision", default=None, help="fp32, int8 or bf16 (default: settings)")
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()
