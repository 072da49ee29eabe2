"""Evaluation: every test image and caption encoded once, exact ranks and recall@K, hard-negative accuracy.

Under several ranks (benchmark/distributed.py) the work is split and the results are those of one process,
bit for bit: the split is encoded in batches of `batch_size` records dealt round robin over the ranks (each
batch exactly as one process encodes it) and gathered; the ranking is split by blocks of image rows
(benchmark/metrics/shards.py) and the integer counts summed; the captions and negatives of the hard-negative
accuracy are encoded the same way, and the accuracy (a pass over N x negatives margins) is computed by every
rank from the gathered embeddings. Batches are built by loader workers (benchmark/loader.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console

from benchmark import collectives
from benchmark.data import SplitBatches, tokenize_captions
from benchmark.feature_cache import autocast_for
from benchmark.loader import planned_batches
from benchmark.metrics import (
    DEFAULT_BLOCK_SIZE,
    RowShard,
    positive_rank_counts,
    positive_ranks,
    recall_from_ranks,
)
from benchmark.metrics.hard_negatives import flatten_negatives, hard_negative_accuracy
from benchmark.metrics.recall import choose_backend
from benchmark.progress import progress_bar
from fdrd.errors import FdrdError


def precision_for(device: torch.device) -> str:
    """bf16 autocast on CUDA (what the recipes use), fp32 elsewhere (CPU bf16 is slow and inexact)."""
    return "bf16" if device.type == "cuda" else "fp32"


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


def record_chunks(count: int, batch_size: int) -> list[list[int]]:
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def encode_split(
    method,
    batches: SplitBatches,
    *,
    device: torch.device,
    batch_size: int,
    console: Console | None = None,
    workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image embeddings, caption embeddings) of every record, float32 on the CPU, in record order."""
    precision = precision_for(device)
    method.eval()
    chunks = record_chunks(len(batches), batch_size)
    plan = [(chunks[index],) for index in collectives.my_chunks(len(chunks))]
    images, texts = [], []
    with progress_bar(console) as progress, torch.inference_mode():
        task = progress.add_task(f"{method.name} encode", total=len(batches), status="")
        for cpu_batch in planned_batches(
            batches.cpu_batch, plan, workers=workers if batches.decodes else 0, device=device
        ):
            batch = batches.to_device(cpu_batch, device)
            with autocast_for(device, precision):
                images.append(method.image_embeddings(batch).float().cpu())
                texts.append(method.encode_texts(batch["input_ids"], batch["attention_mask"]).float().cpu())
            progress.advance(task, len(batch["ids"]))
    sizes = [len(chunk) for chunk in chunks]
    return collectives.gather_chunks(images, sizes), collectives.gather_chunks(texts, sizes)


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
    for index, (ids, length) in enumerate(
        zip(captions.input_ids.tolist(), captions.attention_mask.sum(1).tolist(), strict=True)
    ):
        key = tuple(ids[:length])
        if key not in slot_of:
            slot_of[key] = len(unique_rows)
            unique_rows.append(index)
        row_of.append(slot_of[key])
    unique = torch.tensor(unique_rows, dtype=torch.long)
    chunks = record_chunks(len(unique), batch_size)
    method.eval()
    encoded = []
    with progress_bar(console) as progress, torch.inference_mode():
        task = progress.add_task(f"{method.name} negatives", total=len(unique), status="")
        for index in collectives.my_chunks(len(chunks)):
            input_ids, attention_mask = captions.batch(unique[chunks[index]])
            with autocast_for(device, precision):
                encoded.append(
                    method.encode_texts(input_ids.to(device), attention_mask.to(device)).float().cpu()
                )
            progress.advance(task, input_ids.shape[0])
    everything = collectives.gather_chunks(encoded, [len(chunk) for chunk in chunks])
    return everything[torch.tensor(row_of, dtype=torch.long)]


def evaluate(
    method,
    batches: SplitBatches,
    *,
    device: torch.device,
    batch_size: int,
    backend: str = "auto",
    console: Console | None = None,
    workers: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> EvalReport:
    """Recall@1/5/10 both ways over a split where record j's caption describes record j's image, with
    the per-record ranks (for bootstrap intervals) and the image embeddings (for hard negatives)."""
    if len(batches) == 0:
        raise FdrdError(f"{method.name}: the evaluation split is empty")
    began = time.perf_counter()
    image_emb, text_emb = encode_split(
        method, batches, device=device, batch_size=batch_size, console=console, workers=workers
    )
    chosen = choose_backend(backend, device)
    image_ranks, text_ranks = split_ranks(
        image_emb,
        text_emb,
        torch.arange(len(batches)),
        device=device,
        backend=chosen.name,
        block_size=block_size,
    )
    metrics = recall_from_ranks(image_ranks, text_ranks)
    seconds = time.perf_counter() - began
    return EvalReport(
        metrics,
        seconds,
        len(batches) / seconds if seconds > 0 else 0.0,
        len(batches),
        chosen.name,
        image_ranks.cpu().tolist(),
        text_ranks.cpu().tolist(),
        image_emb,
    )


def split_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    *,
    device: torch.device,
    backend: str,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """positive_ranks of the whole tables (every rank holds them), the work split over the ranks by blocks of
    image rows and the integer counts summed: exactly one process's ranks."""
    image_emb, text_emb, text_to_image = image_emb.to(device), text_emb.to(device), text_to_image.to(device)
    chosen = choose_backend(backend, device)
    if (
        collectives.world_size() == 1 or chosen.counts is None
    ):  # a backend that ranks in one piece: every rank
        return positive_ranks(image_emb, text_emb, text_to_image, backend=chosen.name, block_size=block_size)
    shard = RowShard(collectives.rank(), collectives.world_size())
    image_beaten, text_beaten = positive_rank_counts(
        image_emb, text_emb, text_to_image, shard, backend=chosen.name, block_size=block_size
    )
    return collectives.sum_counts(image_beaten) + 1, collectives.sum_counts(text_beaten) + 1


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
    embeddings = encode_texts_once(
        method, list(captions) + texts, device=device, batch_size=batch_size, console=console
    )
    return hard_negative_accuracy(
        image_emb, embeddings[: len(captions)], embeddings[len(captions) :], owners, kinds
    )
