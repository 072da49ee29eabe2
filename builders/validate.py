"""`fdrd validate`: check a built FDRD directory against its manifest and the record schema.

Everything is recomputed from the files, nothing is trusted: shard checksums and sizes, the Arrow
schema (with its `huggingface` metadata), each row (fdrd.schema.validate_record, image bytes vs the
`sha256` column, domain/split vs the shard), unique ids, per-split counts, the content hash, and
train/test leaks from the `phash` column.
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
from builders.report import read_rejected
from builders.stages.options import DEFAULT_PHASH_THRESHOLD, TRAINING_SPLITS
from fdrd.manifest import MANIFEST_FORMAT, content_hash, read_manifest, row_digest, sha256_file
from fdrd.schema import arrow_schema, validate_record

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
    path = directory / shard["path"]
    name = shard["path"]
    if not path.is_file():
        problems.add("missing shard", f"{name}: listed in manifest.json but missing")
        return []
    if path.stat().st_size != shard["bytes"]:
        problems.add("checksum", f"{name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
    if sha256_file(path) != shard["sha256"]:
        problems.add("checksum", f"{name}: sha256 differs from manifest.json (file changed after the build)")
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
    manifest = read_manifest(directory)
    report = ValidationReport(manifest=manifest)
    problems = _Problems()
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.add("manifest", f"manifest.json: format is {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    shards = manifest.get("shards", [])
    listed = {s["path"] for s in shards}
    for path in sorted(directory.rglob("*.parquet")):
        relative = path.relative_to(directory).as_posix()
        if relative not in listed and not relative.startswith("."):
            problems.add("unlisted shard", f"{relative}: Parquet file not listed in manifest.json")
    seen_ids: dict[str, str] = {}
    rows = []
    shown = track(shards, description="checking shards", console=console, transient=True) if console else shards
    for shard in shown:
        rows.extend(_check_shard(directory, shard, problems, seen_ids))
    report.rows, report.shards = len(rows), len(shards)

    report.content_hash = content_hash(row_digest(r) for r in rows)  # row_digest ignores "_shard"
    if report.content_hash != manifest.get("content_hash"):
        problems.add("content hash", f"content hash of the rows is {report.content_hash}, manifest.json says {manifest.get('content_hash')}")
    actual_rows = Counter((r["domain"], r["split"]) for r in rows)
    for domain, info in manifest.get("domains", {}).items():
        for split, counts in info.get("splits", {}).items():
            actual = actual_rows[domain, split]
            if actual != counts.get("images"):
                problems.add("counts", f"{domain}/{split}: {actual} rows, manifest.json says {counts.get('images')}")
    rejected = read_rejected(directory)
    listed_rejected = manifest.get("rejected", {}).get("count", 0)
    if len(rejected) != listed_rejected:
        problems.add("rejected", f"rejected.jsonl: {len(rejected)} lines, manifest.json says {listed_rejected}")

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
