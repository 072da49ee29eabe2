"""Normalize stage: every source item of a domain decoded, re-encoded and hashed, in chunks of
CHUNK_SIZE items staged as norm-NNNNN.parquet (the stored bytes, or the rejection reason), in this
process or a pool of workers; a chunk already staged is not redone."""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from builders.normalize import ImageRejected, NormalizeOptions, normalize_image, read_image_bytes
from builders.sources.base import SourceItem
from builders.stages.options import CHUNK_SIZE, BuildOptions
from builders.stages.out_dir import close_inherited_locks
from builders.stages.staged import Staged, chunk_path
from builders.writer import write_parquet_atomic
from fdrd.schema import record_id

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
                data = read_image_bytes(image_path, options.max_input_bytes) if image_path else b""
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


def run_normalization(
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
        max_workers=workers, mp_context=context, initializer=close_inherited_locks
    ) as pool:
        running: set[futures.Future[int]] = set()
        while pending or running:
            while pending and len(running) < 2 * workers:
                path, chunk = pending.pop()
                running.add(pool.submit(normalize_chunk, path, _payload(chunk), options))
            done, running = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                advance(future.result())


def normalize_domain(
    domain: str, items: list[SourceItem], stage_dir: Path, options: BuildOptions, progress: Progress, task: Any
) -> list[Staged]:
    """Stage every item of `domain` (redoing only missing chunks) and return what was staged,
    in item order, each with its record id."""
    indexed = list(enumerate(items))
    chunks = [indexed[k : k + CHUNK_SIZE] for k in range(0, len(items), CHUNK_SIZE)]
    paths = [chunk_path(stage_dir, k) for k in range(len(chunks))]
    jobs = [(str(p), c) for p, c in zip(paths, chunks, strict=True) if not p.is_file()]
    finished = len(items) - sum(len(c) for _, c in jobs)
    progress.update(task, description=f"{domain}: normalize", total=len(items), completed=finished)
    run_normalization(jobs, options.normalize, options.workers, lambda n: progress.advance(task, n))
    staged: list[Staged] = []
    columns = ["item", "reason", "width", "height", "sha256", "pixel_hash", "phash", "jpeg_bytes"]
    for k, path in enumerate(paths):
        for row in pq.read_table(path, columns=columns).to_pylist():
            index = row.pop("item")
            row = {key: value for key, value in row.items() if value is not None}  # rejected: reason only
            staged.append(Staged(item=items[index], index=index, chunk=k, **row))
    for entry in staged:
        entry.id = record_id(domain, entry.item.original)
    return staged
