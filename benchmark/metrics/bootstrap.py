"""95% percentile-bootstrap intervals of the recall figures, from the per-item ranks of results files.

What is resampled: a test item is one record (image j and its caption j), so when a run has as many
image ranks as caption ranks both directions are drawn together; otherwise each direction's items are
drawn on their own. A single results file resamples its items. A summary row resamples seeds first
(S draws with replacement from the S seeds), then items within each drawn seed's own ranks (a
two-stage bootstrap), and averages the drawn seeds; an AVG row does that in every domain,
independently, and averages the domains as the AVG itself does. The interval is the (1 - level) / 2
and (1 + level) / 2 quantiles of the resampled figures (numpy's linear interpolation).

How it is vectorised: every figure of a resample depends only on how many drawn items fall in each
rank class (rank 1, 2-5, 6-10, above 10 per direction: 16 classes when directions are paired), so
drawing N items with replacement is one multinomial draw of N over the class frequencies. That is
the item bootstrap exactly, drawn for all resamples and seeds in one call, in memory that does not
grow with N. Deterministic: a fixed seed drives numpy's PCG64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)
DIRECTIONS = ("i2t", "t2i")
RECALL_FIGURES = tuple(f"{direction}_r{k}" for direction in DIRECTIONS for k in KS)
FIGURES = (*RECALL_FIGURES, "mean_recall")
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0

# One run's ranks: (image -> text ranks, text -> image ranks), 1-based.
RunRanks = tuple[Sequence[int], Sequence[int]]


def rank_classes(ranks: Sequence[int], ks: Sequence[int] = KS) -> np.ndarray:
    """Per item, how many of the K thresholds its rank misses: 0 for rank <= ks[0], ..., len(ks) above all."""
    values = np.asarray(ranks)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("ranks must be a non-empty 1-D sequence")
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 1:
        raise ValueError("ranks must be integers >= 1")
    return np.searchsorted(np.asarray(ks), values, side="left")


def _hits_per_class(levels: int, direction: int) -> np.ndarray:
    """(levels, len(RECALL_FIGURES)) 0/1: which recall figures of `direction` an item of each class hits."""
    table = np.zeros((levels, len(RECALL_FIGURES)))
    for level in range(levels):
        for k_index in range(levels - 1):
            table[level, direction * len(KS) + k_index] = float(level <= k_index)
    return table


def _components(runs: Sequence[RunRanks]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What one draw resamples, per component: (items per run (S,), class frequencies (S, C), hits (C, F)).
    Paired runs have one component over (i2t class, t2i class) pairs; unpaired runs one per direction."""
    levels = len(KS) + 1
    i2t = [rank_classes(run[0]) for run in runs]
    t2i = [rank_classes(run[1]) for run in runs]
    if all(len(a) == len(b) for a, b in zip(i2t, t2i, strict=True)):
        joint = [a * levels + b for a, b in zip(i2t, t2i, strict=True)]
        hits = np.repeat(_hits_per_class(levels, 0), levels, axis=0) + np.tile(_hits_per_class(levels, 1), (levels, 1))
        return [_frequencies(joint, levels * levels, hits)]
    return [_frequencies(i2t, levels, _hits_per_class(levels, 0)), _frequencies(t2i, levels, _hits_per_class(levels, 1))]


def _frequencies(classes: list[np.ndarray], count: int, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = np.array([len(c) for c in classes], dtype=np.int64)
    frequencies = np.stack([np.bincount(c, minlength=count) / len(c) for c in classes])
    return sizes, frequencies, hits


def domain_replicates(runs: Sequence[RunRanks], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, len(RECALL_FIGURES)) recall figures in percent, each the mean over S drawn seeds of one
    item resample of that seed's ranks (S = len(runs))."""
    if not runs:
        raise ValueError("a domain needs the ranks of at least one run")
    seeds = len(runs)
    drawn = rng.integers(0, seeds, size=(resamples, seeds))
    figures = np.zeros((resamples, seeds, len(RECALL_FIGURES)))
    for sizes, frequencies, hits in _components(runs):
        counts = rng.multinomial(sizes[drawn], frequencies[drawn])  # (resamples, seeds, classes)
        figures += counts @ hits / sizes[drawn][..., None]
    return 100.0 * figures.mean(axis=1)


def bootstrap_replicates(
    domains: Sequence[Sequence[RunRanks]], resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """(resamples, len(FIGURES)): per resample, each figure averaged over domains (each domain drawn as
    `domain_replicates`, in the order given); the last column is the mean of the six recalls."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not domains:
        raise ValueError("no domains to resample")
    rng = np.random.default_rng(seed)
    recalls = np.mean([domain_replicates(runs, resamples, rng) for runs in domains], axis=0)
    return np.concatenate([recalls, recalls.mean(axis=1, keepdims=True)], axis=1)


def percentile_intervals(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> dict[str, tuple[float, float]]:
    """{figure: (low, high)}: the central `level` quantile range of each column of `replicates`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    bounds = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {figure: (float(bounds[0, i]), float(bounds[1, i])) for i, figure in enumerate(FIGURES)}


def recall_intervals(
    domains: Sequence[Sequence[RunRanks]],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float]]:
    """Intervals of every figure: one domain with one run resamples its test items; one domain with
    several runs resamples seeds and items; several domains give the interval of their average."""
    return percentile_intervals(bootstrap_replicates(domains, resamples, seed), level)
