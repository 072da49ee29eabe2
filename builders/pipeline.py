"""The build: source -> normalize -> captions -> dedup -> shards, per domain, resumable.

Layout of work in progress (all under `<out>/.fdrd-build/`, removed once manifest.json is written):
  config.json                  the build identity; a rerun with other settings is refused
  <domain>/items.json          fingerprint of the source's item sequence (must match on resume)
  <domain>/norm-NNNNN.parquet  normalized chunk: stored bytes + hashes, or the rejection reason
  <domain>/ann.json            caption-stage output for the domain
  <domain>/done.json           the finished domain: shards, counts, row digests, rejections
The running build holds an flock on <out> itself, so a second build into it is refused.
Every file is written under a temporary name and renamed, so existence means complete: a build
killed at any moment (SIGKILL included) and rerun with the same arguments redoes only missing
units and ends with the same content hash, because every step is deterministic in the item order.
"""

from __future__ import annotations

import concurrent.futures as futures
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from builders.card import CARD_NAME, write_card
from builders.normalize import (
    MAX_PHASH_THRESHOLD,
    ImageRejected,
    NormalizeOptions,
    confirmed_near_duplicates,
    first_occurrences,
    normalize_image,
    read_image_bytes,
)
from builders.report import REJECTED_NAME, RejectedInput, write_rejected
from builders.sources.base import Rejection, SourceItem
from builders.writer import DEFAULT_SHARD_BYTES, plan_shards, write_parquet_atomic, write_shard
from fdrd.errors import FdrdError
from fdrd.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    content_hash,
    environment_versions,
    read_json,
    row_digest,
    sha256_file,
    write_json_atomic,
    write_manifest,
)
from fdrd.schema import SCHEMA_VERSION, SPLIT_CHOICES, SPLITS, record_id, validate_record

STAGING = ".fdrd-build"
CHUNK_SIZE = 64  # items per normalization unit: small enough for a smooth bar, big enough to amortise IPC
# Splits a test image must not near-duplicate; order = which copy of an exact duplicate is kept.
TRAINING_SPLITS = ("train", "val", "pretrain")
KEEP_ORDER = ("train", "val", "pretrain", "test")
DEFAULT_PHASH_THRESHOLD = 4  # of 64 bits: re-encodes and resizes land within 0-2, unrelated photos far above


@dataclass(frozen=True)
class CaptionSettings:
    """`fdrd build`'s caption options, turned into builders.captions.stage.CaptionOptions lazily."""

    captioner: str = "auto"
    captions_path: str | None = None
    model: str | None = None
    prompt: str | None = None
    trust_remote_code: bool = False
    gpus: int | None = None
    batch_size: int | None = None
    negatives: int = 4


@dataclass(frozen=True)
class BuildOptions:
    out: Path = Path("fdrd-data")
    source: str = "auto"
    data_root: Path | None = None
    domains: tuple[str, ...] | None = None
    split: str = "all"
    per_category: int | None = None
    seed: int = 0
    workers: int = 1
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD
    shard_bytes: int = DEFAULT_SHARD_BYTES
    captions: CaptionSettings = field(default_factory=CaptionSettings)
    caption_cache_dir: Path | None = None  # default: <out>/.fdrd-build/caption-cache
    overwrite: bool = False


def requested_splits(split: str) -> tuple[str, ...]:
    """`--split` to the splits asked of the source; `all` includes `pretrain`, which only the
    synthetic source has (others yield nothing for it)."""
    if split not in SPLIT_CHOICES:
        raise FdrdError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    return SPLITS if split == "all" else (split,)


def build_identity(options: BuildOptions, source_name: str, domains: Sequence[str]) -> dict[str, Any]:
    """Everything that decides the content of a build (workers and paths of caches do not)."""
    captions = asdict(options.captions)
    captions.pop("gpus")
    captions.pop("batch_size")
    return {
        "source": source_name,
        "data_root": str(Path(options.data_root).expanduser().resolve()) if options.data_root else None,
        "domains": list(domains),
        "splits": list(requested_splits(options.split)),
        "per_category": options.per_category,
        "seed": options.seed,
        "normalize": asdict(options.normalize),
        "phash_threshold": options.phash_threshold,
        "shard_bytes": options.shard_bytes,
        "captions": captions,
        "chunk_size": CHUNK_SIZE,
        "schema_version": SCHEMA_VERSION,
    }


# ---------------------------------------------------------------- output directory


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "unknown"


def _is_ours(path: Path) -> bool:
    """Files and folders an FDRD build writes at the top of its output directory."""
    if path.name in (MANIFEST_NAME, CARD_NAME, REJECTED_NAME, STAGING):
        return True
    if path.is_dir():
        return all(p.suffix == ".parquet" or p.name.startswith(".") for p in path.iterdir())
    return path.name.startswith(f".{MANIFEST_NAME}.tmp") or path.name.startswith(f".{REJECTED_NAME}.tmp")


def _holds_build_files(out: Path) -> bool:
    """Anything beyond an empty staging folder (a build killed before writing its config holds just that)."""
    for path in out.iterdir():
        if path.name != STAGING:
            return True
        if any(not p.name.startswith(".") for p in path.iterdir()):
            return True
    return False


def _clear_build(out: Path) -> None:
    # The manifest goes first: a half-cleared directory must never look like a finished build.
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for path in sorted(out.iterdir()):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def prepare_out_dir(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Make `out` ready for this build. Returns the manifest when `out` already holds exactly this
    finished build; refuses (FdrdError) a directory holding something else unless `overwrite`.
    Called under BuildLock, which has already checked and created the directory `out`."""
    strangers = [p.name for p in out.iterdir() if not _is_ours(p)]
    if strangers:
        raise FdrdError(
            f"--out {out} holds files that no FDRD build writes ({', '.join(strangers[:5])}); "
            "choose an empty or new directory (--overwrite only replaces FDRD builds)"
        )
    manifest_path = out / MANIFEST_NAME
    config_path = out / STAGING / "config.json"
    previous = None
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text()).get("build")
        except (json.JSONDecodeError, AttributeError):
            previous = {"unreadable manifest": True}
    elif config_path.is_file():
        previous = read_json(config_path)
    elif _holds_build_files(out):
        previous = {"partial build without a config": True}
    if previous is not None and previous != identity:
        if not overwrite:
            raise FdrdError(
                f"--out {out} holds a different build ({_differences(previous, identity)}); "
                "pass --overwrite to replace it, or choose another --out"
            )
        _clear_build(out)
    elif previous is not None and overwrite:
        _clear_build(out)
    elif manifest_path.is_file():
        shutil.rmtree(out / STAGING, ignore_errors=True)  # killed while tidying up: finish the tidy-up
        return read_json(manifest_path)
    (out / STAGING).mkdir(exist_ok=True)
    if not config_path.is_file():
        write_json_atomic(config_path, identity)
    return None


# Lock descriptors of this process; forked workers close their copies (see _close_inherited_locks).
_HELD_LOCK_FDS: set[int] = set()


class BuildLock:
    """One build per output directory at a time: an flock on the directory itself, taken before the
    directory is inspected or cleared; the kernel drops it if the process dies."""

    def __init__(self, out: Path):
        self.out = out

    def __enter__(self) -> BuildLock:
        self.out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise FdrdError(f"another `fdrd build` is writing to {self.out}; wait for it to finish") from None
        _HELD_LOCK_FDS.add(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        _HELD_LOCK_FDS.discard(self.fd)
        os.close(self.fd)


def _close_inherited_locks() -> None:
    """Pool initializer: a forked worker shares the parent's lock; if the parent is killed, an
    orphaned worker must not keep the output directory locked against the rerun."""
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


# ---------------------------------------------------------------- normalization units

NORM_SCHEMA = pa.schema(
    [
        ("item", pa.int64()),
        ("reason", pa.string()),
        ("jpeg", pa.binary()),
        ("jpeg_bytes", pa.int64()),  # len(jpeg), so that planning shards reads no image bytes
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("pixel_hash", pa.string()),
        ("phash", pa.string()),
    ]
)


def normalize_chunk(
    path: str, items: list[tuple[int, bytes | None, str | None]], options: NormalizeOptions
) -> int:
    """Normalize (item index, bytes, path) triples and write them as one staged chunk; runs in a
    worker process. Returns how many items it handled."""
    rows = []
    for index, data, image_path in items:
        try:
            if data is None:
                data = read_image_bytes(image_path) if image_path else b""
            image = normalize_image(data, options)
        except ImageRejected as rejected:
            rows.append({"item": index, "reason": rejected.reason})
            continue
        rows.append(
            {
                "item": index,
                "reason": None,
                "jpeg": image.jpeg,
                "jpeg_bytes": len(image.jpeg),
                "width": image.width,
                "height": image.height,
                "sha256": image.sha256,
                "pixel_hash": image.pixel_hash,
                "phash": image.phash,
            }
        )
    write_parquet_atomic(path, pa.Table.from_pylist(rows, schema=NORM_SCHEMA))
    return len(items)


def _payload(items: Sequence[tuple[int, SourceItem]]) -> list[tuple[int, bytes | None, str | None]]:
    return [(index, item.image_bytes, item.image_path) for index, item in items]


def _run_normalization(
    jobs: list[tuple[str, list[tuple[int, SourceItem]]]],
    options: NormalizeOptions,
    workers: int,
    advance: Callable[[int], None],
) -> None:
    """Write every pending chunk; in this process for one worker, else in a process pool with a
    bounded number of chunks in flight (source bytes are not all pickled at once)."""
    if workers <= 1:
        for path, chunk in jobs:
            advance(normalize_chunk(path, _payload(chunk), options))
        return
    # fork: workers start at once with everything imported and do not re-run the caller's __main__
    # (spawn/forkserver would, breaking scripts without a main guard). The progress bar's thread
    # holds no lock a worker needs: workers only decode, encode and write their own chunk file.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pending = list(reversed(jobs))
    with futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_close_inherited_locks
    ) as pool:
        running: set[futures.Future[int]] = set()
        while pending or running:
            while pending and len(running) < 2 * workers:
                path, chunk = pending.pop()
                running.add(pool.submit(normalize_chunk, path, _payload(chunk), options))
            done, running = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                advance(future.result())


# ---------------------------------------------------------------- one domain


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


def _fingerprint(entries: Sequence[SourceItem | Rejection]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        kind = "item" if isinstance(entry, SourceItem) else "rejection"
        digest.update(json.dumps([kind, entry.domain, entry.split, entry.original]).encode())
    return digest.hexdigest()


def _caption_stage(settings: CaptionSettings, seed: int, data_root: Path | None):
    """(annotate, CaptionOptions instance) from builders.captions.stage, imported only when used."""
    try:
        from builders.captions.stage import CaptionOptions, annotate
    except ImportError as error:
        raise FdrdError(
            f"the caption stage (builders.captions.stage) cannot be imported ({error}); "
            "build with --captioner none to keep the source's own captions"
        ) from error
    # Unset options keep the stage's own defaults (its default model, prompt, batch size).
    given = {
        "captioner": settings.captioner,
        "captions_path": settings.captions_path,
        "model": settings.model,
        "prompt": settings.prompt,
        "trust_remote_code": settings.trust_remote_code,
        "gpus": settings.gpus,
        "batch_size": settings.batch_size,
        "negatives": settings.negatives,
        "seed": seed,
        "data_root": str(data_root) if data_root is not None else None,
    }
    options = CaptionOptions(**{k: v for k, v in given.items() if v is not None})
    return annotate, options


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
            table = pq.read_table(self.stage_dir / f"norm-{member.chunk:05d}.parquet", columns=["item", "jpeg"])
            self.cached = dict(zip(table["item"].to_pylist(), table["jpeg"].to_pylist(), strict=True))
            self.cached_chunk = member.chunk
        return self.cached[member.index]


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
        self.caption_report: dict[str, int] = {}
        self.captioner: dict[str, Any] = {}
        self.caption_rejections: list[RejectedInput] = []  # released records with no source item
        self.near_duplicates: dict[str, set[str]] = {}
        self.leaks: list[dict[str, Any]] = []

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
        rejected += self.caption_rejections
        result = self._write(staged, task)
        result["rejected"] = [r.to_json() for r in rejected]
        result["counts"] = self._counts(staged, rejected)
        write_json_atomic(done_path, result)
        self.progress.update(task, description=f"{self.domain}: done")
        return result

    def _check_fingerprint(self, entries: list[SourceItem | Rejection]) -> None:
        path = self.stage_dir / "items.json"
        fingerprint = {"count": len(entries), "sha256": _fingerprint(entries)}
        if path.is_file() and read_json(path) != fingerprint:
            raise FdrdError(
                f"{self.domain}: the source yields other items than when the interrupted build in "
                f"{self.options.out} started (data root changed?); rerun with --overwrite"
            )
        write_json_atomic(path, fingerprint)

    # -- normalize
    def _normalize(self, items: list[SourceItem], task: Any) -> list[Staged]:
        indexed = list(enumerate(items))
        chunks = [indexed[k : k + CHUNK_SIZE] for k in range(0, len(items), CHUNK_SIZE)]
        paths = [self.stage_dir / f"norm-{k:05d}.parquet" for k in range(len(chunks))]
        jobs = [(str(p), c) for p, c in zip(paths, chunks, strict=True) if not p.is_file()]
        finished = len(items) - sum(len(c) for _, c in jobs)
        self.progress.update(task, description=f"{self.domain}: normalize", total=len(items), completed=finished)
        _run_normalization(
            jobs, self.options.normalize, self.options.workers, lambda n: self.progress.advance(task, n)
        )
        staged: list[Staged] = []
        columns = ["item", "reason", "width", "height", "sha256", "pixel_hash", "phash", "jpeg_bytes"]
        for k, path in enumerate(paths):
            for row in pq.read_table(path, columns=columns).to_pylist():
                index = row.pop("item")
                row = {key: value for key, value in row.items() if value is not None}  # rejected: reason only
                staged.append(Staged(item=items[index], index=index, chunk=k, **row))
        for entry in staged:
            entry.id = record_id(self.domain, entry.item.original)
        return staged

    # -- captions
    def _annotate(self, staged: list[Staged], task: Any) -> None:
        """One caption-stage call for the whole domain (the stage matches released records and
        spots ambiguous file names across all items of a domain). Its result is staged in
        ann.json; an interrupted call is redone, cheaply, from the stage's cache in staging."""
        settings = self.options.captions
        if settings.captioner == "none":
            return
        members = [entry for entry in staged if entry.reason is None]
        path = self.stage_dir / "ann.json"
        self.progress.update(task, description=f"{self.domain}: captions", total=len(members), completed=0)
        if not path.is_file():
            annotate, caption_options = _caption_stage(settings, self.options.seed, self.options.data_root)
            cache_dir = self.options.caption_cache_dir or self.options.out / STAGING / "caption-cache"
            cache_dir.mkdir(parents=True, exist_ok=True)
            result = annotate(
                [m.item for m in members],
                StagedImages(self.stage_dir, members),
                [m.sha256 for m in members],
                self.source.taxonomy(self.domain),
                caption_options,
                cache_dir,
            )
            write_json_atomic(
                path,
                {
                    # Per-record facts of released caption files come once per domain (see AnnotationResult).
                    "report": {**result.report, **result.record_report},
                    "captioner": result.captioner,
                    "rejected": {str(k): v for k, v in result.rejected.items()},
                    "record_rejections": [
                        RejectedInput(r.domain, r.split, r.original, r.reason, "captions").to_json()
                        for r in result.record_rejections
                    ],
                    "annotations": [
                        {"caption": m.item.caption, "attributes": m.item.attributes, "negatives": m.item.negatives}
                        for m in members
                    ],
                },
            )
        saved = read_json(path)
        for k, member in enumerate(members):
            annotation = saved["annotations"][k]
            member.item.caption = annotation["caption"]
            member.item.attributes = annotation["attributes"]
            member.item.negatives = annotation["negatives"]
            if str(k) in saved["rejected"]:
                member.reason, member.stage = saved["rejected"][str(k)], "captions"
        self.caption_report = saved["report"]
        self.captioner = saved["captioner"]
        self.caption_rejections = [RejectedInput(**r) for r in saved["record_rejections"]]
        self.progress.update(task, completed=len(members))

    # -- dedup
    def _dedup(self, staged: list[Staged], task: Any) -> None:
        """Exact duplicates (same stored pixels, or the same record id) become rejections of every
        copy but the first in KEEP_ORDER; near duplicates are counted, test-vs-training ones are leaks."""
        self.progress.update(task, description=f"{self.domain}: dedup", total=None)
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
            problems = validate_record(self._row(entry, None))
            if problems:
                entry.reason, entry.stage = "invalid annotations: " + "; ".join(problems), "annotations"
        alive = [s for s in alive if s.reason is None]
        pairs = confirmed_near_duplicates(
            [s.phash for s in alive],
            self.options.phash_threshold,
            lambda indices: dict(zip(indices, StagedImages(self.stage_dir, [alive[i] for i in indices]), strict=True)),
        )
        for i, j, distance in pairs:
            a, b = alive[i], alive[j]
            if a.item.split == b.item.split:
                self.near_duplicates.setdefault(a.item.split, set()).add(b.id)
            elif "test" in (a.item.split, b.item.split) and {a.item.split, b.item.split} & set(TRAINING_SPLITS):
                test, other = (a, b) if a.item.split == "test" else (b, a)
                self.leaks.append(
                    {"test_id": test.id, "other_id": other.id, "other_split": other.item.split, "distance": distance}
                )
        self.leaks.sort(key=lambda leak: (leak["test_id"], leak["other_id"]))

    def _row(self, entry: Staged, jpeg: bytes | None) -> dict[str, Any]:
        item = entry.item
        return {
            "id": entry.id,
            "domain": self.domain,
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

    # -- shards
    def _write(self, staged: list[Staged], task: Any) -> dict[str, Any]:
        kept = [s for s in staged if s.reason is None]
        by_split: dict[str, list[Staged]] = {}
        for entry in kept:
            by_split.setdefault(entry.item.split, []).append(entry)
        split_dir = self.options.out / self.domain
        split_dir.mkdir(parents=True, exist_ok=True)
        plans = {
            split: plan_shards(split, [e.jpeg_bytes for e in rows], self.options.shard_bytes)
            for split, rows in by_split.items()
        }
        wanted = {p.name for shard_plans in plans.values() for p in shard_plans}
        for stale in split_dir.iterdir():
            if stale.name not in wanted:  # an earlier interrupted writer's temp file
                stale.unlink()
        self.progress.update(task, description=f"{self.domain}: write", total=len(kept), completed=0)
        shards, digests = [], []
        for split, shard_plans in plans.items():
            for plan in shard_plans:
                members = by_split[split][plan.start : plan.stop]
                images = StagedImages(self.stage_dir, members)  # rows come in chunk order: each chunk read once
                rows = [self._row(m, jpeg) for m, jpeg in zip(members, images, strict=True)]
                path = split_dir / plan.name
                write_shard(path, rows)
                digests.extend(row_digest(r) for r in rows)
                shards.append(
                    {
                        "path": f"{self.domain}/{plan.name}",
                        "domain": self.domain,
                        "split": split,
                        "rows": len(rows),
                        "bytes": path.stat().st_size,
                        "sha256": sha256_file(path),
                    }
                )
                self.progress.advance(task, len(rows))
        return {
            "shards": shards,
            "row_digests": digests,
            "split_rows": {split: len(rows) for split, rows in by_split.items()},
            "leaks": self.leaks,
            "captions": self.caption_report,
            "captioner": self.captioner,
        }

    def _counts(self, staged: list[Staged], rejected: list[RejectedInput]) -> dict[str, Any]:
        splits: dict[str, dict[str, int]] = {}
        for split in self.splits:
            kept = [s for s in staged if s.reason is None and s.item.split == split]
            rejected_here = sum(1 for r in rejected if r.split == split)
            if not kept and not rejected_here:
                continue
            splits[split] = {
                "images": len(kept),
                "categories": len({s.item.category for s in kept}),
                "rejected": rejected_here,
                "near_duplicates": len(self.near_duplicates.get(split, ())),
                "leaks": len({leak["test_id"] for leak in self.leaks}) if split == "test" else 0,
            }
        return {
            "splits": splits,
            "exact_duplicates": sum(1 for s in staged if s.reason and s.reason.startswith("exact duplicate")),
        }


# ---------------------------------------------------------------- the whole build


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def build(options: BuildOptions, console: Console | None = None) -> dict[str, Any]:
    """Build FDRD into `options.out` (resuming an interrupted build of the same settings) and
    return its manifest."""
    from builders.sources import resolve_source

    console = console or Console(stderr=True)
    if not 0 <= options.phash_threshold <= MAX_PHASH_THRESHOLD:
        raise FdrdError(f"--phash-threshold must be within 0..{MAX_PHASH_THRESHOLD}, got {options.phash_threshold}")
    if options.workers < 1:
        raise FdrdError(f"--workers must be at least 1, got {options.workers}")
    requested_splits(options.split)
    source = resolve_source(
        options.source,
        options.data_root,
        domains=list(options.domains) if options.domains else None,
        seed=options.seed,
        per_category=options.per_category,
    )
    domains = source.domains()
    out = Path(options.out)
    options = replace(options, out=out)
    identity = build_identity(options, source.name, domains)
    if out.exists() and not out.is_dir():
        raise FdrdError(f"--out {out} is a file, not a directory; choose a directory")
    with BuildLock(out):
        finished = prepare_out_dir(out, identity, options.overwrite)
        if finished is not None:
            console.print(f"{out} already holds this build (content hash {finished['content_hash'][:16]}); nothing to do")
            return finished
        with _progress(console) as progress:
            results = {domain: DomainBuilder(options, source, domain, progress).run() for domain in domains}
        return _finish(out, identity, results)


def _finish(out: Path, identity: dict[str, Any], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """rejected.jsonl, README.md, then manifest.json (last: its presence means a finished build)."""
    rejected = [RejectedInput(**r) for result in results.values() for r in result["rejected"]]
    write_rejected(out, rejected)
    digests = [d for result in results.values() for d in result["row_digests"]]
    manifest = {
        "format": MANIFEST_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "content_hash": content_hash(digests),
        "rows": len(digests),
        "build": identity,
        "versions": environment_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": [shard for result in results.values() for shard in result["shards"]],
        "domains": {
            domain: {
                **result["counts"],
                "leaks": result["leaks"],
                "captions": result["captions"],
                "captioner": result["captioner"],
            }
            for domain, result in results.items()
        },
        "rejected": {"count": len(rejected), "file": REJECTED_NAME},
    }
    write_card(out, {domain: result["split_rows"] for domain, result in results.items()}, manifest)
    write_manifest(out, manifest)
    shutil.rmtree(out / STAGING, ignore_errors=True)
    return manifest
