"""Beyond one process, measured: PostgreSQL beside SQLite, and a sharded bot.

    nice -n 5 .venv/bin/python bench/scale.py import --n 2000 --model tiny     # import throughput, both databases
    nice -n 5 .venv/bin/python bench/scale.py load --n 100000 --dim 512        # index load time, both databases
    nice -n 5 .venv/bin/python bench/scale.py changes --n 200                  # propagation between two processes
    nice -n 5 .venv/bin/python bench/scale.py latency --model tiny             # photo -> reply, 2 shards vs 1

PostgreSQL is a server of our own: initdb + pg_ctl in a temporary folder on a free loopback port (the
binaries tests/databases.py finds), with its defaults (fsync and synchronous commit on, unlike the test
cluster), so it is compared with SQLite on equal terms; --pg URL uses another server instead (a role
that may CREATE DATABASE). `import` reads ../shared/data/fashion-products (the first --n photos of
styles.csv). `load` writes --n items with random unit vectors (timing only: loading costs rows x
dimensions, not values). `changes`: a writer process adds --n items one at a time; this process times
each from the writer's commit to its own in-memory index holding it. `latency` runs `lookalike run`
processes (tests/sandbox_bot.py) against the sandbox: one unsharded, then shards 0 and 1 of 2 in two
processes, on the same catalogue (the demo photos, imported with --model).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from recommender.config import load_settings  # noqa: E402

from databases import Cluster, find_bin  # noqa: E402  (tests/databases.py: the throw-away server)


class Server(Cluster):
    """A throw-away PostgreSQL server with its durable defaults (fsync, synchronous_commit on)."""

    def start(self) -> Server:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self


class Databases:
    """Scratch databases: SQLite files in a temporary folder, PostgreSQL ones on --pg or our own server."""

    def __init__(self, pg: str | None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lookalike-scale-"))
        self.pg, self.server = pg, None
        self._n = 0
        if pg is None:
            bindir = find_bin()
            if bindir is None:
                sys.exit("no PostgreSQL server binaries (apt-get install postgresql) and no --pg URL")
            self.server = Server(bindir).start()

    def sqlite(self) -> str:
        self._n += 1
        return str(self.tmp / f"s{self._n}.db")

    def postgresql(self) -> str:
        if self.server is not None:
            return self.server.new_database()
        import asyncpg

        self._n += 1
        name = f"lookalike_scale_{os.getpid()}_{self._n}"

        async def create() -> None:
            con = await asyncpg.connect(self.pg)
            await con.execute(f"CREATE DATABASE {name}")
            await con.close()

        asyncio.run(create())
        assert self.pg is not None
        return self.pg.rsplit("/", 1)[0] + "/" + name

    def both(self) -> list[tuple[str, str]]:
        return [("SQLite", self.sqlite()), ("PostgreSQL", self.postgresql())]

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def png(im: Any) -> bytes:
    import io

    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def open_rec(db: str, model: str, backbone: Any = None) -> Any:
    from recommender.engine import Recommender

    return await Recommender.open(load_settings(env={}, db=db, model=model), backbone=backbone)


# -- import throughput --------------------------------------------------------------------------------


def kaggle_subset(dest: Path, n: int) -> Path:
    styles = SHARED / "fashion-products" / "styles.csv"
    if not styles.is_file():
        sys.exit(f"{styles} is not here: `import` needs the fashion-products photos")
    (dest / "images").mkdir(parents=True)
    with styles.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (styles.parent / "images" / f"{r['id']}.jpg").is_file()][:n]
    with (dest / "styles.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        shutil.copyfile(styles.parent / "images" / f"{r['id']}.jpg", dest / "images" / f"{r['id']}.jpg")
    return dest / "styles.csv"


async def bench_import(args: argparse.Namespace, dbs: Databases) -> None:
    from recommender.backbones import load_backbone
    from recommender.importer import Columns, records_from_source

    manifest = kaggle_subset(dbs.tmp / "photos", args.n)
    backbone = await asyncio.to_thread(load_backbone, args.model)
    cols = Columns(category="articleType", name="productDisplayName")
    runs = [pair for r in range(args.rounds) for pair in (dbs.both() if r % 2 == 0 else dbs.both()[::-1])]
    for kind, db in runs:  # alternating which goes first, as the machine's load drifts
        rec = await open_rec(db, args.model, backbone)
        try:
            t0 = time.perf_counter()
            summary = await rec.import_items(records_from_source(manifest, cols), guild_id=0, actor="bench")
            took = time.perf_counter() - t0
        finally:
            await rec.close()
        print(f"| {kind} | {args.model} | {summary.added:,} | {took:.1f} s | {summary.added / took:.1f} |", flush=True)


# -- index load time -----------------------------------------------------------------------------------


async def bench_load(args: argparse.Namespace, dbs: Databases) -> None:
    from recommender.index import VectorIndex
    from recommender.records import ItemFields, NewItem
    from recommender.store import Store

    rng = np.random.default_rng(0)
    for kind, db in dbs.both():
        store = await Store.open(db)
        try:
            t0 = time.perf_counter()
            for start in range(0, args.n, 2000):
                v = rng.standard_normal((min(2000, args.n - start), args.dim)).astype(np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                batch = [
                    NewItem(
                        ItemFields(f"i{start + j}", f"Item {start + j}", f"c{(start + j) % 50}", 9.5),
                        b"t",
                        f"{start + j:064x}",
                        vec,
                    )
                    for j, vec in enumerate(v)
                ]
                await store.upsert_items(0, batch, args.label, "bench")
            filled = time.perf_counter() - t0
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                rows = await store.load_vectors(0, args.label)
                index = await asyncio.to_thread(
                    VectorIndex.build, rows.pks, rows.vectors, rows.categories, rows.prices, rows.hashes, args.dim
                )
                times.append(time.perf_counter() - t0)
                assert len(index) == args.n
        finally:
            await store.close()
        print(
            f"| {kind} | {args.n:,} x {args.dim} | {min(times):.2f} s | {float(np.median(times)):.2f} s | "
            f"{filled:.0f} s ({args.n / filled:,.0f} items/s) |",
            flush=True,
        )


# -- change propagation ----------------------------------------------------------------------------------


async def writer(db: str, n: int, pause: float) -> None:
    """The other process: add n items one by one, print `pk committed-at` for each."""
    from PIL import Image

    from recommender.records import ItemFields

    rec = await open_rec(db, "tiny")
    try:
        rng = np.random.default_rng(1)
        for i in range(n):
            im = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
            item = await rec.add_item(png(im), ItemFields(f"w{i}", f"W {i}", "c"), guild_id=0, actor="bench")
            print(item.pk, time.time(), flush=True)
            await asyncio.sleep(pause)
    finally:
        await rec.close()


async def bench_changes(args: argparse.Namespace, dbs: Databases) -> None:
    from PIL import Image

    from recommender.records import ItemFields

    db = dbs.postgresql()
    rec = await open_rec(db, "tiny")
    applied: dict[int, float] = {}
    original = rec.catalogues.apply

    async def timed(change: Any) -> None:
        await original(change)
        now = time.time()
        if change.kind == "items":
            applied.update(dict.fromkeys(change.pks, now))

    rec.catalogues.apply = timed
    try:
        seed = Image.new("RGB", (32, 32), (10, 200, 30))
        await rec.add_item(png(seed), ItemFields("seed", "Seed", "c"), guild_id=0, actor="bench")
        await rec.catalogues.index(0)  # loaded here, so every change is applied to it
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "_writer", db, str(args.n), str(args.pause), stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        committed = {int(pk): float(t) for pk, t in (line.split() for line in (await proc.stdout.read()).decode().splitlines())}
        await proc.wait()
        await asyncio.sleep(1.0)
        delays = [(applied[pk] - t) * 1000 for pk, t in committed.items() if pk in applied]
        index = await rec.catalogues.index(0)
        assert all(pk in index for pk in committed), "an item never reached this process"
    finally:
        await rec.close()
    print(
        f"| {len(delays)} items, one every {args.pause * 1000:.0f} ms | {pct(delays, 50):.1f} ms | {pct(delays, 99):.1f} ms "
        f"| {max(delays):.1f} ms |",
        flush=True,
    )


# -- photo -> reply latency, sharded ------------------------------------------------------------------------


def query_photos(n: int) -> list[tuple[str, bytes]]:
    folder = SHARED / "women-fashion" / "images"
    if not folder.is_dir():
        folder = ROOT / "tests" / "data" / "clothing-demo" / "images"
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    return [(f"photo{i}{p.suffix.lower()}", p.read_bytes()) for i, p in enumerate(paths[:n])]


async def run_bots(sb: Any, token: str, db: str, model: str, shard_sets: list[str | None], log: Path) -> list[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKALIKE_", "DISCORD_"))}
    env |= {"DISCORD_TOKEN": token, "LOOKALIKE_DB": db, "LOOKALIKE_MODEL": model, "LOOKALIKE_COOLDOWN_RATE": "100000"}
    procs = []
    for ids in shard_sets:
        extra = ["--shard-count", "2", "--shard-ids", ids] if ids else []
        with log.open("a") as out:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(ROOT / "tests" / "sandbox_bot.py"),
                    sb.api_url,
                    sb.gateway_url,
                    sb.base_url,
                    *extra,
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=out,
                )
            )
    return procs


async def one_layout(args: argparse.Namespace, db: str, shard_sets: list[str | None], photos: list[tuple[str, bytes]]) -> str:
    from bot.sandbox import DiscordSandbox
    from recommender.engine import Recommender

    sb = DiscordSandbox()
    await sb.start()
    bot_user = sb.create_bot_user("lookalike")
    guilds = [sb.create_guild(f"shop {s}", shard=(s, 2)) for s in (0, 1)]
    channels = [sb.create_text_channel(g, "photos") for g in guilds]
    members = [sb.create_user(f"m{i}") for i in range(args.burst)]
    rec = await Recommender.open(load_settings(env={}, db=db, model=args.model))
    for g, c in zip(guilds, channels):
        await rec.set_watched(g.id, c.id, True, actor="bench")
        for m in members:
            sb.add_member(g, m)
    await rec.close()
    procs = await run_bots(sb, bot_user.token, db, args.model, shard_sets, Path(args.log))
    try:
        shards = sum(len(ids.split(",")) if ids else 1 for ids in shard_sets)
        await sb.wait_until(
            lambda: sum(1 for s in sb.gateway.sessions.values() if s.connection and s.ready) == shards, 180, "every shard"
        )

        async def ask(i: int, who: Any, photo: tuple[str, bytes]) -> float:
            t0 = time.perf_counter()
            msg = await sb.post_message(channels[i % 2], who, attachments=[photo])
            await sb.wait_for_bot_message(lambda m: m.reference_id == msg.id, timeout=120)
            return (time.perf_counter() - t0) * 1000

        for i in range(4):  # warm-up: both guilds, the catalogue loaded in every process
            await ask(i, members[0], photos[i % len(photos)])
        single = [await ask(i, members[0], photos[i % len(photos)]) for i in range(args.posts)]
        t0 = time.perf_counter()
        burst = await asyncio.gather(*(ask(i, members[i], photos[i % len(photos)]) for i in range(args.burst)))
        wall = time.perf_counter() - t0
        assert not sb.violations, sb.violations
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait() for p in procs))
        await sb.stop()
    processes = f"{len(shard_sets)} process{'es' if len(shard_sets) > 1 else ''}"
    layout = f"{processes}, " + ("unsharded" if shard_sets == [None] else f"shards {' + '.join(map(str, shard_sets))} of 2")
    return (
        f"| {layout} | {pct(single, 50):.0f} / {pct(single, 99):.0f} ms | {pct(burst, 50):.0f} / {pct(burst, 99):.0f} ms "
        f"| {wall:.2f} s |"
    )


async def bench_latency(args: argparse.Namespace, dbs: Databases) -> None:
    from bot.cli import main as lookalike

    db = dbs.postgresql()
    demo = ROOT / "tests" / "data" / "clothing-demo" / "images"
    rc = await asyncio.to_thread(lookalike, ["import", str(demo), "--db", db, "--model", args.model])
    assert rc == 0
    photos = query_photos(max(args.posts, args.burst))
    layouts: list[list[str | None]] = [[None], ["0", "1"], ["0,1"]]
    for layout in layouts:
        print(await one_layout(args, db, layout, photos), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_writer"]:
        asyncio.run(writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", help="PostgreSQL URL to create scratch databases on (default: a server of our own)")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("import")
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--model", default="tiny")
    s.add_argument("--rounds", type=int, default=2)
    s = sub.add_parser("load")
    s.add_argument("--n", type=int, default=100_000)
    s.add_argument("--dim", type=int, default=512)
    s.add_argument("--label", default="vgg16", help="model name the vectors are stored under")
    s.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("changes")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--pause", type=float, default=0.05, help="seconds between the writer's items")
    s = sub.add_parser("latency")
    s.add_argument("--model", default="tiny")
    s.add_argument("--posts", type=int, default=20)
    s.add_argument("--burst", type=int, default=20)
    s.add_argument("--log", default=os.devnull, help="the bot processes' logs")
    args = p.parse_args()
    print(
        f"# bench/scale.py {args.what}: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    dbs = Databases(args.pg)
    try:
        asyncio.run(
            {"import": bench_import, "load": bench_load, "changes": bench_changes, "latency": bench_latency}[args.what](args, dbs)
        )
    finally:
        dbs.close()
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
