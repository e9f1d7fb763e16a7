"""The `lookalike` console script: the operator CLI (recommender.cli) plus `run` and `demo`.

It lives in bot/ because it is the one place that knows both halves; discord is imported only
when `run` or `demo` actually runs, so `lookalike --help` stays light.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from recommender.cli import main as recommender_main


async def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from .app import run_from_cli

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)  # a server logs what it does
    return await run_from_cli(args)


async def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the running bot stamped its health file recently (the Docker HEALTHCHECK)."""
    path = args.file or os.environ.get("LOOKALIKE_HEALTH_FILE")
    if not path:
        print("lookalike: no health file: set LOOKALIKE_HEALTH_FILE (the bot stamps it while connected)", file=sys.stderr)
        return 2
    try:
        age = time.time() - Path(path).stat().st_mtime  # noqa: ASYNC240 (a one-shot CLI command, no loop to block)
    except OSError:
        print(f"unhealthy: {path} does not exist (the bot is not connected yet)")
        return 1
    if age > args.max_age:
        print(f"unhealthy: last stamp {age:.0f}s ago (limit {args.max_age:.0f}s)")
        return 1
    print(f"healthy: last stamp {age:.0f}s ago")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(Path(args.out), model=args.model, quiet=args.quiet)


def bot_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "run",
        help="run the Discord bot (token from DISCORD_TOKEN)",
        description="Run the bot. The token comes from DISCORD_TOKEN; database, model and options from "
        "LOOKALIKE_* variables or the TOML file given with --config. See docs/BOT.md.",
    )
    s.add_argument("--db", help="SQLite database file or postgresql:// URL (env LOOKALIKE_DB; default ./lookalike.db)")
    s.add_argument("--config", help="TOML settings file (env LOOKALIKE_CONFIG)")
    s.add_argument("--model", help="backbone (env LOOKALIKE_MODEL)")
    s.add_argument("--weights", help="local weights file (env LOOKALIKE_WEIGHTS)")
    s.add_argument("--pooling", choices=["gap", "flatten"])
    s.add_argument(
        "--shard-count",
        metavar="N",
        help="shard the bot: N shards in all, over every process (env LOOKALIKE_SHARD_COUNT; default: no sharding)",
    )
    s.add_argument(
        "--shard-ids",
        metavar="IDS",
        help="the shards this process runs, like 0,1 (env LOOKALIKE_SHARD_IDS; default: all N)",
    )
    s.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("health", help="is the running bot connected? (exit 0 yes, 1 no; for Docker)")
    s.add_argument("--file", help="health file (default: env LOOKALIKE_HEALTH_FILE)")
    s.add_argument("--max-age", type=float, default=90.0, help="seconds since the last stamp (default 90)")
    s.set_defaults(func=cmd_health)

    s = sub.add_parser(
        "demo",
        help="offline demo: a local Discord sandbox, the real bot, the bundled CC0 catalogue",
        description="Starts a local Discord sandbox and the real bot on the bundled CC0 demo catalogue, "
        "posts photos, runs /similar and a moderator /catalog add, prints the replies and saves the reply images. "
        "Needs no token and no network.",
    )
    s.add_argument("--out", default="demo-output", help="folder for the reply images (default ./demo-output)")
    s.add_argument("--model", help="backbone (default efficientnet-lite2: offline, the one for members' photos)")
    s.add_argument("--quiet", action="store_true", help="print only the summary")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_demo)


def main(argv: Sequence[str] | None = None) -> int:
    return recommender_main(argv, plugins=[bot_commands])


if __name__ == "__main__":
    sys.exit(main())
