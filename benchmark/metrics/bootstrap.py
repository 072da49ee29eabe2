"""95% percentile-bootstrap intervals of the recall figures, from the per-item ranks of results files.

What is resampled: a test item is one record (image j and its caption j), so when a run has as many
image ranks as caption ranks both directions are drawn together; otherwise each direction's items are
drawn on their own. A single results file resamples its items. A summary row (one domain, S seeds)
resamples seeds AND items: S seeds drawn with replacement, and one draw of test items with
replacement that every drawn seed is scored on, because all seeds were evaluated on the same test
split (drawing items separately per seed would treat one test set as S independent ones and shrink
the item part of the interval by about sqrt(S)). An AVG row does that in every domain, independently,
and averages the domains as the AVG itself does. The interval is the (1 - level) / 2 and
(1 + level) / 2 quantiles of the resampled figures (numpy's linear interpolation).

A difference between two run labels (`difference_intervals`) is a paired bootstrap: both were scored on
the same test items, so one draw of items serves both sides, and each side's seeds are drawn on their own;
most of an interval's width is which items were drawn, and a difference does not pay it twice.

How it is vectorised: a resample's figures depend only on how many drawn items fall in each class of
items, where an item's class is its rank class (rank 1, 2-5, 6-10, above 10 per direction) in every
seed, so drawing N items with replacement is one multinomial draw of N over the class frequencies
(at most N classes, and at most 16 ** S when directions are paired), in memory that does not grow
with the resamples beyond one chunk. Deterministic: a fixed seed drives numpy's PCG64.
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


def _components(runs: Sequence[RunRanks]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """What one resample draws, per component (both directions together when paired, else one each):
    (items, frequency of each item class (K,), hits of each class in each seed (K, S, F))."""
    levels = len(KS) + 1
    i2t = [rank_classes(run[0]) for run in runs]
    t2i = [rank_classes(run[1]) for run in runs]
    if len({len(c) for c in i2t}) > 1 or len({len(c) for c in t2i}) > 1:
        raise ValueError("the runs of one domain must have as many test items each (the same test split)")
    if len(i2t[0]) == len(t2i[0]):
        per_seed = np.stack([a * levels + b for a, b in zip(i2t, t2i, strict=True)], axis=1)  # (N, S)
        hits = np.repeat(_hits_per_class(levels, 0), levels, axis=0) + np.tile(_hits_per_class(levels, 1), (levels, 1))
        return [_item_classes(per_seed, hits)]
    return [_item_classes(np.stack(i2t, axis=1), _hits_per_class(levels, 0)),
            _item_classes(np.stack(t2i, axis=1), _hits_per_class(levels, 1))]


def _item_classes(per_seed: np.ndarray, hits: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Items (rows of `per_seed`: each item's class in every seed) grouped by their classes:
    (items, frequencies (K,), hits per class and seed (K, S, F))."""
    classes, counts = np.unique(per_seed, axis=0, return_counts=True)  # (K, S)
    return per_seed.shape[0], counts / per_seed.shape[0], hits[classes]


# Resamples drawn at once: bounds the (resamples, classes) count array to ~32 MiB.
_CELLS_PER_CHUNK = 1 << 22


def _seed_weights(seeds: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, seeds): per resample, how often each seed was drawn (S draws with replacement) / S."""
    drawn = rng.integers(0, seeds, size=(resamples, seeds))
    return np.stack([np.bincount(row, minlength=seeds) for row in drawn]) / seeds


def _weighted_replicates(
    runs: Sequence[RunRanks], weights: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, len(RECALL_FIGURES)) in percent: the test items drawn once per resample (one multinomial
    over item classes) and every run scored on them, the runs summed with that resample's `weights`."""
    figures = np.zeros((resamples, len(RECALL_FIGURES)))
    for items, frequencies, hits in _components(runs):
        chunk = max(1, _CELLS_PER_CHUNK // len(frequencies))
        for start in range(0, resamples, chunk):
            stop = min(start + chunk, resamples)
            shares = rng.multinomial(items, frequencies, size=stop - start) / items  # (chunk, K)
            figures[start:stop] += np.einsum("bk,bs,ksf->bf", shares, weights[start:stop], hits)
    return 100.0 * figures


def domain_replicates(runs: Sequence[RunRanks], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, len(RECALL_FIGURES)) recall figures in percent: per resample, S seeds drawn with
    replacement (S = len(runs)) and the test items drawn with replacement once, each drawn seed scored
    on the drawn items, and the drawn seeds averaged."""
    if not runs:
        raise ValueError("a domain needs the ranks of at least one run")
    weights = _seed_weights(len(runs), resamples, rng)
    return _weighted_replicates(runs, weights, resamples, rng)


def domain_difference_replicates(
    runs_a: Sequence[RunRanks], runs_b: Sequence[RunRanks], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, len(RECALL_FIGURES)): the figures of runs A minus those of runs B in one domain, as a
    paired bootstrap: both were scored on the same test items, so one draw of items serves both (what
    makes two methods' difference far less noisy than the gap between their own intervals suggests);
    each side's seeds are drawn on their own, as `domain_replicates` draws them."""
    if not runs_a or not runs_b:
        raise ValueError("a difference needs the ranks of at least one run on each side")
    weights = np.concatenate(
        [_seed_weights(len(runs_a), resamples, rng), -_seed_weights(len(runs_b), resamples, rng)], axis=1
    )
    return _weighted_replicates([*runs_a, *runs_b], weights, resamples, rng)


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


def difference_replicates(
    domains_a: Sequence[Sequence[RunRanks]],
    domains_b: Sequence[Sequence[RunRanks]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """(resamples, len(FIGURES)): A minus B, each figure averaged over domains (domain i of A paired with
    domain i of B, each drawn as `domain_difference_replicates`); the last column is the difference of
    the mean of the six recalls."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not domains_a or len(domains_a) != len(domains_b):
        raise ValueError("a difference needs the same domains, in the same order, on both sides")
    rng = np.random.default_rng(seed)
    recalls = np.mean(
        [domain_difference_replicates(a, b, resamples, rng) for a, b in zip(domains_a, domains_b, strict=True)], axis=0
    )
    return np.concatenate([recalls, recalls.mean(axis=1, keepdims=True)], axis=1)


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """(low, high): the central `level` quantile range of a 1-D array of replicates."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def percentile_intervals(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> dict[str, tuple[float, float]]:
    """{figure: (low, high)}: `percentile_interval` of each column of `replicates`."""
    return {figure: percentile_interval(replicates[:, i], level) for i, figure in enumerate(FIGURES)}


def recall_intervals(
    domains: Sequence[Sequence[RunRanks]],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float]]:
    """Intervals of every figure: one domain with one run resamples its test items; one domain with
    several runs resamples seeds and items; several domains give the interval of their average."""
    return percentile_intervals(bootstrap_replicates(domains, resamples, seed), level)


def difference_intervals(
    domains_a: Sequence[Sequence[RunRanks]],
    domains_b: Sequence[Sequence[RunRanks]],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float]]:
    """Intervals of A minus B for every figure (paired over test items, seeds drawn per side); an interval
    that contains 0 means the difference is inside the noise."""
    return percentile_intervals(difference_replicates(domains_a, domains_b, resamples, seed), level)
