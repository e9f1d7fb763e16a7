"""Search latency of the in-memory index: exact cosine top-k over n items, with and without filters.

    .venv/bin/python bench/search.py [--sizes 1000 20000 100000] [--dims 512 1280] [--queries 200]

Prints one Markdown table row per (n, dim, filter): p50 / p99 milliseconds per query.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import time

import numpy as np

from recommender.index import SearchFilter, VectorIndex


def build(n: int, dim: int, rng: np.random.Generator) -> VectorIndex:
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cats = [f"cat{i % 100}" for i in range(n)]
    prices = rng.uniform(5, 200, n)
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    return VectorIndex.build(np.arange(n, dtype=np.int64), vecs, cats, prices, hashes, dim)


def time_queries(index: VectorIndex, queries: np.ndarray, flt: SearchFilter, k: int) -> tuple[float, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k, flt)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 20_000, 100_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 1280])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, k={args.k}, {args.queries} queries")
    print("| items | dim | filter | p50 ms | p99 ms |")
    print("|---:|---:|---|---:|---:|")
    filters = {
        "none": SearchFilter(),
        "category": SearchFilter(category="cat7"),
        "price 20-50 + exclude hash": SearchFilter(min_price=20, max_price=50, exclude_hash=hashlib.sha256(b"3").hexdigest()),
    }
    for n in args.sizes:
        for dim in args.dims:
            index = build(n, dim, rng)
            queries = rng.standard_normal((args.queries, dim), dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            index.search(queries[0], args.k)  # warm up
            for name, flt in filters.items():
                p50, p99 = time_queries(index, queries, flt, args.k)
                print(f"| {n:,} | {dim} | {name} | {p50:.2f} | {p99:.2f} |", flush=True)


if __name__ == "__main__":
    main()
