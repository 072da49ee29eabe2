"""Results files (schema v2): one JSON per (run label, domain, seed), its check, a reader, and summaries.

A results file says what was run and measured well enough to reproduce or to refuse a comparison: the
run label, method, named variant, preset and --set overrides, the resolved config with its choices and
departures, model, dataset (content hash), the shots actually drawn per category, the metrics with 95%
bootstrap intervals and the per-item ranks they come from, hard-negative accuracy by kind, the recall
backend, timings, what training did, git sha, versions and device. docs/benchmark.md documents every
field; `load_results` reads them back (the leaderboard has its own reader, benchmark/leaderboard_input.py,
which keeps only what a table needs).

Summaries are keyed by run label: the mean over seeds per domain and the paper's AVG over domains,
each with an interval bootstrapped over test items and seeds (benchmark/metrics/bootstrap.py).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from benchmark.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    FIGURES,
    RECALL_FIGURES,
    difference_intervals,
    recall_intervals,
)
from fdrd.errors import FdrdError
from fdrd.manifest import write_json_atomic
from fdrd.schema import NEGATIVE_KINDS
from fdrd.untrusted import read_json_file

SCHEMA_NAME = "fdrd-bench-result"
SCHEMA_VERSION = 2

# Top-level fields every results file has (docs/benchmark.md and /work/briefs/results-v2.md say what is in each).
REQUIRED_FIELDS = (
    "schema", "schema_version", "run_label", "method", "named_variant", "preset", "overrides", "method_variant",
    "config", "config_notes", "model", "dataset", "domain", "split", "seed", "shots", "metrics", "intervals",
    "ranks", "hard_negatives", "recall_backend", "truncated_captions", "timings", "training", "git", "versions",
    "device", "created",
)
RECALL_KEYS = RECALL_FIGURES
METRIC_KEYS = (*RECALL_FIGURES, "mean_recall", "i2t_mean_rank", "t2i_mean_rank", "i2t_median_rank", "t2i_median_rank")
SHOTS_KEYS = ("requested", "allow_fewer", "drawn_min", "drawn_max", "per_category")
TIMING_KEYS = ("train_seconds", "seconds_per_epoch", "train_images_per_second", "eval_seconds",
               "eval_images_per_second", "feature_cache_seconds")
TRAINING_KEYS = ("epochs", "steps", "loss_per_epoch", "resumed_from_epoch", "precision", "augment", "feature_cache")
ITEM_INTERVALS = "percentile bootstrap over test items"


def result_path(out_dir: str | Path, run_label: str, domain: str, seed: int) -> Path:
    return Path(out_dir) / run_label / domain / f"seed-{seed}.json"


def mean_recall(metrics: dict[str, float]) -> float:
    """The mean of the six recall figures (the table's "mean")."""
    return statistics.fmean(float(metrics[key]) for key in RECALL_KEYS)


def validate_result(result: Any) -> list[str]:
    """What makes `result` not a v2 results file, in plain words; empty when it is one."""
    if not isinstance(result, dict):
        return [f"top level is a JSON {type(result).__name__}, not an object"]
    if result.get("schema") != SCHEMA_NAME:
        return [f"schema is {result.get('schema')!r}, not {SCHEMA_NAME!r}"]
    if result.get("schema_version") != SCHEMA_VERSION:
        return [f"results schema version {result.get('schema_version')!r}, this reader knows {SCHEMA_VERSION}"]
    missing = [name for name in REQUIRED_FIELDS if name not in result]
    if missing:
        return [f"misses {', '.join(missing)}"]
    problems = []
    for name, keys in (("metrics", METRIC_KEYS), ("timings", TIMING_KEYS), ("training", TRAINING_KEYS)):
        problems += _missing_keys(result, name, keys)
    if isinstance(result["metrics"], dict) and not problems:
        bad = [key for key in METRIC_KEYS if not _is_number(result["metrics"][key])]
        if bad:
            problems.append(f"metrics {', '.join(bad)} are not numbers")
    if not isinstance(result["run_label"], str) or not result["run_label"]:
        problems.append("run_label is not a non-empty string")
    if not isinstance(result["seed"], int) or isinstance(result["seed"], bool):
        problems.append("seed is not an integer")
    ranks = result["ranks"]
    if not isinstance(ranks, dict) or any(not _positive_ints(ranks.get(d)) for d in ("i2t", "t2i")):
        problems.append("ranks must hold non-empty lists 'i2t' and 't2i' of integers >= 1")
    intervals = result["intervals"]
    if not isinstance(intervals, dict) or any(not _pair(intervals.get(key)) for key in FIGURES):
        problems.append(f"intervals must give [low, high] for each of {', '.join(FIGURES)}")
    negatives = result["hard_negatives"]
    if not isinstance(negatives, dict) or any(
        not isinstance(negatives.get(kind), dict) or not {"accuracy", "images"} <= set(negatives[kind])
        for kind in NEGATIVE_KINDS
    ):
        problems.append(f"hard_negatives must give accuracy and images for each of {', '.join(NEGATIVE_KINDS)}")
    shots = result["shots"]
    if shots is not None and (not isinstance(shots, dict) or set(SHOTS_KEYS) - set(shots)):
        problems.append(f"shots must be null or hold {', '.join(SHOTS_KEYS)}")
    return problems


def _missing_keys(result: dict[str, Any], name: str, keys: Sequence[str]) -> list[str]:
    value = result[name]
    if not isinstance(value, dict):
        return [f"{name} is not an object"]
    absent = [key for key in keys if key not in value]
    return [f"{name} misses {', '.join(absent)}"] if absent else []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_ints(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    )


def _pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(_is_number(v) for v in value)


def write_result(out_dir: str | Path, result: dict[str, Any]) -> Path:
    problems = validate_result(result)
    if problems:
        raise ValueError(f"results payload is not schema v{SCHEMA_VERSION}: {'; '.join(problems)}")
    path = result_path(out_dir, result["run_label"], result["domain"], result["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path


def load_results(directory: str | Path) -> list[dict[str, Any]]:
    """Every results file under `directory` (recursively), sorted by run label, domain, seed.

    Other JSON files (checkpoint pointers, manifests) are skipped; a file that claims to be a results
    file but fails `validate_result` is an FdrdError naming it. Each result gets `"path"` (where it was read).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FdrdError(f"{directory}: no such results directory")
    results = []
    for path in sorted(directory.rglob("*.json")):
        try:
            payload = read_json_file(path, "delete it and rerun that seed")
        except FdrdError:
            if path.name.startswith("seed-"):
                raise
            continue  # another JSON file of the folder (a checkpoint pointer, ...) that does not parse
        if not isinstance(payload, dict) or payload.get("schema") != SCHEMA_NAME:
            continue
        problems = validate_result(payload)
        if problems:
            raise FdrdError(f"{path}: not a usable results file: {'; '.join(problems)}; rerun that seed")
        payload["path"] = str(path)
        results.append(payload)
    return sorted(results, key=lambda r: (r["run_label"], r["domain"], r["seed"]))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _where(result: dict[str, Any]) -> str:
    return result.get("path") or "a result of this run (not read from a file)"


def _ranks(result: dict[str, Any]) -> tuple[list[int], list[int]]:
    return result["ranks"]["i2t"], result["ranks"]["t2i"]


def _hard_negative_means(results: list[dict[str, Any]]) -> dict[str, float | None]:
    means = {}
    for kind in NEGATIVE_KINDS:
        values = [r["hard_negatives"][kind]["accuracy"] for r in results if r["hard_negatives"][kind]["accuracy"] is not None]
        means[kind] = statistics.fmean(values) if values else None
    return means


def summarize(
    results: list[dict[str, Any]], resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per run label: a row per domain and an "AVG" row.

    A row maps each figure (RECALL_KEYS and "mean_recall") to (mean, std) over seeds, and has "seeds",
    "intervals" ({figure: (low, high)}, bootstrapped over test items and seeds from the stored ranks),
    "hard_negatives" ({kind: mean accuracy over seeds, or None}) and "method"; the AVG row also keeps
    "ranks" ({domain: per-item ranks of each seed}), what its interval and `noise_notes` draw from. AVG is the plain mean
    over domains of the per-domain means (the paper's AVG); its std is the std over seeds of the
    per-seed domain average, NaN unless every domain ran the same seeds; its interval resamples every
    domain. Two results for the same (label, domain, seed), or seeds of one (label, domain) ranked on
    test splits of different sizes, are an FdrdError naming both files.
    """
    grouped: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for result in results:
        label, domain, seed = result["run_label"], result["domain"], int(result["seed"])
        if seed in grouped[label][domain]:
            raise FdrdError(
                f"two results for run {label!r}, domain {domain!r}, seed {seed}: {_where(grouped[label][domain][seed])} "
                f"and {_where(result)}; keep one of them (or give one run another --label)"
            )
        first = next(iter(grouped[label][domain].values()), None)
        if first is not None and len(first["ranks"]["i2t"]) != len(result["ranks"]["i2t"]):
            raise FdrdError(
                f"run {label!r}, domain {domain!r}: {_where(first)} ranks {len(first['ranks']['i2t'])} test images but "
                f"{_where(result)} ranks {len(result['ranks']['i2t'])}; seeds of one run must share a test split"
            )
        grouped[label][domain][seed] = result
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for label in sorted(grouped):
        domains = grouped[label]
        figures = {
            domain: {seed: {**{k: float(r["metrics"][k]) for k in RECALL_KEYS}, "mean_recall": mean_recall(r["metrics"])}
                     for seed, r in seeds.items()}
            for domain, seeds in domains.items()
        }
        rows: dict[str, dict[str, Any]] = {}
        for domain in sorted(domains):
            seeds = sorted(domains[domain])
            row: dict[str, Any] = {key: _mean_std([figures[domain][s][key] for s in seeds]) for key in FIGURES}
            row["seeds"] = seeds
            row["intervals"] = recall_intervals([[_ranks(domains[domain][s]) for s in seeds]], resamples, level)
            row["hard_negatives"] = _hard_negative_means([domains[domain][s] for s in seeds])
            row["method"] = domains[domain][seeds[0]]["method"]
            rows[domain] = row
        names = sorted(domains)
        avg: dict[str, Any] = {key: (statistics.fmean(rows[d][key][0] for d in names), math.nan) for key in FIGURES}
        seed_sets = {tuple(rows[d]["seeds"]) for d in names}
        if len(seed_sets) == 1:
            seeds = next(iter(seed_sets))
            for key in FIGURES:
                per_seed = [statistics.fmean(figures[d][s][key] for d in names) for s in seeds]
                avg[key] = (avg[key][0], _mean_std(per_seed)[1])
        avg["seeds"] = sorted({s for d in names for s in domains[d]})
        avg["ranks"] = {d: [_ranks(domains[d][s]) for s in sorted(domains[d])] for d in names}
        avg["intervals"] = recall_intervals([avg["ranks"][d] for d in names], resamples, level)
        per_domain_negatives = [rows[d]["hard_negatives"] for d in names]
        avg["hard_negatives"] = {
            kind: (statistics.fmean(v[kind] for v in per_domain_negatives)
                   if all(v[kind] is not None for v in per_domain_negatives) else None)
            for kind in NEGATIVE_KINDS
        }
        avg["method"] = rows[names[0]]["method"]
        rows["AVG"] = avg
        summary[label] = rows
    return summary


def noise_notes(
    summary: dict[str, dict[str, dict[str, Any]]], resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL
) -> list[str]:
    """Which run labels' AVG mean recalls differ beyond the noise, among labels that ran the same domains:
    for every two, the paired bootstrap interval of the difference (test items drawn once for both, as
    both were scored on them; seeds drawn per side). An interval that contains 0 is inside the noise.
    Pairing matters: two methods' own intervals often overlap while their difference is clear."""
    by_domains: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for label, rows in summary.items():
        by_domains[tuple(sorted(d for d in rows if d != "AVG"))].append(label)
    notes = []
    for names, labels in by_domains.items():
        if len(labels) < 2:
            continue
        ordered = sorted(labels, key=lambda label: -summary[label]["AVG"]["mean_recall"][0])
        inside, apart = [], []
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                sides = ([summary[x]["AVG"]["ranks"][d] for d in names] for x in (a, b))
                low, high = difference_intervals(*sides, resamples=resamples, level=level)["mean_recall"]
                if low <= 0.0 <= high:
                    inside.append(f"{a} ~ {b}")
                else:
                    difference = summary[a]["AVG"]["mean_recall"][0] - summary[b]["AVG"]["mean_recall"][0]
                    apart.append(f"{a} {'>' if low > 0 else '<'} {b} ({difference:+.2f} [{low:+.2f}, {high:+.2f}])")
        if inside:
            notes.append("AVG mean recall, difference inside the noise (paired bootstrap): " + ", ".join(inside))
        if apart:
            notes.append("AVG mean recall, difference outside the noise: " + ", ".join(apart))
    return notes


def summary_table(
    results: list[dict[str, Any]], resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL
) -> Table:
    """A rich table: per run label a row per domain then its AVG row; each cell the mean over seeds with
    its interval below; hard-negative accuracy by kind; the noise notes (paired differences) as its caption."""
    summary = summarize(results, resamples, level)
    table = Table(
        title=f"Recall@K (%): mean over seeds, {level:.0%} bootstrap interval over test items and seeds below",
        box=box.SIMPLE_HEAD,
        caption="\n".join(noise_notes(summary, resamples, level)) or None,
    )
    # Names are never abbreviated: narrow terminals squeeze the number columns instead.
    widest_label = max((len(label) for label in summary), default=6)
    widest_domain = max((len(domain) for rows in summary.values() for domain in rows), default=6)
    table.add_column("run", no_wrap=True, min_width=widest_label)
    table.add_column("domain", no_wrap=True, min_width=widest_domain)
    for column in ("seeds", "I→T R@1", "R@5", "R@10", "T→I R@1", "R@5", "R@10", "mean", "hard-neg cat", "attr"):
        table.add_column(column, justify="right", no_wrap=True)
    for label, rows in summary.items():
        for domain, row in rows.items():
            cells = [_cell(row[key][0], row["intervals"][key]) for key in FIGURES]
            negatives = [_accuracy(row["hard_negatives"][kind]) for kind in NEGATIVE_KINDS]
            style = "bold" if domain == "AVG" else None
            table.add_row(label, domain, ",".join(map(str, row["seeds"])), *cells, *negatives, style=style)
    return table


def _cell(mean: float, interval: tuple[float, float]) -> str:
    return f"{mean:.1f}\n[dim]{interval[0]:.1f}-{interval[1]:.1f}[/dim]"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
