"""The `lookalike` console script: the operator CLI (recommender.cli) plus `run` and `demo`.

It lives in bot/ because it is the one place that knows both halves; discord is imported only
when `run` or `demo` actually runs, so `lookalike --help` stays light.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from recommender.cli import main as recommender_main


async def cmd_run(args: argparse.Namespace) -> int:
    from .app import run_from_cli

    return await run_from_cli(args)


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(Path(args.out), model=args.model, quiet=args.quiet)


def bot_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "run", parents=[common], help="run the Discord bot (token from DISCORD_TOKEN)",
        description="Run the bot. The token comes from DISCORD_TOKEN; database, model and options from "
        "LOOKALIKE_* variables or the TOML file given with --config. See docs/BOT.md.",
    )
    s.add_argument("--model", help="backbone (env LOOKALIKE_MODEL)")
    s.add_argument("--weights", help="local weights file (env LOOKALIKE_WEIGHTS)")
    s.add_argument("--pooling", choices=["gap", "flatten"])
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "demo", help="offline demo: a local Discord sandbox, the real bot, the bundled CC0 catalogue",
        description="Starts a local Discord sandbox and the real bot on the bundled CC0 demo catalogue, "
        "posts photos, runs /similar and a moderator /catalog add, prints the replies and saves the reply images. "
        "Needs no token and no network.",
    )
    s.add_argument("--out", default="demo-output", help="folder for the reply images (default ./demo-output)")
    s.add_argument("--model", default="efficientnet-lite0", help="backbone (default efficientnet-lite0, offline)")
    s.add_argument("--quiet", action="store_true", help="print only the summary")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_demo)


def main(argv: Sequence[str] | None = None) -> int:
    return recommender_main(argv, plugins=[bot_commands])


if __name__ == "__main__":
    sys.exit(main())
