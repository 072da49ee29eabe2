"""A source item between stages (Staged: its normalized facts, bytes left on disk), a lazy view of
staged image bytes (StagedImages), and the FDRD row a staged item becomes (fdrd_row)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from builders.sources.base import SourceItem


@dataclass
class Staged:
    """What the build knows about one source item after normalization (bytes stay on disk)."""

    item: SourceItem
    index: int  # position in the domain's item list
    chunk: int
    reason: str | None = None
    stage: str = "normalize"
    width: int = 0
    height: int = 0
    sha256: str = ""
    pixel_hash: str = ""
    phash: str = ""
    jpeg_bytes: int = 0
    id: str = ""


def chunk_path(stage_dir: Path, chunk: int) -> Path:
    return stage_dir / f"norm-{chunk:05d}.parquet"


class StagedImages(Sequence[bytes]):
    """The stored bytes of staged items, read from their chunk files on access (one chunk kept),
    so the caption stage gets a list-like view without every image of a domain in memory."""

    def __init__(self, stage_dir: Path, members: list[Staged]):
        self.stage_dir = stage_dir
        self.members = members
        self.cached_chunk: int | None = None
        self.cached: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, position):  # type: ignore[override]
        if isinstance(position, slice):
            return [self[k] for k in range(*position.indices(len(self)))]
        member = self.members[position]
        if member.chunk != self.cached_chunk:
            table = pq.read_table(chunk_path(self.stage_dir, member.chunk), columns=["item", "jpeg"])
            self.cached = dict(zip(table["item"].to_pylist(), table["jpeg"].to_pylist(), strict=True))
            self.cached_chunk = member.chunk
        return self.cached[member.index]


def fdrd_row(domain: str, entry: Staged, jpeg: bytes | None) -> dict[str, Any]:
    """The FDRD record of a staged item (`jpeg` None when only its annotations are checked)."""
    item = entry.item
    return {
        "id": entry.id,
        "domain": domain,
        "split": item.split,
        "category": item.category,
        "category_id": item.category_id,
        "meta_category": item.meta_category,
        "image": {"bytes": jpeg, "path": None},
        "width": entry.width,
        "height": entry.height,
        # Sources without captions are written empty-but-typed, never null.
        "caption": item.caption or "",
        "attributes": item.attributes or [],
        "negatives": item.negatives or [],
        "source": {"dataset": item.dataset, "original": item.original, "license": item.license},
        "sha256": entry.sha256,
        "phash": entry.phash,
    }
