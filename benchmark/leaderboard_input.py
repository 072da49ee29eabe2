"""What the leaderboard reads: results files (schema v2, docs/benchmark.md) found under the folders or
files a user names, each checked field by field (a results file may come from anyone), and the refusal
to put results from different datasets or backbones in one table.

Only the fields a table needs are kept (`RunResult`); a file that claims to be a results file but is
broken is an FdrdError naming the file and the field, never a traceback from deep inside a renderer.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.metrics.bootstrap import DIRECTIONS, KS
from fdrd.errors import FdrdError
from fdrd.untrusted import read_json_file

# benchmark.results.SCHEMA_NAME and SCHEMA_VERSION, repeated: that module loads `datasets` (half a second).
RESULTS_SCHEMA = "fdrd-bench-result"
RESULTS_SCHEMA_VERSION = 2
# How far a recall may sit from what the file's ranks give, or outside the file's own interval for it
# (writers may round to 0.01).
TOLERANCE = 0.011
# What benchmark.methods.base.check_label lets `fdrd bench` write (repeated here: that module loads torch).
RUN_LABEL = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,99}")  # fullmatch: "$" would let a final newline in


@dataclass
class RunResult:
    path: Path
    run_label: str
    method: str
    # No preset, no --set override and no named variant other than the method itself (`fdrd bench dcar` records
    # named_variant "dcar": the plain method heads its family of ablations): comparable with a paper's number.
    published_recipe: bool
    domain: str
    seed: int
    model: tuple[str, str | None]  # (id, revision)
    content_hash: str
    recall: dict[tuple[str, int], float]  # (direction, K) -> percent
    ranks: dict[str, list[int]] | None  # direction -> 1-based rank per test item
    file_intervals: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    hard_negatives: dict[str, float | None] = field(default_factory=dict)  # kind -> accuracy (percent) or None


REREAD = "rerun that seed with `fdrd bench` or remove the file"


def _fail(path: Path, message: str) -> FdrdError:
    return FdrdError(f"{path}: {message}; {REREAD}")


def _number(path: Path, where: str, value: Any, low: float = 0.0, high: float = 100.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise _fail(path, f"{where} is {value!r}, expected a number in {low:g}..{high:g}")
    return float(value)


def _text(path: Path, where: str, value: Any, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _fail(path, f"{where} is {str(value)[:60]!r}, expected a non-empty string of at most {limit} characters")
    return value


def _object(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"{where} is missing or not an object")
    return value


def _ranks(path: Path, payload: dict[str, Any]) -> dict[str, list[int]] | None:
    if payload.get("ranks") is None:
        return None
    ranks = _object(path, "ranks", payload["ranks"])
    out = {}
    for direction in DIRECTIONS:
        values = ranks.get(direction)
        if not isinstance(values, list) or not values:
            raise _fail(path, f"ranks.{direction} is missing or empty")
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in values):
            raise _fail(path, f"ranks.{direction} holds something other than positive integers")
        out[direction] = values
    return out


def _hard_negatives(path: Path, payload: dict[str, Any]) -> dict[str, float | None]:
    if payload.get("hard_negatives") is None:
        return {}
    out: dict[str, float | None] = {}
    for kind, entry in _object(path, "hard_negatives", payload["hard_negatives"]).items():
        entry = _object(path, f"hard_negatives.{kind}", entry)
        accuracy = entry.get("accuracy")
        out[_text(path, "a hard-negative kind", kind, 40)] = (
            None if accuracy is None else _number(path, f"hard_negatives.{kind}.accuracy", accuracy)
        )
    return out


def parse_result(path: Path, payload: dict[str, Any]) -> RunResult:
    """A RunResult from a payload that says it is a results file (schema checked by the caller)."""
    if payload.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise _fail(
            path, f"results schema version {payload.get('schema_version')!r}, the leaderboard reads {RESULTS_SCHEMA_VERSION}"
        )
    run_label = payload.get("run_label")
    if not isinstance(run_label, str) or not RUN_LABEL.fullmatch(run_label):
        raise _fail(path, f"run_label is {str(run_label)[:60]!r}, expected letters, digits and . _ + - (at most 100)")
    seed = payload.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, f"seed is {seed!r}, expected an integer")
    metrics = _object(path, "metrics", payload.get("metrics"))
    recall = {(d, k): _number(path, f"metrics.{d}_r{k}", metrics.get(f"{d}_r{k}")) for d in DIRECTIONS for k in KS}
    model = _object(path, "model", payload.get("model"))
    revision = model.get("revision")
    dataset = _object(path, "dataset", payload.get("dataset"))
    method = _text(path, "method", payload.get("method"), 100)
    result = RunResult(
        path=path,
        run_label=run_label,
        method=method,
        published_recipe=payload.get("named_variant") in (None, method) and payload.get("preset") is None
        and not payload.get("overrides"),
        domain=_text(path, "domain", payload.get("domain"), 100),
        seed=seed,
        model=(_text(path, "model.id", model.get("id")), None if revision is None else _text(path, "model.revision", revision)),
        content_hash=_text(path, "dataset.content_hash", dataset.get("content_hash")),
        recall=recall,
        ranks=_ranks(path, payload),
        hard_negatives=_hard_negatives(path, payload),
    )
    for direction in DIRECTIONS:
        for k in KS:
            if result.ranks is not None:
                # The ranks must be the ones the metrics came from, or their intervals describe something else.
                ranks = result.ranks[direction]
                from_ranks = 100.0 * sum(r <= k for r in ranks) / len(ranks)
                if abs(from_ranks - recall[direction, k]) > TOLERANCE:
                    raise _fail(path, f"metrics.{direction}_r{k} is {recall[direction, k]} but its ranks give {from_ranks:.4f}")
            interval = (payload.get("intervals") or {}).get(f"{direction}_r{k}")
            if isinstance(interval, list) and len(interval) == 2:
                low, high = (_number(path, f"intervals.{direction}_r{k}", v) for v in interval)
                if not low - TOLERANCE <= recall[direction, k] <= high + TOLERANCE:
                    # An interval is drawn around its value (an error bar cannot be negative).
                    raise _fail(path, f"intervals.{direction}_r{k} [{low}, {high}] does not hold metrics.{direction}_r{k} "
                                      f"{recall[direction, k]}")
                result.file_intervals[direction, k] = (low, high)
    return result


def read_results(paths: Sequence[str | Path]) -> list[RunResult]:
    """Every results file in `paths` (folders are searched recursively; other JSON files there are
    skipped), sorted by run label, domain and seed. A file named explicitly must be a results file.
    The same (run label, domain, seed) twice is an error naming both files."""
    found: dict[Path, RunResult] = {}
    for given in map(Path, paths):
        if given.is_dir():
            candidates, explicit = sorted(p for p in given.rglob("*.json") if p.is_file() and not p.is_symlink()), False
        elif given.is_file():
            candidates, explicit = [given], True
        else:
            raise FdrdError(f"{given}: no such results folder or file")
        for path in candidates:
            if path.resolve() in found:
                continue  # the same file named twice (a folder and a file inside it)
            payload = read_json_file(path, REREAD) if explicit or path.name.startswith("seed-") else _maybe_json(path)
            if not isinstance(payload, dict) or payload.get("schema") != RESULTS_SCHEMA:
                if explicit:
                    raise FdrdError(f"{path}: not a results file of `fdrd bench` (its schema is not {RESULTS_SCHEMA!r})")
                continue
            found[path.resolve()] = parse_result(path, payload)
    results = sorted(found.values(), key=lambda r: (r.run_label, r.domain, r.seed))
    seen: dict[tuple[str, str, int], Path] = {}
    for result in results:
        key = (result.run_label, result.domain, result.seed)
        if key in seen:
            raise FdrdError(
                f"{result.path} and {seen[key]} are both run {key[0]!r}, domain {key[1]!r}, seed {key[2]}; "
                "name only one of the folders"
            )
        seen[key] = result.path
    if not results:
        named = ", ".join(str(p) for p in paths)
        raise FdrdError(f"no results files (seed-*.json of `fdrd bench`) found in {named}")
    return results


def _maybe_json(path: Path) -> Any:
    """Other JSON files in a runs folder (checkpoint pointers, manifests) may be anything: skip the broken."""
    try:
        return read_json_file(path, REREAD)
    except FdrdError:
        return None


def _describe(groups: dict[Any, set[str]], name: str) -> str:
    parts = [f"{name(key)} ({', '.join(sorted(labels))})" for key, labels in sorted(groups.items(), key=str)]
    return "; ".join(parts)


def mixture(results: Sequence[RunResult]) -> list[str]:
    """One line per thing that differs between results (dataset content hash, backbone); empty when one table
    may hold them all."""
    datasets: dict[str, set[str]] = defaultdict(set)
    models: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for result in results:
        datasets[result.content_hash].add(result.run_label)
        models[result.model].add(result.run_label)
    lines = []
    if len(datasets) > 1:
        lines.append(f"{len(datasets)} datasets (content hash): " + _describe(datasets, lambda h: h[:12]))
    if len(models) > 1:
        lines.append(f"{len(models)} backbones (model id @ revision): " + _describe(models, lambda m: f"{m[0]}@{m[1]}"))
    return lines


def check_not_mixed(results: Sequence[RunResult], allow_mixed: bool) -> list[str]:
    """Refuses results from different datasets or backbones unless allow_mixed; returns the notes to print."""
    lines = mixture(results)
    if lines and not allow_mixed:
        raise FdrdError(
            "these results are not comparable in one table: " + " | ".join(lines)
            + ". Name folders of one dataset and backbone, or pass --allow-mixed to show them anyway"
        )
    return [f"mixed: {line}" for line in lines]
