"""The trainer: few-shot training of a method's trainable parameters, and evaluation by recall@K.

Single process (a later distributed.py wraps it). What it does per step: a batch in this epoch's
seeded order, the method's loss under bf16 autocast on GPU (fp32 master weights; fp32 on CPU), a
NaN/inf guard, gradient clipping, an SGD-momentum or AdamW step, and the learning rate of a constant
warm-up followed by a per-step cosine decay. After every epoch a checkpoint (trainable parameters +
optimizer, scheduler, RNG and data order); `resume=True` continues from the last one and gives
bit-identical parameters to an uninterrupted run on CPU.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmark.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    run_fingerprint,
    save_checkpoint,
)
from benchmark.data import SplitBatches, tokenize_captions
from benchmark.feature_cache import autocast_for
from benchmark.metrics import positive_ranks, recall_from_ranks
from benchmark.metrics.hard_negatives import flatten_negatives, hard_negative_accuracy
from benchmark.metrics.recall import choose_backend
from fdrd.errors import FdrdError


def seed_everything(seed: int) -> None:
    """Seed every generator a method may draw from (python, numpy, torch CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def precision_for(device: torch.device) -> str:
    """bf16 autocast on CUDA (what the recipes use), fp32 elsewhere (CPU bf16 is slow and inexact)."""
    return "bf16" if device.type == "cuda" else "fp32"


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


def progress_bar(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=console is None or console.quiet,
    )


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
) -> TrainReport:
    """Train `method` in place on `batches`; returns what happened (epochs, steps, losses, speed).

    `stop_after_epochs` ends this call early (a job with a time limit); the schedule still spans
    `config.epochs`, and a later call with `resume=True` finishes the run as if never stopped.
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
    if resume and latest_checkpoint(checkpoint_dir) is not None:
        state = load_checkpoint(checkpoint_dir, fingerprint, method)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        start_epoch = state["epoch"]
        report.loss_per_epoch = list(state["loss_per_epoch"])
        report.resumed_from_epoch = start_epoch
    report.steps = start_epoch * steps_per_epoch

    precision = precision_for(device)
    method.train()
    began = time.perf_counter()
    images_seen = 0
    with progress_bar(console) as progress:
        task = progress.add_task(
            f"{method.name} train", total=total_steps, completed=report.steps, status=""
        )
        last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
        for epoch in range(start_epoch, last_epoch):
            order = epoch_order(seed, epoch, len(batches))
            epoch_losses = []
            for step_in_epoch in range(steps_per_epoch):
                indices = order[step_in_epoch * config.batch_size : (step_in_epoch + 1) * config.batch_size]
                batch = batches.batch(indices, device)
                with autocast_for(device, precision):
                    losses = method.loss(batch)
                loss = losses["loss"]
                if not bool(torch.isfinite(loss)):
                    raise FdrdError(
                        f"{method.name}: loss is not finite at epoch {epoch + 1}, step {step_in_epoch + 1} "
                        f"(global step {report.steps + 1}): {describe_losses(losses)}; "
                        f"lower the learning rate (--set lr=...) or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.float().backward()
                if config.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                    if not bool(torch.isfinite(norm)):
                        raise FdrdError(
                            f"{method.name}: gradient norm is {float(norm)} at epoch {epoch + 1}, step "
                            f"{step_in_epoch + 1} (global step {report.steps + 1}), loss {float(loss):.4g}; "
                            "lower the learning rate (--set lr=...)"
                        )
                optimizer.step()
                scheduler.step()
                report.steps += 1
                images_seen += len(indices)
                epoch_losses.append(float(loss.detach()))
                elapsed = time.perf_counter() - began
                progress.update(
                    task,
                    advance=1,
                    status=f"epoch {epoch + 1}/{config.epochs} loss {epoch_losses[-1]:.4f} "
                    f"{images_seen / max(elapsed, 1e-9):.1f} img/s",
                )
            report.loss_per_epoch.append(sum(epoch_losses) / len(epoch_losses))
            if checkpoint_dir is not None:
                save_checkpoint(
                    checkpoint_dir,
                    epoch=epoch + 1,
                    fingerprint=fingerprint,
                    method=method,
                    state={
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "data_order": order,
                        "global_step": report.steps,
                        "loss_per_epoch": report.loss_per_epoch,
                    },
                )
    method.eval()
    report.epochs = len(report.loss_per_epoch)
    report.seconds = time.perf_counter() - began
    epochs_run = report.epochs - start_epoch
    report.seconds_per_epoch = report.seconds / epochs_run if epochs_run > 0 else None
    report.images_per_second = images_seen / report.seconds if report.seconds > 0 else 0.0
    return report


def describe_losses(losses: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{name}={float(value.detach().float()):.4g}" for name, value in losses.items())


@dataclass
class EvalReport:
    metrics: dict[str, float]
    seconds: float
    images_per_second: float
    records: int
    backend: str  # the recall backend that ranked
    image_ranks: list[int]  # 1-based, record order
    text_ranks: list[int]
    image_embeddings: torch.Tensor  # float32, CPU, record order (for hard negatives)


def encode_split(
    method, batches: SplitBatches, *, device: torch.device, batch_size: int, console: Console | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image embeddings, caption embeddings) of every record, float32 on the CPU, in record order."""
    precision = precision_for(device)
    method.eval()
    images, texts = [], []
    with progress_bar(console) as progress, torch.inference_mode():
        task = progress.add_task(f"{method.name} encode", total=len(batches), status="")
        for batch in batches.sequential(batch_size, device):
            with autocast_for(device, precision):
                images.append(method.image_embeddings(batch).float().cpu())
                texts.append(method.encode_texts(batch["input_ids"], batch["attention_mask"]).float().cpu())
            progress.advance(task, len(batch["ids"]))
    return torch.cat(images), torch.cat(texts)


def encode_texts_once(
    method, texts: list[str], *, device: torch.device, batch_size: int, console: Console | None = None
) -> torch.Tensor:
    """Embeddings of free texts through the method's own text side, float32 on the CPU, (len(texts), D).

    Texts that tokenize to the same ids are encoded once and share one row, so two identical texts get
    bit-identical embeddings whatever batch they fall in (a tie stays a tie)."""
    precision = precision_for(device)
    captions = tokenize_captions(method, texts)
    slot_of: dict[tuple[int, ...], int] = {}  # token ids -> row of the unique texts
    unique_rows: list[int] = []  # the first text of each unique token sequence
    row_of = []
    for index, (ids, length) in enumerate(zip(captions.input_ids.tolist(), captions.attention_mask.sum(1).tolist(), strict=True)):
        key = tuple(ids[:length])
        if key not in slot_of:
            slot_of[key] = len(unique_rows)
            unique_rows.append(index)
        row_of.append(slot_of[key])
    unique = torch.tensor(unique_rows, dtype=torch.long)
    method.eval()
    chunks = []
    with progress_bar(console) as progress, torch.inference_mode():
        task = progress.add_task(f"{method.name} negatives", total=len(unique), status="")
        for start in range(0, len(unique), batch_size):
            input_ids, attention_mask = captions.batch(unique[start : start + batch_size])
            with autocast_for(device, precision):
                chunks.append(method.encode_texts(input_ids.to(device), attention_mask.to(device)).float().cpu())
            progress.advance(task, input_ids.shape[0])
    return torch.cat(chunks)[torch.tensor(row_of, dtype=torch.long)]


def evaluate(
    method,
    batches: SplitBatches,
    *,
    device: torch.device,
    batch_size: int,
    backend: str = "auto",
    console: Console | None = None,
) -> EvalReport:
    """Recall@1/5/10 both ways over a split where record j's caption describes record j's image, with
    the per-record ranks (for bootstrap intervals) and the image embeddings (for hard negatives)."""
    if len(batches) == 0:
        raise FdrdError(f"{method.name}: the evaluation split is empty")
    began = time.perf_counter()
    image_emb, text_emb = encode_split(method, batches, device=device, batch_size=batch_size, console=console)
    chosen = choose_backend(backend, device).name
    image_ranks, text_ranks = positive_ranks(
        image_emb.to(device), text_emb.to(device), torch.arange(len(batches), device=device), backend=chosen
    )
    metrics = recall_from_ranks(image_ranks, text_ranks)
    seconds = time.perf_counter() - began
    return EvalReport(
        metrics, seconds, len(batches) / seconds if seconds > 0 else 0.0, len(batches), chosen,
        image_ranks.cpu().tolist(), text_ranks.cpu().tolist(), image_emb,
    )


def hard_negative_report(
    method,
    captions: list[str],
    negatives_column,
    image_emb: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int,
    console: Console | None = None,
) -> dict[str, dict[str, Any]]:
    """Hard-negative accuracy by kind (benchmark/metrics/hard_negatives.py) of a split's captions and
    `negatives` column against its image embeddings (as `evaluate` returns them). Captions and negatives
    are encoded together by the method's own text side (`encode_texts_once`), so a negative that
    tokenizes like its caption ties with it exactly."""
    texts, owners, kinds = flatten_negatives(negatives_column)
    embeddings = encode_texts_once(method, list(captions) + texts, device=device, batch_size=batch_size, console=console)
    return hard_negative_accuracy(image_emb, embeddings[: len(captions)], embeddings[len(captions) :], owners, kinds)
