"""manifest.json: what a built FDRD directory holds, and the content hash that names it.

The content hash depends on the rows only (their ids, text columns and image sha256), never on shard
boundaries, Parquet writer versions or timestamps, so an interrupted-then-resumed build and an
uninterrupted one get the same hash, and results files can cite the data they were computed on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"

# Columns that enter a row's digest. `image` is represented by its `sha256` column, which the
# validator checks against the stored bytes.
DIGEST_COLUMNS = (
    "id", "domain", "split", "category", "category_id", "meta_category", "width", "height",
    "caption", "attributes", "negatives", "source", "sha256", "phash",
)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def row_digest(row: Mapping[str, Any]) -> str:
    """Digest of one row's content, canonical JSON of DIGEST_COLUMNS."""
    payload = {column: row.get(column) for column in DIGEST_COLUMNS}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(row_digests: Iterable[str]) -> str:
    """Order-free hash of a dataset: sha256 over its sorted row digests."""
    digest = hashlib.sha256()
    for item in sorted(row_digests):
        digest.update(item.encode())
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is this a directory written by `fdrd build`?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); the build may have been interrupted") from error


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON so that a reader (or a crash) sees either the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    write_json_atomic(path, dict(manifest))
    return path
