"""One domain through the stages: source listing -> normalize -> caption -> dedup -> write, its
result staged as done.json (a finished domain is not redone on resume)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.progress import Progress

from builders.report import RejectedInput
from builders.sources.base import Rejection, SourceItem
from builders.stages.caption_stage import CaptionOutcome, annotate_domain
from builders.stages.dedup import DedupOutcome, dedup
from builders.stages.normalize_stage import normalize_domain
from builders.stages.options import STAGING, BuildOptions, requested_splits
from builders.stages.staged import Staged
from builders.stages.write_stage import split_counts, write_domain
from fdrd.errors import FdrdError
from fdrd.manifest import read_json, write_json_atomic


def source_fingerprint(entries: Sequence[SourceItem | Rejection]) -> str:
    """Digest of the source's item sequence: a resumed build must read the same items in the same order."""
    digest = hashlib.sha256()
    for entry in entries:
        kind = "item" if isinstance(entry, SourceItem) else "rejection"
        digest.update(json.dumps([kind, entry.domain, entry.split, entry.original]).encode())
    return digest.hexdigest()


class DomainBuilder:
    """Builds one domain into `<out>/<domain>/` and records the result in staging `done.json`."""

    def __init__(self, options: BuildOptions, source: Any, domain: str, progress: Progress):
        self.options = options
        self.source = source
        self.domain = domain
        self.progress = progress
        self.stage_dir = options.out / STAGING / domain
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.splits = requested_splits(options.split)
        self.captions = CaptionOutcome()
        self.duplicates = DedupOutcome()

    def run(self) -> dict[str, Any]:
        done_path = self.stage_dir / "done.json"
        if done_path.is_file():
            return read_json(done_path)
        task = self.progress.add_task(f"{self.domain}: reading source", total=None)
        entries = list(self.source.iter_items(self.domain, self.splits))
        self._check_fingerprint(entries)
        rejected = [
            RejectedInput(e.domain, e.split, e.original, e.reason, "source")
            for e in entries
            if isinstance(e, Rejection)
        ]
        items = [e for e in entries if isinstance(e, SourceItem)]
        staged = self._normalize(items, task)
        self._annotate(staged, task)
        self._dedup(staged, task)
        rejected += [
            RejectedInput(self.domain, s.item.split, s.item.original, s.reason, s.stage) for s in staged if s.reason
        ]
        rejected += self.captions.rejections
        result = self._write(staged, task)
        result["entries"] = dict(Counter(e.split for e in entries))
        result["rejected"] = [r.to_json() for r in rejected]
        result["counts"] = split_counts(
            self.splits, staged, rejected, self.duplicates.near_duplicates, self.duplicates.leaks
        )
        write_json_atomic(done_path, result)
        self.progress.update(task, description=f"{self.domain}: done")
        return result

    def _check_fingerprint(self, entries: list[SourceItem | Rejection]) -> None:
        path = self.stage_dir / "items.json"
        fingerprint = {"count": len(entries), "sha256": source_fingerprint(entries)}
        if path.is_file() and read_json(path) != fingerprint:
            raise FdrdError(
                f"{self.domain}: the source yields other items than when the interrupted build in "
                f"{self.options.out} started (data root changed?); rerun with --overwrite"
            )
        write_json_atomic(path, fingerprint)

    # Each stage is a method, so a test can interrupt the build between two stages.
    def _normalize(self, items: list[SourceItem], task: Any) -> list[Staged]:
        return normalize_domain(self.domain, items, self.stage_dir, self.options, self.progress, task)

    def _annotate(self, staged: list[Staged], task: Any) -> None:
        self.captions = annotate_domain(
            self.domain, staged, self.stage_dir, self.source, self.options, self.progress, task
        )

    def _dedup(self, staged: list[Staged], task: Any) -> None:
        self.progress.update(task, description=f"{self.domain}: dedup", total=None)
        self.duplicates = dedup(self.domain, staged, self.stage_dir, self.options.phash_threshold)

    def _write(self, staged: list[Staged], task: Any) -> dict[str, Any]:
        result = write_domain(
            self.domain, staged, self.stage_dir, self.options.out, self.options.shard_bytes, self.progress, task
        )
        return {
            **result,
            "leaks": self.duplicates.leaks,
            "captions": self.captions.report,
            "captioner": self.captions.captioner,
        }
