"""Parquet shards of FDRD rows: `<out>/<domain>/<split>-NNNNN-of-MMMMM.parquet`.

Shards carry fdrd.schema.arrow_schema() (with its `huggingface` metadata, so `datasets` decodes the
image column, spelled so that `datasets` 3.x reads it too: see `portable_schema`), row groups of about 100 rows (a reader can fetch a few rows without a whole shard)
and a page index. Every file is written under a temporary name and renamed into place, so a crash
leaves either no shard or a whole one.
"""

from __future__ import annotations

import json
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


def _portable(feature: Any) -> Any:
    """A feature's JSON as every `datasets` from 3.0 on reads it: `datasets` 4 writes lists as
    {"_type": "List", "feature": ...}, a type 3.x does not know; the older spellings (a JSON list
    around the item for a list of any length, "Sequence" with a length) mean the same to both."""
    if isinstance(feature, dict):
        if feature.get("_type") == "List":
            item = _portable(feature["feature"])
            length = feature.get("length", -1)
            return [item] if length == -1 else {"feature": item, "length": length, "_type": "Sequence"}
        return {key: _portable(value) for key, value in feature.items()}
    if isinstance(feature, list):
        return [_portable(item) for item in feature]
    return feature


def portable_schema() -> pa.Schema:
    """fdrd.schema.arrow_schema() with its `huggingface` features metadata in the portable spelling."""
    schema = arrow_schema()
    metadata = dict(schema.metadata or {})
    info = json.loads(metadata[b"huggingface"])
    info["info"]["features"] = _portable(info["info"]["features"])
    metadata[b"huggingface"] = json.dumps(info).encode()
    return schema.with_metadata(metadata)


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=portable_schema())


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


def write_shard(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write one shard; returns the Arrow size of its rows in bytes (the card's `num_bytes`)."""
    table = rows_to_table(rows)
    write_parquet_atomic(path, table)
    return table.nbytes
