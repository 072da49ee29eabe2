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

from fdrd.dataset_card import card_problems
from fdrd.errors import FdrdError
from fdrd.untrusted import contained_path, containment_problem, parse_json, read_json_file

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
    """manifest.json is not valid JSON, or not shaped like a manifest. Still a ValueError for older callers."""


# The type of each top-level field a build writes (read_manifest checks those present), of each shard
# entry's fields (all required), and the fields every finished build has (read_build_manifest).
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "schema_version": (str, int), "content_hash": str, "rows": int, "build": dict,
    "versions": dict, "created": str, "shards": list, "domains": dict, "rejected": dict,
}
SHARD_FIELD_TYPES: dict[str, type] = {"path": str, "domain": str, "split": str, "rows": int, "bytes": int, "sha256": str}
BUILD_FIELDS = ("format", "content_hash", "rows", "shards", "domains")
_REBUILD = "rebuild the dataset with `fdrd build` (or restore manifest.json)"


def _type_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # JSON true/false are Python bools, which are ints too; a count is never a bool.
    return isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (str, int)))


def manifest_shape_problem(manifest: Any) -> str | None:
    """Why `manifest` is not shaped like a build manifest (wrong types, malformed shard entries), or None.
    Missing top-level fields are allowed here (see read_build_manifest)."""
    if not isinstance(manifest, dict):
        return f"top level is a JSON {type(manifest).__name__}, not an object"
    for name, kind in FIELD_TYPES.items():
        if name in manifest and not _is(manifest[name], kind):
            return f"field {name!r} is {type(manifest[name]).__name__}, expected {_type_name(kind)}"
    for index, shard in enumerate(manifest.get("shards", [])):
        if not isinstance(shard, dict):
            return f"shards[{index}] is {type(shard).__name__}, expected an object"
        for name, kind in SHARD_FIELD_TYPES.items():
            if name not in shard:
                return f"shards[{index}] has no {name!r}"
            if not _is(shard[name], kind):
                return f"shards[{index}].{name} is {type(shard[name]).__name__}, expected {kind.__name__}"
    for domain, info in manifest.get("domains", {}).items():
        splits = info.get("splits", {}) if isinstance(info, dict) else None
        if not isinstance(splits, dict) or not all(isinstance(c, dict) for c in splits.values()):
            return f"domains.{domain} is not an object with a 'splits' object of per-split counts"
    rejected = manifest.get("rejected", {})
    if not _is(rejected.get("count", 0), int):
        return "rejected.count is not an integer"
    return None


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """manifest.json of `directory`; ManifestMissing / ManifestUnreadable (FdrdErrors) say what is wrong."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestMissing(
            f"{path}: no manifest; is this a directory written by `fdrd build` (and did the build finish)?"
        )
    try:
        manifest = parse_json(path.read_bytes().decode("utf-8", errors="replace"), str(path),
                              f"the build may have been interrupted; {_REBUILD}")
    except FdrdError as error:
        raise ManifestUnreadable(str(error)) from None
    problem = manifest_shape_problem(manifest)
    if problem is not None:
        raise ManifestUnreadable(f"{path}: not a build manifest ({problem}); {_REBUILD}")
    return manifest


def read_build_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """read_manifest, also requiring what every finished `fdrd build` writes (its format and fields)."""
    manifest = read_manifest(directory)
    path = Path(directory) / MANIFEST_NAME
    if manifest.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise ManifestUnreadable(
            f"{path}: format is {manifest['format']!r}, not {MANIFEST_FORMAT!r}; this folder was not written by "
            "`fdrd build` (a crawl folder is a build input: `fdrd build --source urls --data-root DIR`)"
        )
    missing = [name for name in BUILD_FIELDS if name not in manifest]
    if missing:
        raise ManifestUnreadable(f"{path}: no {', '.join(missing)}; not a finished build's manifest; {_REBUILD}")
    return manifest


def shard_file(directory: str | os.PathLike, shard: Mapping[str, Any]) -> Path:
    """The file of a manifest's shard entry, which must lie inside `directory` (FdrdError otherwise)."""
    return contained_path(directory, shard["path"], f"{Path(directory) / MANIFEST_NAME}: shard", _REBUILD)


def verify_shards(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> list[str]:
    """Problems of the shard files against the manifest's list: path inside the folder, present, size and
    sha256 as listed. Cheap next to training (one read of each shard); empty when all hold."""
    directory = Path(directory)
    problems = []
    for shard in manifest.get("shards", []):
        name = shard["path"]
        problem = containment_problem(directory, name)
        if problem is not None:
            problems.append(f"{str(name)[:200]}: shard path {problem}; manifest.json may only list files inside {directory}")
            continue
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed in manifest.json but missing")
            continue
        size = path.stat().st_size
        if size != shard["bytes"]:
            problems.append(f"{name}: {size} bytes, manifest says {shard['bytes']}")
        if sha256_file(path) != shard["sha256"]:
            problems.append(f"{name}: sha256 differs from manifest.json (file changed after the build)")
    return problems


# verify_build results by the folder's file signature: bench loads several splits of one folder and
# must not hash every shard again for each, while any change to a file changes its signature.
_VERIFIED: dict[tuple, list[str]] = {}


def _signature(directory: Path) -> tuple:
    def stat(path: Path) -> tuple:
        try:
            info = path.stat()
        except OSError:
            return (path.name, None)
        return (path.relative_to(directory).as_posix(), info.st_size, info.st_mtime_ns, info.st_ino)

    files = [directory / MANIFEST_NAME, directory / "README.md", *sorted(directory.rglob("*.parquet")),
             *sorted(directory.glob("*.py"))]
    return (str(directory.resolve()), *(stat(path) for path in files))


def script_problems(directory: str | os.PathLike) -> list[str]:
    """`datasets` before 4.0 runs a Python file in a dataset folder as its loading script: a build writes none."""
    return [f"{path.name}: a Python file in the dataset folder, which older `datasets` would run as a loading "
            "script; a build writes none, delete it" for path in sorted(Path(directory).glob("*.py"))]


def verify_build(directory: str | os.PathLike, manifest: Mapping[str, Any], *, reuse: bool = False) -> list[str]:
    """verify_shards, plus README.md's configs reading exactly the listed shards (fdrd/dataset_card.py):
    what a reader of the folder needs before citing the manifest's content hash. `reuse`: skip the work
    when this process already verified the folder and no file of it changed since."""
    directory = Path(directory)
    key = _signature(directory) if reuse else None
    if key is not None and key in _VERIFIED:
        return list(_VERIFIED[key])
    problems = verify_shards(directory, manifest) + card_problems(directory, manifest) + script_problems(directory)
    if key is not None:
        _VERIFIED[key] = list(problems)
    return problems


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file written by write_json_atomic; FdrdError naming the file when it is not JSON."""
    return read_json_file(path, "delete it or rebuild with --overwrite")


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
