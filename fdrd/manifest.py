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

from fdrd.errors import FdrdError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "fdrd-build"  # the `format` field: tells a manifest of ours from any other JSON

# Top-level fields of manifest.json (written by builders/pipeline.py, read by validate and info):
#   format, schema_version, content_hash, rows, build (the config that names the build),
#   versions (fdrd, datasets, pyarrow, pillow, imagehash, python), created (UTC, informative only),
#   shards [{path, domain, split, rows, bytes, sha256}],
#   domains {domain: {splits: {split: {images, categories, rejected, near_duplicates, leaks}},
#            exact_duplicates, leaks [{test_id, other_id, other_split, distance}], captions {...},
#            captioner {...}}},
#   rejected {count, file}.

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


def environment_versions() -> dict[str, str]:
    """Versions of what shaped the bytes of a build, recorded in its manifest."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("fdrd", "datasets", "pyarrow", "pillow", "imagehash"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


class ManifestMissing(FdrdError, FileNotFoundError):
    """No manifest.json: not a (finished) build. Still a FileNotFoundError for older callers."""


class ManifestUnreadable(FdrdError, ValueError):
    """manifest.json is not valid JSON. Still a ValueError for older callers."""


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestMissing(
            f"{path}: no manifest; is this a directory written by `fdrd build` (and did the build finish)?"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ManifestUnreadable(f"{path}: not valid JSON ({error}); the build may have been interrupted") from error


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file written by write_json_atomic; FdrdError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FdrdError(f"{path}: not valid JSON ({error}); delete it or rebuild with --overwrite") from error


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that a reader (or a crash) sees either the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    write_json_atomic(path, dict(manifest))
    return path
