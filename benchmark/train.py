"""The trainer: few-shot training of a method's trainable parameters.

What it does per step: a global batch of `batch_size` records in this epoch's seeded order, the method's
loss under bf16 autocast on GPU (fp32 master weights; fp32 on CPU), a NaN/inf guard, gradient clipping,
an SGD-momentum or AdamW step, and the learning rate of a constant warm-up followed by a per-step cosine
decay. After every epoch a checkpoint (trainable parameters + optimizer, scheduler, RNG and data order);
`resume=True` continues from the last one and gives bit-identical parameters to an uninterrupted run on
CPU.

Under several ranks (benchmark/distributed.py) the global batch of a step is the same records as on one
process; rank r takes its contiguous slice (benchmark/collectives.py `shard_rows`), the loss terms are its
shares of the global ones (in-batch negatives gathered across ranks), and the trainable gradients (only
those: the frozen backbone is never synchronised) are summed over ranks in one bucketed all-reduce, so
every rank takes the single-process step. Rank 0 alone writes checkpoints; they hold the trainable
parameters of that one state, so a run resumes under any number of ranks. Batches are built by loader
workers (benchmark/loader.py); every random draw is keyed by (seed, epoch, record), so the number of
workers or ranks never changes a batch. Evaluation is in benchmark/evaluation.py.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from benchmark import collectives
from benchmark.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    run_fingerprint,
    save_checkpoint,
)
from benchmark.data import SplitBatches
from benchmark.distributed import inject_fault
from benchmark.evaluation import precision_for
from benchmark.feature_cache import autocast_for
from benchmark.loader import planned_batches
from benchmark.progress import progress_bar
from fdrd.errors import FdrdError


def seed_everything(seed: int) -> None:
    """Seed every generator a method may draw from (python, numpy, torch CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The data order of `epoch`: a function of the seed and the epoch alone, so resuming needs no replay."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


@dataclass
class WarmupCosine:
    """Learning-rate factor per optimizer step: `warmup_lr / lr` for the warm-up epochs, then a cosine
    from 1 to 0 over the remaining steps (a callable object so that LambdaLR can save it)."""

    base_lr: float
    warmup_lr: float
    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr / self.base_lr
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(config, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    name = config.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise FdrdError(f"unknown optimizer {config.optimizer!r}; use --set optimizer=sgd or --set optimizer=adamw")


@dataclass
class TrainReport:
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    loss_per_epoch: list[float] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    seconds_per_epoch: float | None = None  # over the epochs this call ran; None when it ran none
    skipped: str | None = None  # why nothing was trained, when nothing was


def train(
    method,
    batches: SplitBatches,
    *,
    seed: int,
    device: torch.device,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    fingerprint_extra: dict[str, Any] | None = None,
    stop_after_epochs: int | None = None,
    console: Console | None = None,
    workers: int = 0,
) -> TrainReport:
    """Train `method` in place on `batches`; returns what happened (epochs, steps, losses, speed).

    `stop_after_epochs` ends this call early (a job with a time limit); the schedule still spans
    `config.epochs`, and a later call with `resume=True` finishes the run as if never stopped. `workers`:
    loader worker processes building batches (0: the main process).
    """
    config = method.config
    parameters = method.trainable_parameters()
    if not parameters:
        return TrainReport(skipped=f"{method.name} has no trainable parameters")
    if config.epochs is None:
        raise FdrdError(f"{method.name}: epochs depend on the shots drawn; resolve them with config.for_shots(shots)")
    if config.epochs < 1:
        # Zero epochs would evaluate the untrained method and label it trained; zeroshot is that baseline.
        raise FdrdError(
            f"{method.name}: epochs={config.epochs} trains nothing, but the method has trainable parameters; "
            "set --set epochs=1 or more (zeroshot evaluates the untrained backbone)"
        )
    if len(batches) == 0:
        raise FdrdError(f"{method.name}: the training split is empty; nothing to train on")
    if config.batch_size < 1:
        raise FdrdError(f"{method.name}: batch_size must be at least 1, got {config.batch_size}")
    if resume and checkpoint_dir is None:
        raise FdrdError("resume needs a checkpoint directory")
    for parameter in parameters:
        if parameter.dtype != torch.float32:
            # Master weights stay fp32 whatever the autocast precision; a half-precision trainable
            # parameter would lose the small SGD updates.
            raise FdrdError(f"{method.name}: trainable parameters must be float32, got {parameter.dtype}")

    # Dassl's rule when the last partial batch is dropped: only when at least one full batch exists.
    drop_last = getattr(config, "drop_last_batch", False) and len(batches) >= config.batch_size
    steps_per_epoch = len(batches) // config.batch_size if drop_last else math.ceil(len(batches) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = build_optimizer(config, parameters)
    warmup_steps = min(config.warmup_epochs, config.epochs) * steps_per_epoch
    schedule = WarmupCosine(config.lr, config.warmup_lr, warmup_steps, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    fingerprint = run_fingerprint(
        {
            "method": method.name,
            "config": dataclasses.asdict(config),
            "seed": seed,
            "records": batches.ids,
            "model": method.backbone.revision,
            **(fingerprint_extra or {}),
        }
    )

    report = TrainReport()
    start_epoch = 0
    if resume:
        # Rank 0 reads and checks the checkpoint; the others take its state, and its parameters below.
        state = collectives.from_rank_zero(lambda: resume_state(checkpoint_dir, fingerprint, method))
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_state(state["rng"])
            start_epoch = state["epoch"]
            report.loss_per_epoch = list(state["loss_per_epoch"])
            report.resumed_from_epoch = start_epoch
    report.steps = start_epoch * steps_per_epoch
    collectives.broadcast_parameters(parameters)  # one starting state on every rank

    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
    steps = step_plan(seed, len(batches), config.batch_size, steps_per_epoch, start_epoch, last_epoch)
    ranks, me = collectives.world_size(), collectives.rank()
    collectives.prepare_step_groups({len(step.records) for step in steps})
    if steps:
        batches.prepare(device, workers)
    # This rank's records of each step, padded to the global batch's longest caption (as one process pads).
    mine = [(shard, f"{seed}:{step.epoch}", batches.captions.longest(step.records))
            for step in steps if (shard := collectives.shard_rows(step.records, me, ranks))]
    loader = planned_batches(batches.cpu_batch, mine, workers=workers if batches.decodes else 0, device=device)

    precision = precision_for(device)
    method.train()
    began = time.perf_counter()
    images_seen = 0
    epoch_losses: list[float] = []
    with progress_bar(console) as progress:
        task = progress.add_task(f"{method.name} train", total=total_steps, completed=report.steps, status="")
        for position, step in enumerate(steps):
            inject_fault(report.steps + 1)
            optimizer.zero_grad(set_to_none=True)
            losses: dict[str, torch.Tensor] = {}
            if me < len(step.records):  # ranks beyond a batch smaller than the world hold no record this step
                batch = batches.to_device(next(loader), device)
                with collectives.step_group(min(ranks, len(step.records))):
                    with autocast_for(device, precision):
                        losses = method.loss(batch)
                    if losses["loss"].requires_grad:
                        losses["loss"].float().backward()
            share = losses["loss"].detach() if losses else torch.zeros(())
            loss = collectives.sum_gradients(parameters, {"loss": share})["loss"]
            where = f"epoch {step.epoch + 1}, step {step.index + 1} (global step {report.steps + 1})"
            if not math.isfinite(loss):
                raise FdrdError(f"{method.name}: loss is not finite at {where}: {describe_losses(losses, loss)}; "
                                "lower the learning rate (--set lr=...) or check the data")
            if config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                if not bool(torch.isfinite(norm)):
                    raise FdrdError(f"{method.name}: gradient norm is {float(norm)} at {where}, loss {loss:.4g}; "
                                    "lower the learning rate (--set lr=...)")
            optimizer.step()
            scheduler.step()
            report.steps += 1
            images_seen += len(step.records)
            epoch_losses.append(loss)
            elapsed = time.perf_counter() - began
            progress.update(task, advance=1, status=f"epoch {step.epoch + 1}/{config.epochs} loss {loss:.4f} "
                            f"{images_seen / max(elapsed, 1e-9):.1f} img/s")
            if position + 1 < len(steps) and steps[position + 1].epoch == step.epoch:
                continue
            report.loss_per_epoch.append(sum(epoch_losses) / len(epoch_losses))
            epoch_losses = []
            end_of_epoch(method, parameters, checkpoint_dir, step.epoch, fingerprint, seed, len(batches), {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "global_step": report.steps,
                "loss_per_epoch": report.loss_per_epoch,
            })
    method.eval()
    report.epochs = len(report.loss_per_epoch)
    report.seconds = time.perf_counter() - began
    epochs_run = report.epochs - start_epoch
    report.seconds_per_epoch = report.seconds / epochs_run if epochs_run > 0 else None
    report.images_per_second = images_seen / report.seconds if report.seconds > 0 else 0.0
    return report


@dataclass(frozen=True)
class Step:
    epoch: int
    index: int  # within the epoch
    records: list[int]  # the global batch, in the epoch's order


def step_plan(
    seed: int, size: int, batch_size: int, steps_per_epoch: int, first_epoch: int, stop_epoch: int
) -> list[Step]:
    """Every step's global batch from `first_epoch` up to `stop_epoch`: the same on every rank and for any
    number of ranks (a function of the seed and the epoch alone)."""
    steps = []
    for epoch in range(first_epoch, stop_epoch):
        order = epoch_order(seed, epoch, size).tolist()
        for index in range(steps_per_epoch):
            steps.append(Step(epoch, index, order[index * batch_size : (index + 1) * batch_size]))
    return steps


def resume_state(checkpoint_dir, fingerprint: str, method) -> dict[str, Any] | None:
    """The latest checkpoint's state with its parameters loaded into `method`, or None when there is none."""
    if latest_checkpoint(checkpoint_dir) is None:
        return None
    return load_checkpoint(checkpoint_dir, fingerprint, method)


def end_of_epoch(method, parameters, checkpoint_dir, epoch: int, fingerprint: str, seed: int, size: int,
                 state: dict[str, Any]) -> None:
    """Check that the ranks still agree, then (rank 0) write the epoch's checkpoint."""
    if not collectives.parameters_agree(parameters):
        raise RuntimeError(f"{method.name}: the ranks' trainable parameters differ after epoch {epoch + 1}; "
                           "every rank must take the same step (a bug: please report it)")
    if checkpoint_dir is not None and collectives.is_main():
        save_checkpoint(checkpoint_dir, epoch=epoch + 1, fingerprint=fingerprint, method=method,
                        state={**state, "data_order": epoch_order(seed, epoch, size)})


def describe_losses(losses: dict[str, torch.Tensor], loss: float) -> str:
    """The loss summed over ranks, then this rank's own terms (all of them on one process)."""
    terms = [f"{name}={float(value.detach().float()):.4g}" for name, value in losses.items() if name != "loss"]
    return ", ".join([f"loss={loss:.4g}", *terms])
