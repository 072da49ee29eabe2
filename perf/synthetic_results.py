"""The figures of docs/results-synthetic.md from a folder of results files and its leaderboard.

    .venv/bin/python perf/synthetic_results.py RUNS BOARD [--resamples 2000] > report.md

RUNS: the `--out` folder of `fdrd bench` (every method, every seed); BOARD: `fdrd leaderboard RUNS --out
BOARD`. Prints markdown: the AVG row of every run label with its 95% interval (from BOARD's
leaderboard.json), training time per epoch and per run (from the results' timings), and which
differences in AVG mean recall are inside the noise: the paired bootstrap of the difference between two
run labels that `fdrd bench` prints under its table (benchmark/metrics/bootstrap.py `difference_intervals`:
test items drawn once for both, each label's seeds on their own, every domain, averaged as the AVG row).
A difference whose 95% interval contains 0 is reported as inside the noise. The per-domain tables are BOARD's leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmark.metrics.bootstrap import KS, difference_intervals


def load_results(runs: Path) -> dict[str, dict[str, dict[int, dict]]]:
    """{run label: {domain: {seed: results}}}, from every results file under RUNS."""
    found: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(runs.rglob("seed-*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        found[result["run_label"]][result["domain"]][int(result["seed"])] = result
    if not found:
        raise SystemExit(f"{runs}: no results files (seed-*.json)")
    return found


def ranks_of(per_seed: dict[int, dict]) -> list[tuple[list[int], list[int]]]:
    return [(per_seed[s]["ranks"]["i2t"], per_seed[s]["ranks"]["t2i"]) for s in sorted(per_seed)]


def paired_difference(a: dict[str, dict[int, dict]], b: dict[str, dict[int, dict]], resamples: int) -> tuple[float, float, float]:
    """AVG mean recall of a minus b, and its 95% paired-bootstrap interval (items shared, seeds not)."""
    domains = sorted(set(a) & set(b))
    means = [np.mean([per_seed[s]["metrics"]["mean_recall"] for s in per_seed]) for per_seed in (a[d] for d in domains)]
    theirs = [np.mean([per_seed[s]["metrics"]["mean_recall"] for s in per_seed]) for per_seed in (b[d] for d in domains)]
    low, high = difference_intervals([ranks_of(a[d]) for d in domains], [ranks_of(b[d]) for d in domains],
                                     resamples=resamples)["mean_recall"]
    return float(np.mean(means) - np.mean(theirs)), low, high


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
    lines = ["| comparison | AVG mean recall difference | 95% interval | verdict |", "|:--|--:|:--|:--|"]
    for a, b in pairs:
        if a not in found or b not in found:
            continue
        diff, low, high = paired_difference(found[a], found[b], resamples)
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
