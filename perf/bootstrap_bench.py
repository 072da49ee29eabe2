"""How fast the summary bootstrap is, against resampling item indices, measured in the same run.

    .venv/bin/python perf/bootstrap_bench.py [--items 1536] [--seeds 3] [--domains 3] [--resamples 1000] [--repeats 3]

Both compute the AVG-row interval of a summary (seeds, then items within each drawn seed, every domain):
the fast path (benchmark/metrics/bootstrap.py) draws one multinomial over item classes per resample;
the baseline draws every seed and item index (numpy, vectorised over resamples) and gathers the
per-item hits. Prints seconds (best of R), the ratio, and the memory the baseline's gather takes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmark.metrics.bootstrap import recall_intervals


def index_baseline(domains, resamples: int, seed: int) -> np.ndarray:
    """Mean recall per resample by gathering resampled indices (the obvious vectorisation): S seeds and
    one set of N items per resample, every drawn seed scored on the drawn items."""
    rng = np.random.default_rng(seed)
    per_domain = []
    for runs in domains:
        hits = np.stack([
            np.stack([np.asarray(ranks) <= k for ranks in run for k in (1, 5, 10)], axis=1) for run in runs
        ]).astype(np.float32)  # (seeds, items, 6)
        seeds, items = hits.shape[:2]
        drawn = rng.integers(0, seeds, size=(resamples, seeds))
        picks = rng.integers(0, items, size=(resamples, items), dtype=np.int32)
        per_domain.append(100 * hits[drawn[:, :, None], picks[:, None, :]].mean(axis=(1, 2, 3)))
    return np.mean(per_domain, axis=0)


def best_of(repeats: int, work) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1536)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    domains = [
        [(rng.geometric(0.05, args.items).tolist(), rng.geometric(0.05, args.items).tolist()) for _ in range(args.seeds)]
        for _ in range(args.domains)
    ]
    fast = best_of(args.repeats, lambda: recall_intervals(domains, args.resamples))
    slow = best_of(args.repeats, lambda: np.quantile(index_baseline(domains, args.resamples, 0), [0.025, 0.975]))
    gathered_mib = args.resamples * args.seeds * args.items * 6 * 4 / 2**20
    print(f"{args.domains} domains x {args.seeds} seeds x {args.items} items, {args.resamples} resamples (best of {args.repeats})")
    print(f"  multinomial over item classes: {fast:.3f} s")
    print(f"  index gather baseline:        {slow:.3f} s  (gathers {gathered_mib:.0f} MiB of hits per domain)")
    print(f"  ratio baseline / fast: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
