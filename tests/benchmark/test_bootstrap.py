"""Bootstrap intervals: the vectorised multinomial draw against an exact enumeration and a slow loop that
resamples item indices, known coverage on simulated runs, determinism across processes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmark.metrics.bootstrap import (
    FIGURES,
    bootstrap_replicates,
    difference_intervals,
    difference_replicates,
    percentile_interval,
    percentile_intervals,
    rank_classes,
    recall_intervals,
)

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = {"r1": 1, "r5": 5, "r10": 10}


def figures_of(draws: list[tuple[list[int], list[int]]]) -> list[float]:
    """The seven figures (percent) of one resample: the mean over its drawn runs of each run's recall."""
    values = []
    for direction in (0, 1):
        for k in THRESHOLDS.values():
            values.append(sum(100.0 * sum(r <= k for r in run[direction]) / len(run[direction]) for run in draws) / len(draws))
    return values + [sum(values) / 6]


def loop_replicates(domains, resamples: int, seed: int) -> np.ndarray:
    """The seeds-and-items bootstrap written as loops over indices: per domain, draw as many runs as it
    has (with replacement) and one list of test-item indices (with replacement; image and caption j
    together when the counts match) that every drawn run is scored on; average runs, then domains."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(resamples):
        per_domain = []
        for runs in domains:
            chosen = [runs[int(rng.integers(len(runs)))] for _ in runs]
            images, captions = len(runs[0][0]), len(runs[0][1])
            picks = [int(rng.integers(images)) for _ in range(images)]
            other = picks if images == captions else [int(rng.integers(captions)) for _ in range(captions)]
            draws = [([i2t[p] for p in picks], [t2i[p] for p in other]) for i2t, t2i in chosen]
            per_domain.append(figures_of(draws))
        rows.append(np.mean(per_domain, axis=0))
    return np.array(rows)


def random_run(rng: np.random.Generator, items: int, skill: float, paired_noise: bool = False):
    """Ranks of one run: small ranks more often when `skill` is high; t2i equal to i2t when paired_noise."""
    i2t = [int(r) for r in rng.geometric(skill, size=items) + rng.integers(0, 2, size=items)]
    t2i = list(i2t) if paired_noise else [int(r) for r in rng.geometric(skill, size=items)]
    return i2t, t2i


def test_rank_classes_follow_the_k_thresholds():
    assert rank_classes([1, 2, 5, 6, 10, 11, 400]).tolist() == [0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        rank_classes([0, 3])
    with pytest.raises(ValueError):
        rank_classes([])


def test_the_draw_equals_the_exact_bootstrap_distribution_of_a_tiny_case():
    # Two seeds scored on the same two test items: every (seed choice, item choice) sequence is equally
    # likely, so the exact distribution of a resample's figures comes from enumerating 2^2 seed choices
    # x 2^2 item choices (one item choice shared by the drawn seeds).
    runs = [([1, 7], [3, 12]), ([12, 4], [1, 1])]
    exact: Counter = Counter()
    for seed_choice in itertools.product(range(2), repeat=2):
        for items in itertools.product(range(2), repeat=2):
            draws = [([runs[s][0][p] for p in items], [runs[s][1][p] for p in items]) for s in seed_choice]
            exact[tuple(round(v, 6) for v in figures_of(draws))] += 1
    total = sum(exact.values())
    drawn = Counter(tuple(round(v, 6) for v in row) for row in bootstrap_replicates([runs], resamples=40000, seed=5))
    assert set(drawn) <= set(exact)
    for outcome, count in exact.items():
        assert drawn[outcome] / 40000 == pytest.approx(count / total, abs=0.01), outcome


def test_seeds_share_one_draw_of_test_items():
    # Three seeds that ranked every item alike carry no seed noise: the interval is that of one seed
    # (drawing items separately per seed would wrongly shrink it by about sqrt(3)).
    run = random_run(np.random.default_rng(4), 60, 0.3)
    one = bootstrap_replicates([[run]], resamples=4000, seed=1)
    three = bootstrap_replicates([[run, run, run]], resamples=4000, seed=2)
    for column, figure in enumerate(FIGURES):
        assert three[:, column].std() == pytest.approx(one[:, column].std(), rel=0.08), figure


@pytest.mark.parametrize(
    "case",
    ["one run", "seeds that disagree", "directions that move together", "unpaired counts", "two domains"],
)
def test_replicates_match_the_loop_over_item_indices(case):
    rng = np.random.default_rng(11)
    domains = {
        "one run": [[random_run(rng, 40, 0.3)]],
        "seeds that disagree": [[random_run(rng, 30, 0.8), random_run(rng, 30, 0.1), random_run(rng, 30, 0.4)]],
        "directions that move together": [[random_run(rng, 40, 0.3, paired_noise=True)]],
        "unpaired counts": [[(random_run(rng, 30, 0.3)[0], random_run(rng, 45, 0.3)[1]),
                             (random_run(rng, 30, 0.6)[0], random_run(rng, 45, 0.1)[1])]],
        "two domains": [[random_run(rng, 25, 0.5), random_run(rng, 25, 0.2)], [random_run(rng, 35, 0.3)]],
    }[case]
    resamples = 4000
    fast = bootstrap_replicates(domains, resamples=resamples, seed=1)
    slow = loop_replicates(domains, resamples, seed=2)
    assert fast.shape == slow.shape == (resamples, len(FIGURES))
    for column, figure in enumerate(FIGURES):
        spread = slow[:, column].std()
        if spread == 0:
            assert np.all(fast[:, column] == slow[0, column]), figure
            continue
        assert fast[:, column].mean() == pytest.approx(slow[:, column].mean(), abs=0.1 * spread), figure
        assert fast[:, column].std() == pytest.approx(spread, rel=0.08), figure
    fast_bounds = percentile_intervals(fast)
    slow_bounds = np.percentile(slow, [2.5, 97.5], axis=0)
    # Quantiles of a discrete distribution may land one atom apart: one step of the coarsest run (100 / items).
    step = 100 / min(len(ranks) for runs in domains for run in runs for ranks in run)
    for column, figure in enumerate(FIGURES):
        tolerance = 0.3 * slow[:, column].std() + step
        assert fast_bounds[figure][0] == pytest.approx(slow_bounds[0, column], abs=tolerance), figure
        assert fast_bounds[figure][1] == pytest.approx(slow_bounds[1, column], abs=tolerance), figure


def test_percentile_interval_of_known_values():
    assert percentile_interval(np.arange(101, dtype=float), 0.95) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.arange(11, dtype=float), 0.8) == pytest.approx((1.0, 9.0))
    with pytest.raises(ValueError, match="level must be in"):
        percentile_interval(np.arange(3.0), 1.0)


def test_constant_runs_give_hand_computed_intervals():
    hits, misses = ([1] * 5, [1] * 5), ([50] * 5, [50] * 5)
    assert recall_intervals([[hits]])["i2t_r10"] == (100.0, 100.0)
    assert recall_intervals([[misses]])["mean_recall"] == (0.0, 0.0)
    # Two domains, every resample the same: the AVG is their plain mean.
    assert recall_intervals([[hits], [misses]])["t2i_r5"] == (50.0, 50.0)
    # Two seeds, one all hits and one all misses: a resample's mean is 0, 50 or 100 with odds 1:2:1.
    assert recall_intervals([[hits, misses]])["i2t_r1"] == (0.0, 100.0)
    # Rank 3 hits R@5 and R@10 but not R@1.
    third = recall_intervals([[([3] * 4, [3] * 4)]])
    assert third["i2t_r1"] == (0.0, 0.0) and third["t2i_r5"] == (100.0, 100.0)
    assert third["mean_recall"] == pytest.approx((200 / 3, 200 / 3))


def test_item_interval_covers_the_true_recall_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    true_rate, items, simulations = 0.3, 200, 300
    covered = 0
    for simulation in range(simulations):
        hits = rng.random(items) < true_rate
        ranks = [1 if hit else 20 for hit in hits]
        low, high = recall_intervals([[(ranks, ranks)]], resamples=1000, seed=simulation)["i2t_r1"]
        covered += low <= 100 * true_rate <= high
    assert 0.91 <= covered / simulations <= 0.985


def test_seed_and_item_interval_covers_the_mean_over_seeds_about_95_percent_of_the_time():
    # One test set of items with their own difficulty, scored by seeds whose luck moves the hit rate
    # around 30%: an item is a hit for a seed when its difficulty is below that seed's rate. Each
    # simulation draws a new test set and new seeds; the interval must cover 30%.
    rng = np.random.default_rng(7)
    seeds, items, simulations = 20, 100, 200
    covered = 0
    for simulation in range(simulations):
        difficulty = rng.random(items)
        rates = 0.3 + rng.normal(0, 0.08, size=seeds)
        runs = []
        for rate in rates:
            ranks = [1 if hit else 20 for hit in difficulty < rate]
            runs.append((ranks, ranks))
        low, high = recall_intervals([runs], resamples=400, seed=simulation)["t2i_r1"]
        covered += low <= 30.0 <= high
    assert 0.9 <= covered / simulations <= 0.995


def test_deterministic_and_the_same_in_another_process():
    runs = [[([1, 4, 12, 2, 7], [2, 2, 30, 1, 9]), ([5, 1, 1, 11, 3], [1, 6, 2, 2, 14])]]
    here = recall_intervals(runs, resamples=500, seed=3)
    assert recall_intervals(runs, resamples=500, seed=3) == here
    assert recall_intervals(runs, resamples=500, seed=4) != here
    code = (
        "import json, sys; from benchmark.metrics.bootstrap import recall_intervals; "
        f"print(json.dumps(recall_intervals({runs!r}, resamples=500, seed=3)))"
    )
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert {key: tuple(value) for key, value in json.loads(other.stdout).items()} == here


def test_bad_arguments():
    with pytest.raises(ValueError, match="resamples"):
        recall_intervals([[([1], [1])]], resamples=0)
    with pytest.raises(ValueError, match="level"):
        recall_intervals([[([1], [1])]], level=1.5)
    with pytest.raises(ValueError):
        recall_intervals([])
    with pytest.raises(ValueError):
        recall_intervals([[]])
    with pytest.raises(ValueError, match="same test split"):
        recall_intervals([[([1, 2], [1, 2]), ([1, 2, 3], [1, 2, 3])]])


def loop_difference_replicates(domains_a, domains_b, resamples: int, seed: int) -> np.ndarray:
    """The paired difference written as loops over indices: per domain, one list of test-item indices
    (with replacement) that both sides are scored on, each side's runs drawn on their own; A minus B,
    then averaged over domains."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(resamples):
        per_domain = []
        for runs_a, runs_b in zip(domains_a, domains_b, strict=True):
            items = len(runs_a[0][0])
            picks = [int(rng.integers(items)) for _ in range(items)]
            sides = []
            for runs in (runs_a, runs_b):
                chosen = [runs[int(rng.integers(len(runs)))] for _ in runs]
                sides.append(figures_of([([i2t[p] for p in picks], [t2i[p] for p in picks]) for i2t, t2i in chosen]))
            per_domain.append(np.subtract(*sides))
        rows.append(np.mean(per_domain, axis=0))
    return np.array(rows)


@pytest.mark.parametrize("case", ["one seed each", "three seeds against two", "two domains"])
def test_difference_matches_the_loop_over_item_indices(case):
    rng = np.random.default_rng(23)
    a, b = {
        "one seed each": ([[random_run(rng, 40, 0.3)]], [[random_run(rng, 40, 0.25)]]),
        "three seeds against two": ([[random_run(rng, 30, s) for s in (0.5, 0.2, 0.35)]],
                                    [[random_run(rng, 30, s) for s in (0.3, 0.4)]]),
        "two domains": ([[random_run(rng, 25, 0.5)], [random_run(rng, 35, 0.3), random_run(rng, 35, 0.2)]],
                        [[random_run(rng, 25, 0.4)], [random_run(rng, 35, 0.3)]]),
    }[case]
    resamples = 4000
    fast = difference_replicates(a, b, resamples=resamples, seed=1)
    slow = loop_difference_replicates(a, b, resamples, seed=2)
    assert fast.shape == slow.shape == (resamples, len(FIGURES))
    step = 100 / min(len(ranks) for runs in a for run in runs for ranks in run)
    slow_bounds = np.percentile(slow, [2.5, 97.5], axis=0)
    for column, (figure, (low, high)) in enumerate(difference_intervals(a, b, resamples=resamples, seed=1).items()):
        spread = slow[:, column].std()
        assert fast[:, column].mean() == pytest.approx(slow[:, column].mean(), abs=0.1 * spread + 1e-9), figure
        assert fast[:, column].std() == pytest.approx(spread, rel=0.08), figure
        assert low == pytest.approx(slow_bounds[0, column], abs=0.3 * spread + step), figure
        assert high == pytest.approx(slow_bounds[1, column], abs=0.3 * spread + step), figure


def test_pairing_removes_the_noise_the_two_runs_share():
    """Identical single runs differ by exactly 0 in every resample (items are drawn once for both), while
    each run's own interval is wide; a run that is better on every item is better in every resample."""
    rng = np.random.default_rng(4)
    run = random_run(rng, 50, 0.3)
    assert recall_intervals([[run]])["mean_recall"][1] - recall_intervals([[run]])["mean_recall"][0] > 5
    assert all(bounds == (0.0, 0.0) for bounds in difference_intervals([[run]], [[run]]).values())
    better = ([max(1, r - 3) for r in run[0]], [max(1, r - 3) for r in run[1]])
    assert np.all(difference_replicates([[better]], [[run]], resamples=500)[:, -1] > 0)


def test_difference_of_constant_runs_is_hand_computed():
    hits, misses = ([1] * 4, [1] * 4), ([50] * 4, [50] * 4)
    bounds = difference_intervals([[hits]], [[misses]])
    assert bounds["i2t_r1"] == (100.0, 100.0) and bounds["mean_recall"] == (100.0, 100.0)
    # Two domains: +100 in one, 0 in the other, averaged.
    assert difference_intervals([[hits], [misses]], [[misses], [misses]])["t2i_r10"] == (50.0, 50.0)


def test_difference_refuses_what_cannot_be_paired():
    run = ([1, 2], [1, 2])
    with pytest.raises(ValueError, match="same domains"):
        difference_intervals([[run]], [[run], [run]])
    with pytest.raises(ValueError, match="as many test items"):
        difference_intervals([[run]], [[([1, 2, 3], [1, 2, 3])]])
    with pytest.raises(ValueError, match="at least one run on each side"):
        difference_intervals([[run]], [[]])
