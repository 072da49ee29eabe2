"""Write stage: the kept rows of a domain as parquet shards under <out>/<domain>/ (planned by stored
size, each image read once from staging), and the per-split counts the manifest reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import Progress

from builders.report import RejectedInput
from builders.stages.out_dir import PLANNED_NAME
from builders.stages.staged import Staged, StagedImages, fdrd_row
from builders.writer import plan_shards, write_shard
from fdrd.manifest import row_digest, sha256_file, write_json_atomic


def write_domain(
    domain: str, staged: list[Staged], stage_dir: Path, out: Path, shard_bytes: int, progress: Progress, task: Any
) -> dict[str, Any]:
    """Write the shards of `domain`; returns their manifest entries, row digests and rows per split."""
    kept = [s for s in staged if s.reason is None]
    by_split: dict[str, list[Staged]] = {}
    for entry in kept:
        by_split.setdefault(entry.item.split, []).append(entry)
    split_dir = out / domain
    plans = {split: plan_shards(split, [e.jpeg_bytes for e in rows], shard_bytes) for split, rows in by_split.items()}
    wanted = {p.name for shard_plans in plans.values() for p in shard_plans}
    # Recorded before the first file exists: --overwrite deletes only shards a build listed (out_dir.py).
    write_json_atomic(stage_dir / PLANNED_NAME, sorted(f"{domain}/{name}" for name in wanted))
    split_dir.mkdir(parents=True, exist_ok=True)
    for stale in split_dir.iterdir():
        if stale.name not in wanted:  # an earlier interrupted writer's temp file
            stale.unlink()
    progress.update(task, description=f"{domain}: write", total=len(kept), completed=0)
    shards, digests = [], []
    for split, shard_plans in plans.items():
        for plan in shard_plans:
            members = by_split[split][plan.start : plan.stop]
            images = StagedImages(stage_dir, members)  # rows come in chunk order: each chunk read once
            rows = [fdrd_row(domain, m, jpeg) for m, jpeg in zip(members, images, strict=True)]
            path = split_dir / plan.name
            arrow_bytes = write_shard(path, rows)
            digests.extend(row_digest(r) for r in rows)
            shards.append(
                {
                    "path": f"{domain}/{plan.name}",
                    "domain": domain,
                    "split": split,
                    "rows": len(rows),
                    "bytes": path.stat().st_size,
                    "num_bytes": arrow_bytes,  # the rows' size in Arrow, as `datasets` counts a split
                    "sha256": sha256_file(path),
                }
            )
            progress.advance(task, len(rows))
    return {
        "shards": shards,
        "row_digests": digests,
        "split_rows": {split: len(rows) for split, rows in by_split.items()},
        "rows_with_attributes": sum(1 for entry in kept if entry.item.attributes),
        "licenses": sorted({entry.item.license for entry in kept if entry.item.license}),
    }


def split_counts(
    splits: tuple[str, ...],
    staged: list[Staged],
    rejected: list[RejectedInput],
    near_duplicates: dict[str, set[str]],
    leaks: list[dict[str, Any]],
) -> dict[str, Any]:
    """Images, categories, rejections, near duplicates and leaks per split asked for (a split with
    neither rows nor rejections is left out), and the domain's exact duplicates."""
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        kept = [s for s in staged if s.reason is None and s.item.split == split]
        rejected_here = sum(1 for r in rejected if r.split == split)
        if not kept and not rejected_here:
            continue
        counts[split] = {
            "images": len(kept),
            "categories": len({s.item.category for s in kept}),
            "rejected": rejected_here,
            "near_duplicates": len(near_duplicates.get(split, ())),
            "leaks": len({leak["test_id"] for leak in leaks}) if split == "test" else 0,
        }
    return {
        "splits": counts,
        "exact_duplicates": sum(1 for s in staged if s.reason and s.reason.startswith("exact duplicate")),
    }
