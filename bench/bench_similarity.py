"""Time and peak memory of open-set matching at HW2P2 / CS 405 scale: 35,000 queries x 7,000 gallery, 512-d.

``verification.top1`` scores ``chunk_bytes`` of the query x gallery matrix at a time and keeps only each query's
best index and score; the dense float32 matrix alone would take 35,000 x 7,000 x 4 B = 980 MB. Peak memory is
the process's resident set, sampled every 2 ms, minus the resident set just before the call (inputs allocated).
``--dense`` also times the full matrix for comparison.

    python bench/bench_similarity.py [--queries 35000] [--gallery 7000] [--dim 512] [--chunk-mb 64 256] [--dense] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import verification

MB = 2**20


def peak_rss(fn: Callable[[], object]) -> tuple[float, float, object]:
    """``(seconds, peak extra resident MB, result)`` of ``fn()``."""
    process = psutil.Process()
    base = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return seconds, (max(peak, process.memory_info().rss) - base) / MB, result


def dense_top1(queries: torch.Tensor, gallery: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    scores = verification.similarity(queries, gallery, metric)
    best = scores.max(dim=1)
    return best.indices, best.values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=35_000)
    parser.add_argument("--gallery", type=int, default=7_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-mb", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--dense", action="store_true", help="also time the full matrix (needs ~1-2 GB more)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median time is reported")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, args.dim, generator=g), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(args.gallery, args.dim, generator=g), dim=1)
    rows, reference = [], {}
    for metric in verification.METRICS:
        runs = [(f"chunked {mb} MB", lambda mb=mb, metric=metric: verification.top1(
            queries, gallery, metric, chunk_bytes=mb * MB, progress=False)) for mb in args.chunk_mb]
        if args.dense:
            runs.append(("dense", lambda metric=metric: dense_top1(queries, gallery, metric)))
        for name, fn in runs:
            measured = [peak_rss(fn) for _ in range(args.repeats)]
            index = measured[0][2][0]
            agrees = torch.equal(index, reference.setdefault(metric, index))
            rows.append({"metric": metric, "method": name,
                         "seconds (median)": round(statistics.median(m[0] for m in measured), 2),
                         "peak_extra_MB (max)": round(max(m[1] for m in measured)), "same_top1_as_first": agrees})
    dense_mb = args.queries * args.gallery * 4 / MB
    print(f"{args.queries} queries x {args.gallery} gallery, {args.dim}-d float32 (dense matrix {dense_mb:.0f} MB; "
          f"inputs {(queries.numel() + gallery.numel()) * 4 / MB:.0f} MB) on {torch.get_num_threads()} CPU threads, "
          f"torch {torch.__version__}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
