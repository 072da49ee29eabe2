"""Captioning split over several processes (`fdrd build --captioner vlm --gpus N`).

The uncached images are split into N disjoint shards; shard i runs in its own spawned process on
cuda:i when GPUs exist (CPU otherwise, with the cores divided between shards), writes each finished
batch into the shared sqlite caption cache, and reports progress over a queue. The cache is the only
merge point: the parent reads every caption back from it. A shard that dies keeps the batches it
finished, so a rerun captions only what is still missing.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from pathlib import Path

from fdrd.errors import FdrdError

_POLL_S = 0.2


def split_into_shards(items: list, count: int) -> list[list]:
    """`count` disjoint, contiguous shards whose sizes differ by at most one."""
    base, extra = divmod(len(items), count)
    shards, start = [], 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        shards.append(items[start:end])
        start = end
    return shards


def caption_shard(shard_index: int, items: list[tuple[str, bytes]], options, cache_path: str,
                  threads: int, messages) -> None:
    """Process entry point: caption one shard into the cache, reporting ("done", i, n) per batch."""
    import torch

    from builders.captions.cache import CaptionCache
    from builders.captions.vlm import Captioner, caption_batches, resolve_device

    try:
        torch.set_num_threads(threads)
        captioner = Captioner(options, resolve_device(options.device, shard_index))
        with CaptionCache(cache_path, options.cache_model_key(), options.cache_prompt_key()) as cache:
            caption_batches(captioner, items, cache, lambda n: messages.put(("done", shard_index, n)))
    except Exception as error:  # reported to the parent, which names the shard; then exit non-zero
        messages.put(("error", shard_index, f"{type(error).__name__}: {error}"))
        raise SystemExit(1) from error


def caption_in_processes(todo: list[tuple[str, bytes]], options, cache_path: Path, progress: bool) -> None:
    import torch
    from rich.progress import Progress

    from builders.captions.vlm import resolve_device

    resolve_device(options.device)  # a device that cannot exist fails here, not in N children
    shards = [shard for shard in split_into_shards(todo, min(options.procs, len(todo))) if shard]
    on_gpu = torch.cuda.is_available() and options.device in ("auto", "cuda")
    # On CPU the shards share the cores; oversubscribing them would make N processes slower than one.
    threads = 1 if on_gpu else max(1, (os.cpu_count() or 1) // len(shards))
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used from forked children
    messages = context.Queue()
    workers = [
        context.Process(target=caption_shard, args=(index, shard, options, str(cache_path), threads, messages),
                        name=f"fdrd-caption-shard-{index}")
        for index, shard in enumerate(shards)
    ]
    errors: dict[int, str] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"captioning with {options.model} in {len(workers)} processes", total=len(todo))
        for worker in workers:
            worker.start()
        try:
            while any(worker.is_alive() for worker in workers) or not messages.empty():
                try:
                    kind, index, payload = messages.get(timeout=_POLL_S)
                except queue_module.Empty:
                    continue
                if kind == "done":
                    bar.advance(task, payload)
                else:
                    errors[index] = payload
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                worker.join()
    for index, worker in enumerate(workers):
        if worker.exitcode != 0 and index not in errors:
            errors[index] = f"process exited with status {worker.exitcode}"
    if errors:
        index = min(errors)
        raise FdrdError(
            f"{cache_path}: caption shard {index} of {len(workers)} failed ({errors[index]}); its finished "
            f"batches are cached, rerun to caption only the rest"
        )
