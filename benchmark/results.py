"""The results file: one JSON per (method, domain, seed), its schema, a reader, and the summary table.

A results file says what was measured and on what, well enough to reproduce or to refuse a
comparison: the method and its resolved config (with the toolkit's variant tag, these are our
adaptations), the model id and revision, the dataset directory and content hash, domain, split,
shots, seed, the metrics, truncated captions, timings, git sha, package versions and device.
docs/benchmark.md documents every field; `load_results` is what the leaderboard reads.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from fdrd.errors import FdrdError
from fdrd.manifest import write_json_atomic

SCHEMA_NAME = "fdrd-bench-result"
SCHEMA_VERSION = 1

# Top-level fields every results file has (nested contents are documented in docs/benchmark.md).
REQUIRED_FIELDS = (
    "schema", "schema_version", "method", "method_variant", "config", "model", "dataset", "domain",
    "split", "shots", "seed", "metrics", "truncated_captions", "timings", "training", "git", "versions",
    "device", "created",
)
RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def result_path(out_dir: str | Path, method: str, domain: str, seed: int) -> Path:
    return Path(out_dir) / method / domain / f"seed-{seed}.json"


def write_result(out_dir: str | Path, result: dict[str, Any]) -> Path:
    missing = [name for name in REQUIRED_FIELDS if name not in result]
    if missing:
        raise ValueError(f"results payload misses {', '.join(missing)}")
    path = result_path(out_dir, result["method"], result["domain"], result["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return path


def load_results(directory: str | Path) -> list[dict[str, Any]]:
    """Every results file under `directory` (recursively), sorted by method, domain, seed.

    Other JSON files (checkpoint pointers, manifests) are skipped; a file that claims to be a results
    file but is broken is an FdrdError naming it. Each result gets `"path"` (where it was read).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FdrdError(f"{directory}: no such results directory")
    results = []
    for path in sorted(directory.rglob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            if path.name.startswith("seed-"):
                raise FdrdError(f"{path}: not valid JSON ({error}); delete it and rerun that seed") from error
            continue
        if not isinstance(payload, dict) or payload.get("schema") != SCHEMA_NAME:
            continue
        if payload.get("schema_version") != SCHEMA_VERSION:
            raise FdrdError(
                f"{path}: results schema version {payload.get('schema_version')!r}, this reader knows {SCHEMA_VERSION}"
            )
        missing = [name for name in REQUIRED_FIELDS if name not in payload]
        if missing:
            raise FdrdError(f"{path}: results file misses {', '.join(missing)}; rerun that seed")
        absent = [key for key in RECALL_KEYS if key not in payload["metrics"]]
        if absent:
            raise FdrdError(f"{path}: metrics miss {', '.join(absent)}")
        payload["path"] = str(path)
        results.append(payload)
    return sorted(results, key=lambda r: (r["method"], r["domain"], r["seed"]))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method: per-domain mean and std over seeds, and an "AVG" row.

    Each row maps metric -> (mean, std) for RECALL_KEYS plus "mean_recall" (the mean of the six).
    AVG is the plain mean over domains of the per-domain means (the paper's AVG); its std is the std
    over seeds of the per-seed domain average, shown only when every domain has the same seeds.
    """
    by_method: dict[str, dict[str, dict[int, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    for result in results:
        metrics = {key: float(result["metrics"][key]) for key in RECALL_KEYS}
        metrics["mean_recall"] = statistics.fmean(metrics[key] for key in RECALL_KEYS)
        by_method[result["method"]][result["domain"]][int(result["seed"])] = metrics
    keys = (*RECALL_KEYS, "mean_recall")
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method, domains in by_method.items():
        rows: dict[str, dict[str, Any]] = {}
        for domain, seeds in domains.items():
            rows[domain] = {key: _mean_std([m[key] for m in seeds.values()]) for key in keys}
            rows[domain]["seeds"] = sorted(seeds)
        avg = {key: (statistics.fmean(rows[d][key][0] for d in domains), math.nan) for key in keys}
        seed_sets = {tuple(rows[d]["seeds"]) for d in domains}
        if len(seed_sets) == 1 and len(domains) > 0:
            seeds = next(iter(seed_sets))
            for key in keys:
                per_seed = [statistics.fmean(domains[d][s][key] for d in domains) for s in seeds]
                avg[key] = (avg[key][0], _mean_std(per_seed)[1])
        avg["seeds"] = sorted({s for d in domains for s in domains[d]})
        rows["AVG"] = avg
        summary[method] = rows
    return summary


def summary_table(results: list[dict[str, Any]]) -> Table:
    """A rich table: one row per (method, domain), then each method's AVG row."""
    table = Table(title="Recall@K (%), mean ± std over seeds", box=box.SIMPLE_HEAD)
    summary = summarize(results)
    # Names are never abbreviated: narrow terminals squeeze the number columns instead.
    widest_method = max((len(method) for method in summary), default=6)
    widest_domain = max((len(domain) for rows in summary.values() for domain in rows), default=6)
    table.add_column("method", no_wrap=True, min_width=widest_method)
    table.add_column("domain", no_wrap=True, min_width=widest_domain)
    for column in ("seeds", "I→T R@1", "R@5", "R@10", "T→I R@1", "R@5", "R@10", "mean"):
        table.add_column(column, justify="right", no_wrap=True)
    for method, rows in summary.items():
        for domain, row in rows.items():
            cells = [_cell(*row[key]) for key in (*RECALL_KEYS, "mean_recall")]
            style = "bold" if domain == "AVG" else None
            table.add_row(method, domain, ",".join(map(str, row["seeds"])), *cells, style=style)
    return table


def _cell(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) or std == 0 else f"{mean:.1f} ± {std:.1f}"
