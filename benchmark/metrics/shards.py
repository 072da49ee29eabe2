"""Ranking split over processes: a shard is a contiguous run of a backend's blocks (tiles) of image rows.

Each shard computes exactly the tiles one process computes for its rows, counts them for its images (whole)
and for every caption (partial); the integer counts summed over the shards are the single-process counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowShard:
    """Shard `index` of `count`; RowShard(0, 1) is the whole table."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def blocks(self, num_blocks: int) -> range:
        """This shard's blocks among `num_blocks` (shards of equal size within one block)."""
        return range(self.index * num_blocks // self.count, (self.index + 1) * num_blocks // self.count)


WHOLE = RowShard(0, 1)
