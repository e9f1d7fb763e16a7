"""`lookalike evaluate`: retrieval and classifier quality of a catalogue, or (--queries) how it answers
members' photos; both write a PNG/HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_evaluate(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser, model: argparse.ArgumentParser
) -> None:
    from .cli import count

    s = sub.add_parser(
        "evaluate",
        parents=[common, model],
        help="retrieval and classifier quality, with a PNG/HTML report",
        description="precision@1/@10 and mAP@10 leave-one-out (same category = relevant); classifier "
        "accuracy and macro-F1 on a stratified held-out split; categories smaller than --min-class-size are left out.",
    )
    s.add_argument("--out", default="report", help="report folder (default ./report)")
    s.add_argument("--min-class-size", type=int, default=20)
    s.add_argument("--test-fraction", type=float, default=0.25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--examples", type=count, default=8, help="query rows in the picture (default 8)")
    s.add_argument("--queries", help="members' photos to score instead, one sub-folder per kind (DIR/<kind>/*.jpg)")
    s.add_argument("--accept", help="with --queries: the categories accepted per kind (JSON {kind: [...]} or CSV kind,category)")
    s.set_defaults(func=cmd_evaluate)


async def cmd_evaluate(args: argparse.Namespace) -> int:
    from .assess import evaluate_catalogue
    from .cli import _open_store, _where

    if args.queries:
        return await _evaluate_queries(args)
    store, model = await _open_store(args)
    try:
        print(f"evaluating the {_where(args.guild)} catalogue ({model}) ...", file=sys.stderr)
        ev = await evaluate_catalogue(
            store,
            model,
            guild_id=args.guild,
            out_dir=Path(args.out),
            min_class_size=args.min_class_size,
            test_fraction=args.test_fraction,
            seed=args.seed,
            examples=args.examples,
        )
    finally:
        await store.close()
    for key, value in ev.metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"report: {ev.files['report.html']} and {ev.files['report.png']}")
    return 0


async def _evaluate_queries(args: argparse.Namespace) -> int:
    """Members' photos (DIR/<kind>/*) through the bot's own path, scored against the accepted categories."""
    from .assess import PhotoAnswer, evaluate_queries
    from .cli import _open, _where
    from .names import shown
    from .progress import Progress

    async with await _open(args) as rec:
        print(f"asking the {_where(args.guild)} catalogue ({rec.model}) about {args.queries} ...", file=sys.stderr)

        async def answer(path: Path) -> PhotoAnswer:
            r = await rec.similar(path, guild_id=args.guild, k=10)
            thumbs = await rec.thumbnails([m.item.pk for m in r.matches])
            p = r.prediction
            return PhotoAnswer(
                [m.item.category for m in r.matches],
                [thumbs.get(m.item.pk, b"") for m in r.matches],
                [m.score for m in r.matches],
                None if p is None else p.category,
                r.nothing_like_this,
            )

        bar = Progress(None, "evaluate")

        def skipped(path: Path, why: str) -> None:
            print(f"skipped {shown(str(path))}: {shown(why)}", file=sys.stderr)

        try:
            ev = await evaluate_queries(
                answer, Path(args.queries), out_dir=Path(args.out), accept_file=args.accept and Path(args.accept),
                examples=args.examples, seed=args.seed, progress=lambda done, n: bar.update(done, n), skipped=skipped,
            )  # fmt: skip
        finally:
            bar.close()
    for key, value in ev.metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"report: {ev.files['report.html']} and {ev.files['report.png']}")
    return 0
