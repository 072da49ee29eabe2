"""Parquet shards of FDRD rows: `<out>/<domain>/<split>-NNNNN-of-MMMMM.parquet`.

Shards carry fdrd.schema.arrow_schema() (with its `huggingface` metadata, so `datasets` decodes the
image column), row groups of about 100 rows (a reader can fetch a few rows without a whole shard)
and a page index. Every file is written under a temporary name and renamed into place, so a crash
leaves either no shard or a whole one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fdrd.schema import arrow_schema

ROW_GROUP_SIZE = 100
# About what the Hub's own Parquet conversion aims for: big enough to be few files, small enough
# to download and checksum one at a time.
DEFAULT_SHARD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ShardPlan:
    split: str
    index: int
    count: int
    start: int  # first row (in the split's row order)
    stop: int  # one past the last row

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def plan_shards(split: str, image_bytes: Sequence[int], target_bytes: int = DEFAULT_SHARD_BYTES) -> list[ShardPlan]:
    """Cut a split's rows (given their image sizes, in row order) into consecutive shards of about
    `target_bytes` of images each; at least one row per shard, and one (empty) shard for no rows so
    that every built split has a file."""
    bounds = [0]
    running = 0
    for position, size in enumerate(image_bytes):
        if running and running + size > target_bytes:
            bounds.append(position)
            running = 0
        running += size
    bounds.append(len(image_bytes))
    pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
    return [ShardPlan(split, k, len(pairs), start, stop) for k, (start, stop) in enumerate(pairs)]


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=arrow_schema())


def write_parquet_atomic(path: str | os.PathLike, table: pa.Table) -> None:
    """Write `table` to `path` with FDRD's Parquet settings; readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, table.schema, write_page_index=True, compression="zstd") as writer:
            writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_shard(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    write_parquet_atomic(path, rows_to_table(rows))
