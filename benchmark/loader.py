"""Batches built where they do not hold up the device: DataLoader workers decode, preprocess, augment and
tokenize while the main process trains or encodes; pinned memory and prefetch when the device is a GPU.

A plan is a list of argument tuples for a batch-making function (`SplitBatches.cpu_batch`, `pixel_chunk`);
`planned_batches` yields the batches in plan order, made in the main process (workers=0) or by forked
worker processes. A batch is a function of its arguments alone (augmentation, negatives and per-record draws
are keyed by (seed, epoch, record), benchmark/data.py), so batches are bit-identical whatever the number of
workers and whichever worker makes them. Workers never touch the model or the GPU.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from fdrd.errors import FdrdError

# Batches each worker keeps ready ahead of the device (DataLoader's prefetch_factor).
PREFETCH_BATCHES = 2
# More workers than this rarely help one device and cost memory (each holds a copy of what it decodes).
MAX_DEFAULT_WORKERS = 8


def default_workers(ranks_per_node: int = 1, device_type: str = "cuda") -> int:
    """The loader workers a rank gets by default: on an accelerator, its share of the node's CPUs minus the
    one the rank itself runs on, at most MAX_DEFAULT_WORKERS; on a CPU device none, because the model
    already uses every core as threads and workers only compete with it (measured on 2 cores: an uncached
    epoch 0.84-0.94x with 1 or 2 workers, docs/performance.md)."""
    if device_type == "cpu":
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cpus // max(1, ranks_per_node) - 1))


class _Failed:
    """An FdrdError raised in a worker, carried back as a value so the main process raises it as one line
    (DataLoader would wrap it in a worker traceback)."""

    def __init__(self, message: str):
        self.message = message


class _Plan(torch.utils.data.Dataset):
    def __init__(self, make: Callable[..., Any], plan: Sequence[tuple]):
        self.make = make
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.make(*self.plan[index])
        except FdrdError as error:
            return _Failed(str(error))


def _as_is(batch: Any) -> Any:
    return batch


def _context():
    # Forked workers share the split, the tokenizer and the image processor with the main process without
    # pickling anything (the method object holding the model included); they only run CPU code.
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def planned_batches(
    make: Callable[..., Any], plan: Sequence[tuple], *, workers: int, device: torch.device | str = "cpu"
) -> Iterator[Any]:
    """`make(*arguments)` for each entry of `plan`, in order; with workers > 0 made ahead in worker processes
    (pinned when `device` is a GPU)."""
    if workers < 0:
        raise FdrdError(f"--workers must be 0 (decode in the main process) or more, got {workers}")
    context = _context()
    if workers == 0 or len(plan) == 0 or context is None:
        for arguments in plan:
            yield make(*arguments)
        return
    # Forked workers inherit a tokenizer that may have used threads; it would warn and disable them anyway.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    loader = torch.utils.data.DataLoader(
        _Plan(make, plan),
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(plan)),
        collate_fn=_as_is,
        pin_memory=torch.device(device).type == "cuda",
        prefetch_factor=PREFETCH_BATCHES,
        multiprocessing_context=context,
    )
    for batch in loader:
        if isinstance(batch, _Failed):
            raise FdrdError(batch.message)
        yield batch
