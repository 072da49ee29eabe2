"""Seed statistics and bootstrap settings for the leaderboard: mean ± std over seeds, and how a cell's
95% interval over test items AND seeds is drawn.

The replicates themselves come from benchmark/metrics/bootstrap.py (`domain_replicates`), the same code
that `fdrd bench` summaries use: one replicate of a (run, domain) draws S seeds with replacement and one
set of N test items with replacement that every drawn seed is scored on (seeds and items are crossed:
all seeds were scored on the same test split). An AVG replicate is the mean over domains of the domain
replicates with the same index, the paper's plain mean over domains. Each cell's generator is seeded from
its names, so a table is the same in any process.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES


@dataclass(frozen=True)
class IntervalSettings:
    level: float = DEFAULT_LEVEL  # the usual two-sided 95%, as results files carry
    resamples: int = DEFAULT_RESAMPLES  # 1000: enough for stable 2.5/97.5 percentiles at a table's 2 decimals
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


def name_seed(settings: IntervalSettings, *names: str) -> int:
    """A seed from names by sha256 (Python's hash() changes per process)."""
    digest = hashlib.sha256("/".join((settings.salt, *names)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def cell_generator(settings: IntervalSettings, *names: str) -> np.random.Generator:
    """A generator seeded from the cell's names."""
    return np.random.default_rng(name_seed(settings, *names))
