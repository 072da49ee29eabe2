"""Seed statistics and bootstrap intervals for the leaderboard: mean ± std over seeds, and a 95%
percentile interval over test items AND seeds, resampled from the per-item ranks results files carry.

One replicate of a cell (run, domain, direction) draws S seeds with replacement from the S seeds run,
and N test items with replacement from the N items (the same items for every drawn seed: the test
split is shared, so seeds and items are crossed, not nested); its value is, per K, the mean over the
drawn seeds of Recall@K over the drawn items. An AVG replicate is the mean over domains of the domain
replicates with the same index, the paper's plain mean over domains. This module is the one place to
swap for a shared bootstrap (benchmark/metrics/bootstrap.py) should one land.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntervalSettings:
    level: float = 0.95  # the usual two-sided 95%, as results files carry
    resamples: int = 1000  # enough for stable 2.5/97.5 percentiles at a table's 2 decimals
    chunk: int = 64  # replicates computed together: bounds memory at chunk x seeds x items bytes
    salt: str = "fdrd-leaderboard"  # seeds every cell's generator from its name (stable across processes)

    def describe(self) -> dict[str, object]:
        return {
            "level": self.level,
            "resamples": self.resamples,
            "method": "percentile bootstrap over test items and seeds (crossed), from per-item ranks",
        }


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (n - 1); std is None for a single value (no spread to show)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def cell_generator(settings: IntervalSettings, *names: str) -> np.random.Generator:
    """A generator seeded from the cell's names by sha256 (Python's hash() changes per process)."""
    digest = hashlib.sha256("/".join((settings.salt, *names)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_resamples(
    rng: np.random.Generator, n_seeds: int, n_items: int, resamples: int, chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(seed indices [c, S], item indices [c, N]) per chunk of c replicates: the draws themselves, so that
    a reference implementation can consume exactly the same ones."""
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        yield rng.integers(0, n_seeds, size=(size, n_seeds)), rng.integers(0, n_items, size=(size, n_items))
        done += size


def replicate_recalls(
    ranks_by_seed: Sequence[Sequence[int]], ks: Sequence[int], settings: IntervalSettings, rng: np.random.Generator
) -> dict[int, np.ndarray]:
    """Per K, `settings.resamples` bootstrap replicates of Recall@K in percent (see the module docstring).

    A chunk of replicates gathers its drawn ranks in one indexing ([c, S, N]); ranks are clipped to
    max(K) + 1 and stored in a byte first, since only "within K or not" matters (perf/leaderboard_bootstrap.py
    times this against gathering replicate by replicate).
    """
    ranks = np.asarray(ranks_by_seed, dtype=np.int64)
    n_seeds, n_items = ranks.shape
    ceiling = max(ks) + 1
    small = np.minimum(ranks, ceiling).astype(np.uint8 if ceiling < 256 else np.int64)
    out: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    for seed_idx, item_idx in draw_resamples(rng, n_seeds, n_items, settings.resamples, settings.chunk):
        drawn = small[seed_idx[:, :, None], item_idx[:, None, :]]
        for k in ks:
            out[k].append(100.0 * np.count_nonzero(drawn <= k, axis=(1, 2)) / (n_seeds * n_items))
    return {k: np.concatenate(parts) for k, parts in out.items()}


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)
