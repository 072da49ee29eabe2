"""Cost of the leaderboard's bootstrap (benchmark/leaderboard_stats.replicate_recalls: ranks clipped to
bytes, a chunk of replicates gathered in one indexing) against the obvious one (gather the drawn ranks
replicate by replicate), on the same draws, in one run; prints each time and the ratio.

The default size is one SUN397-sized cell (19,850 test captions), 3 seeds, 1000 resamples, K = 1, 5, 10:
a table has 2 directions x domains x runs such cells.

    .venv/bin/python perf/leaderboard_bootstrap.py [--items 19850] [--seeds 3] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmark.leaderboard_stats import IntervalSettings, draw_resamples, replicate_recalls

KS = (1, 5, 10)


def gather_baseline(ranks: np.ndarray, settings: IntervalSettings, rng: np.random.Generator) -> dict[int, np.ndarray]:
    out: dict[int, list[float]] = {k: [] for k in KS}
    n_seeds, n_items = ranks.shape
    for seed_rows, item_rows in draw_resamples(rng, n_seeds, n_items, settings.resamples, settings.chunk):
        for seeds, items in zip(seed_rows, item_rows, strict=True):
            drawn = ranks[seeds][:, items]
            for k in KS:
                out[k].append(100.0 * float((drawn <= k).mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=19850)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    ranks = np.random.default_rng(0).integers(1, 40, size=(args.seeds, args.items))
    settings = IntervalSettings(resamples=args.resamples)
    timings, answers = {}, {}
    for name, function in (("chunked byte gather (leaderboard)", replicate_recalls), ("gather per replicate (baseline)", None)):
        start = time.perf_counter()
        if function is None:
            answers[name] = gather_baseline(ranks, settings, np.random.default_rng(1))
        else:
            answers[name] = function(ranks, KS, settings, np.random.default_rng(1))
        timings[name] = time.perf_counter() - start
    fast, slow = answers.values()
    assert all(np.allclose(fast[k], slow[k]) for k in KS), "the two paths disagree"
    for name, seconds in timings.items():
        print(f"{name:34s} {seconds:8.3f} s")
    fast_time, slow_time = timings.values()
    print(f"baseline / leaderboard: {slow_time / fast_time:.2f}x  ({args.seeds} seeds, {args.items} items, {args.resamples} resamples)")


if __name__ == "__main__":
    main()
