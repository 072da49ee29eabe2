"""`fdrd validate`: check a built FDRD directory against its manifest and the record schema.

Everything is recomputed from the files, nothing is trusted: the manifest's shape, shard paths (inside
the folder), checksums and sizes (fdrd.manifest.verify_shards, the check `fdrd bench` runs too), the
card's configs (they must load exactly the listed shards: fdrd/dataset_card.py), the Arrow schema (with
its `huggingface` metadata), each row (fdrd.schema.validate_record, image bytes vs the `sha256` column,
domain/split vs the shard, a caption), unique ids, total and per-split counts (rows, categories, rejected inputs),
the content hash, and train/test leaks from the `phash` column. A build of no rows, or one whose
manifest lists domain/splits that made no row, is never ok.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import track

from builders.normalize import confirmed_near_duplicates
from builders.report import REJECTED_NAME, read_rejected
from builders.stages.options import DEFAULT_PHASH_THRESHOLD, TRAINING_SPLITS
from fdrd.dataset_card import card_problems
from fdrd.errors import FdrdError
from fdrd.manifest import content_hash, read_build_manifest, row_digest, script_problems, verify_shards
from fdrd.schema import SCHEMA_VERSION, arrow_schema, validate_record
from fdrd.untrusted import containment_problem

MAX_LISTED_PER_KIND = 20  # a broken build can have thousands of bad rows; list a few per kind


@dataclass
class ValidationReport:
    manifest: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    shards: int = 0
    content_hash: str = ""


class _Problems:
    """Collects problems, listing at most MAX_LISTED_PER_KIND of each kind and counting the rest."""

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= MAX_LISTED_PER_KIND:
            self.listed.append(message)

    def finish(self) -> list[str]:
        extra = [f"... and {n - MAX_LISTED_PER_KIND} more {kind} problems" for kind, n in self.counts.items() if n > MAX_LISTED_PER_KIND]
        return self.listed + extra


def _check_shard(directory: Path, shard: dict[str, Any], problems: _Problems, seen_ids: dict[str, str]) -> list[dict]:
    """Checks of one shard; returns its rows without image bytes (for counts, hashes and leaks)."""
    name = shard["path"]
    for problem in verify_shards(directory, {"shards": [shard]}):  # the one check bench runs too
        problems.add("shard file", problem)
    path = directory / name
    if containment_problem(directory, name) is not None or not path.is_file():
        return []  # never read a file the manifest may not name
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        problems.add("unreadable", f"{name}: not a readable Parquet file ({error})")
        return []
    expected = arrow_schema()
    if not parquet.schema_arrow.equals(expected, check_metadata=False):
        problems.add("schema", f"{name}: schema differs from fdrd.schema ({parquet.schema_arrow} vs {expected})")
        return []
    if b"huggingface" not in (parquet.schema_arrow.metadata or {}):
        problems.add("schema", f"{name}: no `huggingface` schema metadata; datasets would not decode images")
    if parquet.metadata.num_rows != shard["rows"]:
        problems.add("rows", f"{name}: {parquet.metadata.num_rows} rows, manifest says {shard['rows']}")
    rows = []
    for batch in parquet.iter_batches(batch_size=100):
        for row in batch.to_pylist():
            rid = row["id"]
            where = f"{name}: row {rid}"
            image = row.pop("image") or {}
            data = image.get("bytes") or b""
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
                problems.add("image checksum", f"{where}: image bytes do not match the sha256 column")
            if row["domain"] != shard["domain"] or row["split"] != shard["split"]:
                problems.add("placement", f"{where}: {row['domain']}/{row['split']} row in a {shard['domain']}/{shard['split']} shard")
            for problem in validate_record({**row, "image": image}):
                problems.add("record", f"{where}: {problem}")
            if not (row["caption"] or "").strip():
                problems.add("record", f"{where}: empty caption (a row without caption text is not an FDRD row)")
            if rid in seen_ids:
                problems.add("duplicate id", f"{where}: id also in {seen_ids[rid]}")
            seen_ids[rid] = name
            rows.append({**row, "_shard": name})
    return rows


def _read_images(directory: Path, rows: list[dict], wanted: list[int]) -> dict[int, bytes]:
    """Stored bytes of rows[i] for i in `wanted`, reading only those rows' shards."""
    by_shard: dict[str, dict[str, int]] = {}
    for i in wanted:
        by_shard.setdefault(rows[i]["_shard"], {})[rows[i]["id"]] = i
    found: dict[int, bytes] = {}
    for shard, ids in by_shard.items():
        table = pq.read_table(directory / shard, columns=["id", "image"], filters=[("id", "in", list(ids))])
        for row in table.to_pylist():
            found[ids[row["id"]]] = row["image"]["bytes"]
    return found


def _leaks(directory: Path, rows: list[dict], threshold: int) -> list[tuple[dict, dict, int]]:
    """(test row, training row, distance) per domain for confirmed near duplicates across the split
    boundary (the same test as the build's, see builders/normalize.py)."""
    found = []
    by_domain: dict[str, list[dict]] = {}
    for row in rows:
        by_domain.setdefault(row["domain"], []).append(row)
    for domain_rows in by_domain.values():
        pairs = confirmed_near_duplicates(
            [r["phash"] for r in domain_rows], threshold, lambda wanted, rows=domain_rows: _read_images(directory, rows, wanted)
        )
        for i, j, distance in pairs:
            a, b = domain_rows[i], domain_rows[j]
            if a["split"] == "test" and b["split"] in TRAINING_SPLITS:
                found.append((a, b, distance))
            elif b["split"] == "test" and a["split"] in TRAINING_SPLITS:
                found.append((b, a, distance))
    return sorted(found, key=lambda leak: (leak[0]["id"], leak[1]["id"]))


def validate_build(
    directory: str | os.PathLike, allow_leaks: bool = False, console: Console | None = None
) -> ValidationReport:
    """Every check on `directory`; with a console, a progress bar over the shards."""
    directory = Path(directory)
    manifest = read_build_manifest(directory)  # a manifest of another shape is a named error
    report = ValidationReport(manifest=manifest)
    problems = _Problems()
    if manifest.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.add("manifest", f"manifest.json: schema_version {manifest['schema_version']!r}, this fdrd writes {SCHEMA_VERSION!r}")
    shards = manifest["shards"]
    listed = {s["path"] for s in shards}
    for path in sorted(directory.rglob("*.parquet")):
        relative = path.relative_to(directory).as_posix()
        if relative not in listed and not relative.startswith("."):
            problems.add("unlisted shard", f"{relative}: Parquet file not listed in manifest.json")
    for problem in card_problems(directory, manifest) + script_problems(directory):
        problems.add("card", problem)
    seen_ids: dict[str, str] = {}
    rows = []
    shown = track(shards, description="checking shards", console=console, transient=True) if console else shards
    for shard in shown:
        rows.extend(_check_shard(directory, shard, problems, seen_ids))
    report.rows, report.shards = len(rows), len(shards)

    report.content_hash = content_hash(row_digest(r) for r in rows)  # row_digest ignores "_shard"
    if report.content_hash != manifest["content_hash"]:
        problems.add("content hash", f"content hash of the rows is {report.content_hash}, manifest.json says {manifest['content_hash']}")
    if len(rows) != manifest["rows"]:
        problems.add("counts", f"{len(rows)} rows in the shards, manifest.json says {manifest['rows']}")
    _check_counts(directory, manifest, rows, problems)
    if report.rows == 0:
        problems.add("empty", "the build holds no rows: nothing can be loaded or benchmarked (see rejected.jsonl)")
    for failure in manifest.get("failures", []):
        reasons = ", ".join(f"{n} {kind}" for kind, n in failure.get("reasons", {}).items())
        problems.add(
            "empty",
            f"{failure['domain']}/{failure['split']}: no row from {failure['entries']} inputs ({reasons})",
        )

    threshold = manifest.get("build", {}).get("phash_threshold", DEFAULT_PHASH_THRESHOLD)
    for test, other, distance in _leaks(directory, rows, threshold):
        message = (
            f"{test['domain']}: test image {test['id']} ({test['source']['original']}) near-duplicates "
            f"{other['split']} image {other['id']} ({other['source']['original']}), phash distance {distance}"
        )
        if allow_leaks:
            report.warnings.append(f"leak: {message}")
        else:
            problems.add("leak", f"leak: {message}")
    report.problems = problems.finish()
    return report


def _check_counts(directory: Path, manifest: dict[str, Any], rows: list[dict], problems: _Problems) -> None:
    """Per domain and split: images, categories and rejected inputs as manifest.json states them."""
    actual_rows = Counter((r["domain"], r["split"]) for r in rows)
    categories: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        categories.setdefault((r["domain"], r["split"]), set()).add(r["category"])
    try:
        rejected = read_rejected(directory)
    except FdrdError as error:
        problems.add("rejected", str(error))
        rejected = None
    rejected_by_split = Counter((r.get("domain"), r.get("split")) for r in rejected or [])
    stated = set()
    for domain, info in manifest["domains"].items():
        for split, counts in info.get("splits", {}).items():
            stated.add((domain, split))
            if actual_rows[domain, split] != counts.get("images"):
                problems.add("counts", f"{domain}/{split}: {actual_rows[domain, split]} rows, manifest.json says {counts.get('images')}")
            if "categories" in counts and len(categories.get((domain, split), ())) != counts["categories"]:
                problems.add("counts", f"{domain}/{split}: {len(categories.get((domain, split), ()))} categories, "
                                       f"manifest.json says {counts['categories']}")
            if rejected is not None and "rejected" in counts and rejected_by_split[domain, split] != counts["rejected"]:
                problems.add("rejected", f"{domain}/{split}: {rejected_by_split[domain, split]} lines in rejected.jsonl, "
                                         f"manifest.json says {counts['rejected']}")
    for domain, split in sorted(set(actual_rows) - stated):
        problems.add("counts", f"{domain}/{split}: {actual_rows[domain, split]} rows that manifest.json does not count")
    listed_file = manifest.get("rejected", {}).get("file", REJECTED_NAME)
    if listed_file != REJECTED_NAME:
        problems.add("rejected", f"manifest.json: rejected.file is {str(listed_file)[:100]!r}, a build writes {REJECTED_NAME!r}")
    listed_rejected = manifest.get("rejected", {}).get("count", 0)
    if rejected is not None and len(rejected) != listed_rejected:
        problems.add("rejected", f"rejected.jsonl: {len(rejected)} lines, manifest.json says {listed_rejected}")
