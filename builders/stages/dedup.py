"""Dedup stage: exact duplicates (same stored pixels, or the same record id) become rejections of
every copy but the first in KEEP_ORDER; records whose annotations break the schema are rejected;
near duplicates are counted within a split, and across test and a training split are leaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.normalize import confirmed_near_duplicates, first_occurrences
from builders.stages.options import KEEP_ORDER, TRAINING_SPLITS
from builders.stages.staged import Staged, StagedImages, fdrd_row
from fdrd.schema import validate_record


@dataclass
class DedupOutcome:
    near_duplicates: dict[str, set[str]] = field(default_factory=dict)  # split -> ids of later near copies
    leaks: list[dict[str, Any]] = field(default_factory=list)  # test image near a training image


def dedup(domain: str, staged: list[Staged], stage_dir: Path, phash_threshold: int) -> DedupOutcome:
    """Mark duplicates and invalid records in `staged` (reason and stage) and report near duplicates."""
    outcome = DedupOutcome()
    alive = [s for s in staged if s.reason is None]
    rank = {split: k for k, split in enumerate(KEEP_ORDER)}
    alive.sort(key=lambda s: rank.get(s.item.split, len(KEEP_ORDER)))  # stable: source order within a split
    for later, first in first_occurrences([s.id for s in alive]).items():
        alive[later].reason = f"duplicate record id {alive[first].id} (the same source entry listed twice)"
        alive[later].stage = "dedup"
    alive = [s for s in alive if s.reason is None]
    for later, first in first_occurrences([s.pixel_hash for s in alive]).items():
        alive[later].reason = f"exact duplicate of {alive[first].id} ({alive[first].item.split})"
        alive[later].stage = "dedup"
    alive = [s for s in alive if s.reason is None]
    for entry in alive:
        problems = validate_record(fdrd_row(domain, entry, None))
        if problems:
            entry.reason, entry.stage = "invalid annotations: " + "; ".join(problems), "annotations"
    alive = [s for s in alive if s.reason is None]
    pairs = confirmed_near_duplicates(
        [s.phash for s in alive],
        phash_threshold,
        lambda indices: dict(zip(indices, StagedImages(stage_dir, [alive[i] for i in indices]), strict=True)),
    )
    for i, j, distance in pairs:
        a, b = alive[i], alive[j]
        if a.item.split == b.item.split:
            outcome.near_duplicates.setdefault(a.item.split, set()).add(b.id)
        elif "test" in (a.item.split, b.item.split) and {a.item.split, b.item.split} & set(TRAINING_SPLITS):
            test, other = (a, b) if a.item.split == "test" else (b, a)
            outcome.leaks.append(
                {"test_id": test.id, "other_id": other.id, "other_split": other.item.split, "distance": distance}
            )
    outcome.leaks.sort(key=lambda leak: (leak["test_id"], leak["other_id"]))
    return outcome
