"""The figures of docs/results-synthetic.md from a folder of results files and its leaderboard.

    .venv/bin/python perf/synthetic_results.py RUNS BOARD [--resamples 2000] > report.md

RUNS: the `--out` folder of `fdrd bench` (every method, every seed); BOARD: `fdrd leaderboard RUNS --out
BOARD`. Prints markdown: the AVG row of every run label with its 95% interval (from BOARD's
leaderboard.json), training time per epoch and per run (from the results' timings), and which
differences in AVG mean recall are inside the noise: a paired bootstrap of the difference between two run
labels, drawing the test items once for both (they were scored on the same items) and each label's seeds
on its own, in every domain, then averaging the domains as the AVG row does. A difference whose 95%
interval contains 0 is reported as inside the noise. The per-domain tables are BOARD's leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

KS = (1, 5, 10)


def load_results(runs: Path) -> dict[str, dict[str, dict[int, dict]]]:
    """{run label: {domain: {seed: results}}}, from every results file under RUNS."""
    found: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(runs.rglob("seed-*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        found[result["run_label"]][result["domain"]][int(result["seed"])] = result
    if not found:
        raise SystemExit(f"{runs}: no results files (seed-*.json)")
    return found


def mean_recall_of(i2t: np.ndarray, t2i: np.ndarray) -> np.ndarray:
    """Mean of the six recalls (percent) over the last axis of rank arrays (..., items)."""
    figures = [(ranks <= k).mean(axis=-1) for ranks in (i2t, t2i) for k in KS]
    return 100.0 * np.mean(figures, axis=0)


def ranks_of(per_seed: dict[int, dict]) -> tuple[np.ndarray, np.ndarray]:
    seeds = sorted(per_seed)
    return (np.array([per_seed[s]["ranks"]["i2t"] for s in seeds]),
            np.array([per_seed[s]["ranks"]["t2i"] for s in seeds]))


def paired_difference(a: dict[str, dict[int, dict]], b: dict[str, dict[int, dict]], resamples: int,
                      rng: np.random.Generator) -> tuple[float, float, float]:
    """AVG mean recall of a minus b, and its 95% paired-bootstrap interval (items shared, seeds not)."""
    domains = sorted(set(a) & set(b))
    point, replicates = [], np.zeros((resamples, len(domains)))
    for column, domain in enumerate(domains):
        (ai, at), (bi, bt) = ranks_of(a[domain]), ranks_of(b[domain])
        if ai.shape[1] != bi.shape[1]:
            raise SystemExit(f"{domain}: the two labels were scored on different test sets")
        point.append(mean_recall_of(ai, at).mean() - mean_recall_of(bi, bt).mean())
        items = ai.shape[1]
        for r in range(resamples):
            drawn = rng.integers(0, items, items)
            seeds_a = rng.integers(0, ai.shape[0], ai.shape[0])
            seeds_b = rng.integers(0, bi.shape[0], bi.shape[0])
            mine = mean_recall_of(ai[seeds_a][:, drawn], at[seeds_a][:, drawn]).mean()
            theirs = mean_recall_of(bi[seeds_b][:, drawn], bt[seeds_b][:, drawn]).mean()
            replicates[r, column] = mine - theirs
    averaged = replicates.mean(axis=1)
    low, high = np.quantile(averaged, [0.025, 0.975])
    return float(np.mean(point)), float(low), float(high)


def avg_table(board: dict) -> list[str]:
    labels = [column["key"] for column in board["columns"] if column["kind"] == "measured"]
    cells: dict[tuple[str, str, int], dict] = {}
    for row in board["rows"]:
        if row["domain"] == "AVG":
            for label in labels:
                cells[label, row["section"], row["k"]] = row["cells"][label]
    lines = ["| run | I→T R@1 | I→T R@5 | I→T R@10 | T→I R@1 | T→I R@5 | T→I R@10 |", "|:--|--:|--:|--:|--:|--:|--:|"]
    for label in labels:
        figures = []
        for section in ("i2t", "t2i"):
            for k in KS:
                cell = cells[label, section, k]
                low, high = cell["interval"]
                figures.append(f"{cell['mean']:.2f} [{low:.2f}, {high:.2f}]")
        lines.append(f"| {label} | " + " | ".join(figures) + " |")
    return lines


def timing_table(found: dict[str, dict[str, dict[int, dict]]]) -> list[str]:
    lines = ["| run | epochs | steps per run | s per epoch | train s per run | eval s per run | image side |",
             "|:--|--:|--:|--:|--:|--:|:--|"]
    for label in found:
        results = [r for per_seed in found[label].values() for r in per_seed.values()]
        training = results[0]["training"]
        if training is None or not training.get("epochs"):
            lines.append(f"| {label} | 0 | 0 | - | - | {np.mean([r['timings']['eval_seconds'] for r in results]):.2f} | frozen |")
            continue
        per_epoch = np.mean([r["timings"]["seconds_per_epoch"] for r in results])
        train = np.mean([r["timings"]["train_seconds"] for r in results])
        evaluation = np.mean([r["timings"]["eval_seconds"] for r in results])
        side = ("feature cache" if training.get("feature_cache") else
                "augmented pixels" if training.get("augment") else "pixels")
        lines.append(f"| {label} | {training['epochs']} | {training['steps']} | {per_epoch:.3f} | {train:.1f} | "
                     f"{evaluation:.2f} | {side} |")
    return lines


def difference_table(found, pairs, resamples: int) -> list[str]:
    rng = np.random.default_rng(0)
    lines = ["| comparison | AVG mean recall difference | 95% interval | verdict |", "|:--|--:|:--|:--|"]
    for a, b in pairs:
        if a not in found or b not in found:
            continue
        diff, low, high = paired_difference(found[a], found[b], resamples, rng)
        verdict = "inside the noise" if low <= 0.0 <= high else ("higher" if low > 0 else "lower")
        lines.append(f"| {a} - {b} | {diff:+.2f} | [{low:+.2f}, {high:+.2f}] | {verdict} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("board", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    found = load_results(args.runs)
    board = json.loads((args.board / "leaderboard.json").read_text(encoding="utf-8"))
    labels = list(found)
    pairs = [(label, "zeroshot") for label in labels if label != "zeroshot"]
    pairs += [("dcar", "maple"), ("dcar", "coop"), ("maple", "coop")]
    pairs += [("dcar", label) for label in labels if label.startswith("dcar-")]
    print("### AVG over the three domains, mean over seeds, 95% interval over test items and seeds\n")
    print("\n".join(avg_table(board)))
    print("\n### Which differences are inside the noise (paired bootstrap, AVG mean recall)\n")
    print("\n".join(difference_table(found, pairs, args.resamples)))
    print("\n### Training time on CPU (mean over domains and seeds)\n")
    print("\n".join(timing_table(found)))


if __name__ == "__main__":
    main()
