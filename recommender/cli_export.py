"""`lookalike export --out FILE.parquet`: a catalogue's items and vectors, written whole or not at all."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_export(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser, model: argparse.ArgumentParser
) -> None:
    s = sub.add_parser("export", parents=[common, model], help="write items and vectors to Parquet")
    s.add_argument("--out", required=True, help="FILE.parquet")
    s.set_defaults(func=cmd_export)


async def cmd_export(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .cli import _open_store, _where

    text, when = pa.string(), pa.timestamp("us")
    schema = pa.schema([("id", text), ("name", text), ("category", text), ("price", pa.float64()), ("url", text),
                        ("description", text), ("attributes", text), ("content_hash", text), ("added_by", text),
                        ("added_at", when), ("model", text), ("vector", pa.list_(pa.float32()))])  # fmt: skip
    store, model = await _open_store(args)
    out = Path(args.out)
    part = out.with_name(out.name + ".part")  # the file appears whole or not at all, never cut short
    n = 0
    writer = None
    try:
        async for batch in store.iter_export(args.guild, model):
            columns = {
                "id": [it.item_id for it, _ in batch],
                "name": [it.name for it, _ in batch],
                "category": [it.category for it, _ in batch],
                "price": [it.price for it, _ in batch],
                "url": [it.url for it, _ in batch],
                "description": [it.description for it, _ in batch],
                "attributes": [json.dumps(it.attributes) if it.attributes else None for it, _ in batch],
                "content_hash": [it.content_hash for it, _ in batch],
                "added_by": [it.added_by for it, _ in batch],
                "added_at": [it.added_at for it, _ in batch],
                "model": [model] * len(batch),
                "vector": [v for _, v in batch],
            }
            table = pa.table(columns, schema=schema)  # one schema: a batch without prices is still the file's
            writer = writer or pq.ParquetWriter(part, schema)
            writer.write_table(table)
            n += len(batch)
        if writer:
            writer.close()
            writer = None
            part.replace(out)
    finally:
        if writer:
            writer.close()
        part.unlink(missing_ok=True)
        await store.close()
    if n == 0:
        print(f"nothing to export: the {_where(args.guild)} catalogue has no {model} embeddings", file=sys.stderr)
        return 1
    print(f"exported {n} items ({model} vectors) to {out}")
    return 0
