"""The leaderboard: results files -> the paper's table layout, ready for any renderer.

Rows are domains x K (R@1, R@5, R@10) in an image->text block and a text->image block, each closed by
AVG rows (the plain mean over domains of the per-domain means, as the paper); columns are run labels.
A measured cell is the mean ± std over seeds with a 95% interval over test items and seeds (see
leaderboard_stats.py). With `reported`, the paper's numbers stand beside the run that follows the
paper's recipe for the same method, with the difference; the paper's other methods become
reported-only columns. The best measured value per row is marked `best`. Hard-negative accuracy by
kind (where results have it) is a second table of the same shape. `differences` says, for every two
measured runs, whether their AVG mean recalls differ beyond the noise (a paired bootstrap over the test
items both were scored on). Rendering: leaderboard_render.py (md, latex, csv, json) and leaderboard_html.py.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.leaderboard_input import DIRECTIONS, KS, RunResult, check_not_mixed, read_results
from benchmark.leaderboard_reported import (
    PAPER_AVG,
    PAPER_BACKBONE,
    PAPER_DOMAINS,
    PAPER_METHODS,
    load_reported,
)
from benchmark.leaderboard_stats import IntervalSettings, cell_generator, mean_std, name_seed
from benchmark.metrics.bootstrap import (
    RECALL_FIGURES,
    difference_intervals,
    domain_replicates,
    percentile_interval,
)
from fdrd.errors import FdrdError

AVG = "AVG"
LEADERBOARD_SCHEMA = "fdrd-leaderboard"
LEADERBOARD_SCHEMA_VERSION = 1
DIRECTION_NAMES = {"i2t": "image → text", "t2i": "text → image"}
HARD_NEGATIVES = "hard_negatives"
BEST_DECIMALS = 2  # "best" compares values as shown (2 decimals, as the paper), so shown ties are all bold
KIND_ORDER = ("category", "attribute")  # the FDRD negative kinds first, any others after them
# Runs up to which every pair is compared; above it, each run only with the next in the ranking and with
# the best (a pair costs ~0.1 s per domain: 45 pairs of 10 runs are seconds, 435 of 30 would be minutes).
ALL_PAIRS_UP_TO = 12


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None  # None: a single seed (or a reported/difference value)
    interval: tuple[float, float] | None = None
    seeds: tuple[int, ...] = ()
    best: bool = False


@dataclass(frozen=True)
class Column:
    key: str  # unique within the table: the run label ("reported:" or "difference:" before it for those kinds)
    label: str  # what a header shows
    kind: str  # "measured", "reported" or "difference"
    run_label: str | None = None
    paper_method: str | None = None


@dataclass
class Row:
    section: str  # "i2t", "t2i" or "hard_negatives"
    domain: str  # a domain name or "AVG"
    k: int | None = None  # recall rows
    kind: str | None = None  # hard-negative rows: the negative kind
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]  # the recall rows: i2t block, then t2i block
    hard_negative_columns: list[Column]
    hard_negative_rows: list[Row]
    domains: list[str]
    runs: dict[str, dict[str, Any]]
    datasets: list[str]
    models: list[dict[str, str | None]]
    notes: list[str]
    interval: dict[str, Any]
    reported: bool
    # AVG mean recall, better run first: {"runs": [a, b], "difference", "interval": [low, high], "inside_noise"}
    differences: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": LEADERBOARD_SCHEMA, "schema_version": LEADERBOARD_SCHEMA_VERSION, **asdict(self)}


def _domain_order(domains: set[str]) -> list[str]:
    paper = [d for d in PAPER_DOMAINS.values() if d in domains]
    return paper + sorted(domains - set(paper))


def _run_order(by_run: dict[str, list[RunResult]]) -> list[str]:
    methods = list(PAPER_METHODS)

    def key(label: str) -> tuple[int, str]:
        method = by_run[label][0].method
        return (methods.index(method) if method in methods else len(methods), label)

    return sorted(by_run, key=key)


@dataclass
class _Measured:
    """One run's cells for one domain, with the bootstrap replicates the AVG interval needs."""

    cells: dict[tuple[str, int], Cell]
    replicates: dict[tuple[str, int], np.ndarray] | None
    per_seed: dict[int, dict[tuple[str, int], float]]


def _measure(label: str, domain: str, results: list[RunResult], settings: IntervalSettings) -> _Measured:
    seeds = tuple(r.seed for r in results)
    replicates: dict[tuple[str, int], np.ndarray] | None = None
    if all(r.ranks is not None for r in results):
        for direction in DIRECTIONS:
            if len({len(r.ranks[direction]) for r in results}) > 1:  # type: ignore[index]
                raise FdrdError(
                    f"run {label!r}, domain {domain!r}: seeds ranked different numbers of test items "
                    f"({', '.join(f'{r.path}: {len(r.ranks[direction])}' for r in results)}); "  # type: ignore[index]
                    "were they run on different test splits?"
                )
        runs = [(r.ranks["i2t"], r.ranks["t2i"]) for r in results]  # type: ignore[index]
        draws = domain_replicates(runs, settings.resamples, cell_generator(settings, label, domain))
        figures = {figure: column for column, figure in enumerate(RECALL_FIGURES)}
        replicates = {(d, k): draws[:, figures[f"{d}_r{k}"]] for d in DIRECTIONS for k in KS}
    cells = {}
    for key in ((d, k) for d in DIRECTIONS for k in KS):
        mean, std = mean_std([r.recall[key] for r in results])
        if replicates is not None:
            interval = percentile_interval(replicates[key], settings.level)
        else:
            interval = results[0].file_intervals.get(key) if len(results) == 1 else None
        cells[key] = Cell(mean, std, interval, seeds)
    return _Measured(cells, replicates, {r.seed: r.recall for r in results})


def _average(measured: list[_Measured], settings: IntervalSettings) -> dict[tuple[str, int], Cell]:
    """AVG cells of one run over the table's domains: mean of domain means; std over seeds of the per-seed
    domain average when every domain ran the same seeds; interval from the averaged replicates."""
    seed_sets = {tuple(sorted(m.per_seed)) for m in measured}
    same_seeds = next(iter(seed_sets)) if len(seed_sets) == 1 else None
    cells = {}
    for key in ((d, k) for d in DIRECTIONS for k in KS):
        mean = float(np.mean([m.cells[key].mean for m in measured]))
        std = None
        if same_seeds is not None and len(same_seeds) > 1:
            std = mean_std([float(np.mean([m.per_seed[s][key] for m in measured])) for s in same_seeds])[1]
        interval = None
        if all(m.replicates is not None for m in measured):
            averaged = np.mean([m.replicates[key] for m in measured], axis=0)  # type: ignore[index]
            interval = percentile_interval(averaged, settings.level)
        seeds = same_seeds if same_seeds is not None else tuple(sorted({s for m in measured for s in m.per_seed}))
        cells[key] = Cell(mean, std, interval, seeds)
    return cells


def _mark_best(rows: list[Row], columns: list[Column]) -> None:
    measured = [c.key for c in columns if c.kind == "measured"]
    for row in rows:
        values = {key: round(row.cells[key].mean, BEST_DECIMALS) for key in measured if row.cells[key].mean is not None}
        if values:
            top = max(values.values())
            for key, value in values.items():
                row.cells[key].best = value == top


def _columns(labels: list[str], by_run: dict[str, list[RunResult]], reported: bool, paper_methods: Sequence[str]) -> list[Column]:
    columns: list[Column] = []
    compared: set[str] = set()
    for label in labels:
        columns.append(Column(label, label, "measured", run_label=label))
        first = by_run[label][0]
        paper = PAPER_METHODS.get(first.method)
        if reported and paper and all(r.published_recipe for r in by_run[label]):
            columns.append(Column(f"reported:{label}", f"{paper} (reported)", "reported", label, paper))
            columns.append(Column(f"difference:{label}", f"Δ {label}", "difference", label, paper))
            compared.add(paper)
    if reported:
        for paper in paper_methods:
            if paper not in compared:
                columns.append(Column(f"reported:{paper}", f"{paper} (reported)", "reported", None, paper))
    return columns


def build_leaderboard(
    paths: Sequence[str | Path],
    reported: bool = False,
    allow_mixed: bool = False,
    settings: IntervalSettings | None = None,
) -> Leaderboard:
    """Read the results under `paths` and lay them out (see the module docstring)."""
    settings = settings or IntervalSettings()
    results = read_results(paths)
    notes = check_not_mixed(results, allow_mixed)
    grouped: dict[str, dict[str, list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        grouped[result.run_label][result.domain].append(result)
    by_run = {label: [r for rs in domains.values() for r in rs] for label, domains in grouped.items()}
    labels = _run_order(by_run)
    domains = _domain_order({r.domain for r in results})
    table = load_reported() if reported else None
    columns = _columns(labels, by_run, reported, table.methods if table else ())

    measured = {
        (label, domain): _measure(label, domain, grouped[label][domain], settings)
        for label in labels
        for domain in domains
        if domain in grouped[label]
    }
    averages = {}
    for label in labels:
        missing = [d for d in domains if d not in grouped[label]]
        if missing:
            notes.append(f"no AVG for {label}: it has no results for {', '.join(missing)}")
        else:
            averages[label] = _average([measured[label, d] for d in domains], settings)

    paper_domains = set(PAPER_DOMAINS.values())
    if table is not None:
        notes.append(f"reported: the DCAR paper's main table ({PAPER_BACKBONE}), {table.source}")
        unreported = [d for d in domains if d not in paper_domains]
        if unreported:
            notes.append(f"no reported numbers for {', '.join(unreported)}: not domains of the paper")
        if set(domains) != paper_domains:
            notes.append("no reported AVG: the paper averages its nine domains, this table has other domains")
        for label in labels:
            first = by_run[label][0]
            if first.method in PAPER_METHODS and not all(r.published_recipe for r in by_run[label]):
                notes.append(f"{label} is not compared with the paper: it runs a named variant, preset or --set overrides")

    rows = []
    for direction in DIRECTIONS:
        for domain in [*domains, AVG]:
            for k in KS:
                row = Row(direction, domain, k=k)
                for column in columns:
                    ours = _measured_cell(column.run_label, direction, domain, k, measured, averages)
                    if column.kind == "measured":
                        row.cells[column.key] = ours
                        continue
                    paper = None
                    if table is not None and (domain != AVG or set(domains) == paper_domains):
                        paper = table.get(column.paper_method, PAPER_AVG if domain == AVG else domain, direction, k)
                    if column.kind == "reported":
                        row.cells[column.key] = Cell(paper)
                    else:
                        row.cells[column.key] = Cell(None if paper is None or ours.mean is None else ours.mean - paper)
                rows.append(row)
    _mark_best(rows, columns)

    hn_columns = [c for c in columns if c.kind == "measured"]
    hn_rows = _hard_negative_rows(labels, domains, grouped)
    _mark_best(hn_rows, hn_columns)
    if hn_rows:
        notes.append(
            "hard negatives: percent of test images whose positive caption outscores every own negative of that kind"
        )
    models = sorted({r.model for r in results}, key=str)
    return Leaderboard(
        columns=columns,
        rows=rows,
        hard_negative_columns=hn_columns if hn_rows else [],
        hard_negative_rows=hn_rows,
        domains=domains,
        runs={
            label: {
                "method": by_run[label][0].method,
                "seeds": sorted({r.seed for r in by_run[label]}),
                "domains": [d for d in domains if d in grouped[label]],
                "files": len(by_run[label]),
            }
            for label in labels
        },
        datasets=sorted({r.content_hash for r in results}),
        models=[{"id": m[0], "revision": m[1]} for m in models],
        notes=notes,
        interval=settings.describe(),
        reported=reported,
        differences=_differences(labels, domains, grouped, averages, settings),
    )


def _differences(labels, domains, grouped, averages, settings: IntervalSettings) -> list[dict[str, Any]]:
    """Every two runs with an AVG and per-item ranks, the better one (by AVG mean recall) first: the
    difference of their AVG mean recalls and its paired-bootstrap interval (benchmark/metrics/bootstrap.py
    `difference_intervals`: test items drawn once for both, seeds per run); inside the noise when the
    interval holds 0. Beyond ALL_PAIRS_UP_TO runs, each run is compared with the next and with the best."""
    eligible = [label for label in labels if label in averages
                and all(r.ranks is not None for d in domains for r in grouped[label][d])]
    mean_recall = {label: float(np.mean([cell.mean for cell in averages[label].values()])) for label in eligible}
    ordered = sorted(eligible, key=lambda label: -mean_recall[label])
    if len(ordered) <= ALL_PAIRS_UP_TO:
        pairs = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
    else:
        pairs = list(dict.fromkeys([*zip(ordered, ordered[1:], strict=False), *((ordered[0], b) for b in ordered[2:])]))

    def runs(label: str) -> list[list[tuple[list[int], list[int]]]]:
        return [[(r.ranks["i2t"], r.ranks["t2i"]) for r in sorted(grouped[label][d], key=lambda r: r.seed)] for d in domains]

    found = []
    for a, b in pairs:
        low, high = difference_intervals(runs(a), runs(b), settings.resamples, settings.level,
                                         seed=name_seed(settings, "difference", a, b))["mean_recall"]
        found.append({"runs": [a, b], "difference": mean_recall[a] - mean_recall[b], "interval": [low, high],
                      "inside_noise": low <= 0.0 <= high})
    return found


def _measured_cell(label: str | None, direction: str, domain: str, k: int, measured, averages) -> Cell:
    if label is None:
        return Cell()
    if domain == AVG:
        return averages.get(label, {}).get((direction, k), Cell())
    found = measured.get((label, domain))
    return found.cells[direction, k] if found else Cell()


def _kind_order(kinds: set[str]) -> list[str]:
    return [k for k in KIND_ORDER if k in kinds] + sorted(kinds - set(KIND_ORDER))


def _hard_negative_rows(labels, domains, grouped) -> list[Row]:
    """Per kind: a row per domain where any run has an accuracy, then AVG (mean over those domains, std over
    seeds of the per-seed average when the run has the same seeds in each), as for recall."""
    kinds = _kind_order({kind for rs in grouped.values() for results in rs.values() for r in results for kind in r.hard_negatives})
    rows = []
    for kind in kinds:
        accuracies: dict[str, dict[str, dict[int, float]]] = {}  # domain -> label -> seed -> accuracy
        for domain in domains:
            found = {
                label: {r.seed: r.hard_negatives[kind] for r in grouped[label].get(domain, []) if r.hard_negatives.get(kind) is not None}
                for label in labels
            }
            if any(found.values()):
                accuracies[domain] = found
        for domain, found in accuracies.items():
            cells = {}
            for label in labels:
                seeds = sorted(found[label])
                cells[label] = Cell(*mean_std([found[label][s] for s in seeds]), None, tuple(seeds)) if seeds else Cell()
            rows.append(Row(HARD_NEGATIVES, domain, kind=kind, cells=cells))
        if not accuracies:
            continue
        average = {}
        for label in labels:
            per_domain = [found[label] for found in accuracies.values()]
            if not all(per_domain):
                average[label] = Cell()
                continue
            mean = float(np.mean([statistics.fmean(seeds.values()) for seeds in per_domain]))
            seed_sets = {tuple(sorted(seeds)) for seeds in per_domain}
            std, same = None, next(iter(seed_sets)) if len(seed_sets) == 1 else ()
            if len(same) > 1:
                std = mean_std([statistics.fmean(seeds[s] for seeds in per_domain) for s in same])[1]
            average[label] = Cell(mean, std, None, same)
        rows.append(Row(HARD_NEGATIVES, AVG, kind=kind, cells=average))
    return rows
