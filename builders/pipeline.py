"""The build: source -> normalize -> captions -> dedup -> shards, per domain, resumable.
Each stage is a module of builders/stages/; this module runs the domains and writes the manifest.

Layout of work in progress (all under `<out>/.fdrd-build/`, removed once manifest.json is written):
  config.json                  the build identity; a rerun with other settings is refused
  <domain>/items.json          fingerprint of the source's item sequence (must match on resume)
  <domain>/norm-NNNNN.parquet  normalized chunk: stored bytes + hashes, or the rejection reason
  <domain>/ann.json            caption-stage output for the domain
  <domain>/done.json           the finished domain: shards, counts, row digests, rejections
The running build holds an flock on <out> itself, so a second build into it is refused.
Every file is written under a temporary name and renamed, so existence means complete: a build
killed at any moment (SIGKILL included) and rerun with the same arguments redoes only missing
units and ends with the same content hash, because every step is deterministic in the item order.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from builders.card import write_card
from builders.normalize import MAX_PHASH_THRESHOLD
from builders.report import REJECTED_NAME, RejectedInput, write_rejected
from builders.stages.domain import DomainBuilder
from builders.stages.options import (
    DEFAULT_PHASH_THRESHOLD,
    STAGING,
    TRAINING_SPLITS,
    BuildOptions,
    CaptionSettings,
    build_identity,
    requested_splits,
)
from builders.stages.out_dir import BuildLock, prepare_out_dir
from builders.stages.outcome import EmptyBuildError, domain_outcome, expected_splits, failure_message
from fdrd.errors import FdrdError
from fdrd.manifest import MANIFEST_FORMAT, content_hash, environment_versions, write_manifest
from fdrd.schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_PHASH_THRESHOLD",
    "STAGING",
    "TRAINING_SPLITS",
    "BuildLock",
    "BuildOptions",
    "CaptionSettings",
    "DomainBuilder",
    "EmptyBuildError",
    "build",
    "requested_splits",
]


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def build(options: BuildOptions, console: Console | None = None) -> dict[str, Any]:
    """Build FDRD into `options.out` (resuming an interrupted build of the same settings) and
    return its manifest. A build that made no row for a domain/split with inputs (or no row at
    all) is written out, rejections and manifest included, and then raises EmptyBuildError."""
    from builders.sources import resolve_source

    console = console or Console(stderr=True)
    if not 0 <= options.phash_threshold <= MAX_PHASH_THRESHOLD:
        raise FdrdError(f"--phash-threshold must be within 0..{MAX_PHASH_THRESHOLD}, got {options.phash_threshold}")
    if options.workers < 1:
        raise FdrdError(f"--workers must be at least 1, got {options.workers}")
    requested_splits(options.split)
    source = resolve_source(
        options.source,
        options.data_root,
        domains=list(options.domains) if options.domains else None,
        seed=options.seed,
        per_category=options.per_category,
        meta_encoder=options.meta_encoder,
    )
    domains = source.domains()
    out = Path(options.out)
    options = replace(options, out=out)
    identity = build_identity(options, source.name, domains)
    if out.exists() and not out.is_dir():
        raise FdrdError(f"--out {out} is a file, not a directory; choose a directory")
    with BuildLock(out):
        finished = prepare_out_dir(out, identity, options.overwrite)
        if finished is not None:
            console.print(f"{out} already holds this build (content hash {finished['content_hash'][:16]}); nothing to do")
            return _succeeded(finished, out)
        with _progress(console) as progress:
            results = {domain: DomainBuilder(options, source, domain, progress).run() for domain in domains}
        for domain in domains:  # which rule made each domain's meta-categories, for the manifest
            taxonomy = source.taxonomy(domain)
            results[domain]["meta_categories"] = {"rule": taxonomy.meta_rule, "source": taxonomy.meta_source}
        expected = expected_splits(source.name, requested_splits(options.split))
        manifest = _finish(out, identity, results, expected)
    for domain, info in manifest["domains"].items():
        for split in info.get("empty_splits", []):
            console.print(f"[yellow]note:[/] {domain}/{split}: the source lists no entries for it (an empty split file)")
    return _succeeded(manifest, out)


def _succeeded(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """The manifest of a build that made every split it was asked for; else EmptyBuildError."""
    message = failure_message(manifest, str(out))
    if message is not None:
        raise EmptyBuildError(message, manifest)
    return manifest


def _attribute_annotations(rows_with_attributes: int, rows: int) -> str:
    """What the manifest says about a domain's attribute spans."""
    if rows_with_attributes == 0:
        return "none"  # e.g. category captions of sources without attribute labels
    return "every row" if rows_with_attributes == rows else "some rows"


def _finish(
    out: Path, identity: dict[str, Any], results: dict[str, dict[str, Any]], expected: list[str]
) -> dict[str, Any]:
    """rejected.jsonl, README.md, then manifest.json (last: its presence means a finished build)."""
    rejected = [RejectedInput(**r) for result in results.values() for r in result["rejected"]]
    write_rejected(out, rejected)
    digests = [d for result in results.values() for d in result["row_digests"]]
    failures, domains = [], {}
    for domain, result in results.items():
        failed, empty = domain_outcome(expected, result["entries"], result["split_rows"], result["rejected"])
        failures += [{"domain": domain, **failure} for failure in failed]
        rows = sum(result["split_rows"].values())
        domains[domain] = {
            **result["counts"],
            "leaks": result["leaks"],
            "captions": result["captions"],
            "captioner": result["captioner"],
            "meta_categories": result["meta_categories"],
            "attribute_annotations": _attribute_annotations(result["rows_with_attributes"], rows),
            "licenses": result["licenses"],
            "empty_splits": empty,
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "content_hash": content_hash(digests),
        "rows": len(digests),
        "build": identity,
        "versions": environment_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": [shard for result in results.values() for shard in result["shards"]],
        "domains": domains,
        "rejected": {"count": len(rejected), "file": REJECTED_NAME},
        # Domain/splits that had inputs and made no row: the build is a failure (see stages/outcome.py).
        "failures": failures,
    }
    write_card(out, {domain: result["split_rows"] for domain, result in results.items()}, manifest)
    write_manifest(out, manifest)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    return manifest
