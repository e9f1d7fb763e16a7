"""`lookalike`: the operator CLI. Parse, call one library function, print.

Results go to stdout, progress and warnings to stderr. Library errors (RecommenderError) become
one line on stderr and exit code 1; bad usage is exit code 2. `--help` imports neither torch nor
discord: everything heavy is imported inside the command that needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import runtime
from .cli_evaluate import add_evaluate
from .cli_export import add_export
from .cli_sync import add_sync
from .config import DEFAULT_GUILD, check_k, load_settings
from .errors import BadOption, ItemNotFound, RecommenderError
from .names import shown

log = logging.getLogger("lookalike")

Plugin = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def count(text: str) -> int:
    """A number of things to list: 0 or more."""
    return _whole(text, 0)


def _k(text: str) -> int:
    try:
        return check_k(_positive(text))
    except BadOption as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a price: 0 or more")
    return value


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _settings(args: argparse.Namespace) -> Any:
    return load_settings(
        args.config,
        db=args.db,
        model=getattr(args, "model", None),
        weights=getattr(args, "weights", None),
        pooling=getattr(args, "pooling", None),
    )


async def _open_store(args: argparse.Namespace) -> tuple[Any, str]:
    """Store-only commands: no model is loaded. Returns (store, model key)."""
    from .backbones import DEFAULT_MODEL, model_key
    from .store import Store

    s = _settings(args)
    store = await Store.open(s.db)
    model = model_key(s.model, s.pooling) if s.model else await store.model_in_use(DEFAULT_MODEL, args.guild)
    return store, model


async def _open(args: argparse.Namespace) -> Any:
    from .engine import Recommender

    return await Recommender.open(_settings(args))


# -- commands ---------------------------------------------------------------------------------


async def cmd_import(args: argparse.Namespace) -> int:
    from .importer import Columns, ImportLimits, count_records, records_from_source
    from .progress import Progress
    from .records import ImportNotes

    source = Path(args.source)
    cols = Columns(
        id=args.id_column,
        path=args.path_column,
        name=args.name_column,
        category=args.category_column,
        price=args.price_column,
        url=args.url_column,
        description=args.description_column,
    )
    max_bytes = _settings(args).max_image_bytes
    notes = ImportNotes()
    records = records_from_source(source, cols, ImportLimits.for_images(max_bytes), notes)
    total = count_records(source)
    async with await _open(args) as rec:
        print(f"importing {shown(str(source))} into the {_where(args.guild)} catalogue with {rec.model}", file=sys.stderr)
        bar = Progress(total, "import")
        try:
            summary = await rec.import_items(
                records,
                guild_id=args.guild,
                actor=_actor(),
                total=total,
                progress=bar.update,
                batch=args.batch,
            )
        finally:
            bar.close()
        print(
            f"added {summary.added}, updated {summary.updated}, unchanged {summary.unchanged}, "
            f"failed {len(summary.failed)} in {summary.seconds:.1f}s ({summary.done / max(summary.seconds, 1e-9):.1f} items/s)"
        )
        print_failures(summary.failed, args.show_failures)
        for warning in notes.warnings:
            print(f"warning: {shown(warning)}")
        if notes.count:
            print(f"{notes.count} ids differ from their file names:")
            for where, item_id, why in notes.renamed[: args.show_failures]:
                print(f"  {shown(where, 200)} -> {shown(item_id, 100)} ({why})")
            if notes.count > args.show_failures:
                print(f"  ... and {notes.count - args.show_failures} more")
        if not args.no_train:
            print("fitting the catalogue's head (category classifier, search order, open set) ...", file=sys.stderr)
            head = await rec.retrain(args.guild, force=False)
            if head is not None:
                print(f"classifier: {head.classifier.method} over {len(head.classifier.labels)} categories")
    return 0


def print_failures(failed: list[tuple[str, str, str]], limit: int) -> None:
    """The first `limit` failures of an import or a sync, escaped for the terminal, then how many more."""
    for item_id, where, reason in failed[:limit]:
        print(f"  failed {shown(item_id or '?', 100)} ({shown(where, 200)}): {shown(reason, 300)}")
    if len(failed) > limit:
        print(f"  ... and {len(failed) - limit} more")


def _where(guild: int) -> str:
    return "default" if guild == DEFAULT_GUILD else f"guild {guild}"


async def cmd_similar(args: argparse.Namespace) -> int:
    async with await _open(args) as rec:
        result = await rec.similar(
            Path(args.image),
            guild_id=args.guild,
            k=args.k,
            category=args.category,
            min_price=args.min_price,
            max_price=args.max_price,
        )
    p = result.prediction
    if not result.matches:  # only the filters can leave none: say so, or a script sees an empty answer and no reason
        print("no catalogue item matches --category, --min-price and --max-price as given", file=sys.stderr)
    if args.json:
        for m in result.matches:
            print(
                json.dumps(
                    {
                        "score": round(m.score, 4),
                        "id": m.item.item_id,
                        "category": m.item.category,
                        "name": m.item.name,
                        "price": m.item.price,
                        "url": m.item.url,
                        "nothing_like_this": result.nothing_like_this,  # the closest items, but none is close
                    }
                )
            )
        return 0
    if result.nothing_like_this:
        print("# nothing like this in the catalogue; the closest items are not close:")
    elif p is not None:
        print(
            f"# looks like: {shown(p.category or 'not sure')} ({p.probability:.0%}"
            + (f" {shown(p.ranked[0][0])}" if not p.sure else "")
            + ")"
        )
    for m in result.matches:
        price = f"\t{m.item.price:g}" if m.item.price is not None else "\t"
        print(f"{m.score:.3f}\t{shown(m.item.item_id)}\t{shown(m.item.category)}\t{shown(m.item.name)}{price}")
    return 0


async def cmd_classify(args: argparse.Namespace) -> int:
    async with await _open(args) as rec:
        answer = await rec.classify(Path(args.image), guild_id=args.guild)
    p, nothing = answer.prediction, answer.nothing_like_this
    if args.json:
        body = {"category": p.category, "probability": p.probability, "ranked": p.ranked, "method": p.method}
        print(json.dumps({**body, "nothing_like_this": nothing}))
        return 0
    if nothing:
        print(f"nothing like this in the catalogue\t{p.probability:.2f}")
        return 0
    print(f"{shown(p.category or 'not sure')}\t{p.probability:.2f}")
    for cat, prob in p.ranked[1:]:
        print(f"  {shown(cat)}\t{prob:.2f}", file=sys.stderr)
    return 0


async def cmd_remove(args: argparse.Namespace) -> int:
    store, _ = await _open_store(args)
    missing = 0
    try:
        for item_id in args.ids:  # an unknown id (a typo) is said and skipped: the others are still removed
            try:
                item = await store.remove_item(args.guild, item_id, _actor())
            except ItemNotFound as e:
                print(f"lookalike: {e}", file=sys.stderr)
                missing += 1
                continue
            print(f"removed {shown(item.item_id)}\t{shown(item.category)}\t{shown(item.name)}")
    finally:
        await store.close()
    return 1 if missing else 0


async def cmd_stats(args: argparse.Namespace) -> int:
    store, model = await _open_store(args)
    try:
        counts = await store.category_counts(args.guild)
        info = {
            "database": store.database.shown,
            "catalogue": _where(args.guild),
            "items": sum(counts.values()),
            "embeddings": await store.model_counts(args.guild),
            "categories": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            "other catalogues": [g for g in await store.catalogue_ids() if g != args.guild],
        }
        saved = await store.load_classifier(args.guild, model)
        info["classifier"] = None if saved is None else f"{saved.method} ({model}), trained {saved.trained_at:%Y-%m-%d %H:%M} UTC"
    finally:
        await store.close()
    if args.json:
        print(json.dumps(info))
        return 0
    for key, value in info.items():
        if key == "categories":
            print(f"categories: {len(value)}")
            for cat, n in list(value.items())[: args.top]:
                print(f"  {n:7d}  {shown(cat)}")
            if len(value) > args.top:
                print(f"  ... {len(value) - args.top} more")
        else:
            print(f"{key}: {shown(str(value))}")
    return 0


# -- parser -----------------------------------------------------------------------------------


def build_parser(plugins: Sequence[Plugin] = ()) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="SQLite database file or postgresql:// URL (env LOOKALIKE_DB; default ./lookalike.db)")
    common.add_argument("--config", help="TOML settings file (env LOOKALIKE_CONFIG)")
    common.add_argument(
        "--guild", type=int, default=DEFAULT_GUILD, help="a guild's catalogue (default: the shared default catalogue)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        help="backbone: vgg16, resnet50, efficientnet-lite0 or efficientnet-lite2 (offline; lite2 for members' photos), tiny (tests). "
        "Default: env LOOKALIKE_MODEL, else what the catalogue was built with, else vgg16",
    )
    model.add_argument(
        "--weights", help="local weights file for vgg16/resnet50 (env LOOKALIKE_WEIGHTS); 'random' for timing only"
    )
    model.add_argument("--pooling", choices=["gap", "flatten"], help="vgg16 features: gap (512-d, default) or flatten (25,088-d)")

    p = argparse.ArgumentParser(
        prog="lookalike", description="Find catalogue items that look like a photo, and predict its category."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "import",
        parents=[common, model],
        help="add a folder or a CSV/Parquet manifest to a catalogue",
        description="Import a folder (sub-folder name = category), a CSV/Parquet manifest or a ZIP. "
        "Re-running finishes an interrupted import; unchanged images are not embedded again.",
    )
    s.add_argument("source", help="folder, .csv, .parquet or .zip")
    for col, default in (
        ("id", "id"),
        ("path", "path"),
        ("name", "name"),
        ("category", "category"),
        ("price", "price"),
        ("url", "url"),
        ("description", "description"),
    ):
        s.add_argument(f"--{col}-column", default=default, help=f"manifest column for the {col} (default {default!r})")
    s.add_argument(
        "--batch",
        type=_positive,
        default=64,
        help="items per transaction (default 64; memory does not grow with it)",
    )
    s.add_argument(
        "--no-train",
        action="store_true",
        help="skip fitting the catalogue's head (category classifier, search order, open set) at the end",
    )
    s.add_argument("--show-failures", type=count, default=20, help="failures listed in the summary (default 20)")
    s.set_defaults(func=cmd_import, resumable=True)

    s = sub.add_parser("similar", parents=[common, model], help="catalogue items that look like IMAGE")
    s.add_argument("image")
    s.add_argument("-k", type=_k, default=None, help="how many results (1-25, default 5)")
    s.add_argument("--category", help="only this category")
    s.add_argument("--min-price", type=_price)
    s.add_argument("--max-price", type=_price)
    s.add_argument("--json", action="store_true", help="JSON lines")
    s.set_defaults(func=cmd_similar)

    s = sub.add_parser("classify", parents=[common, model], help="predict the category of IMAGE")
    s.add_argument("image")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("remove", parents=[common], help="remove items by id")
    s.add_argument("ids", nargs="+", metavar="ID")
    s.set_defaults(func=cmd_remove)

    s = sub.add_parser("stats", parents=[common, model], help="what is in the catalogue")
    s.add_argument("--top", type=count, default=15, help="categories listed (default 15)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    add_export(sub, common, model)

    add_evaluate(sub, common, model)
    add_sync(sub, common, model)
    for plugin in plugins:
        plugin(sub, common)
    return p


def main(argv: Sequence[str] | None = None, plugins: Sequence[Plugin] = ()) -> int:
    parser = build_parser(plugins)
    args = parser.parse_args(argv)
    low, high = getattr(args, "min_price", None), getattr(args, "max_price", None)
    if low is not None and high is not None and low > high:
        parser.error("--min-price is above --max-price")
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)  # a decoder's warnings about a member's file go to the log, once each
    runtime.tune_allocator()  # before any thread starts: freed matrices go back to the system
    if not getattr(args, "verbose", False):
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return asyncio.run(args.func(args)) or 0
    except RecommenderError as e:
        print(f"lookalike: {shown(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:  # a file or folder the command was pointed at: one sentence, not a traceback
        print(f"lookalike: {e.strerror or e}{f': {shown(str(e.filename))}' if e.filename else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " Finished batches are saved; run the same command again to resume." if getattr(args, "resumable", False) else ""
        print(f"\nlookalike: interrupted.{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
