"""Exact image<->text retrieval recall@K, computed in blocks so that the N x M score matrix never exists.

Definitions (docs/benchmark.md has the long form):
- score(i, j) is the float32 dot product of image embedding i and caption embedding j (the methods give
  L2-normalised embeddings, so this is the cosine).
- text -> image: the rank of caption j's image is 1 + the number of OTHER images scoring >= that image.
- image -> text: image i's positive score is the best score among its own captions; its rank is 1 + the
  number of captions of OTHER images scoring >= it.
Ties count against the positive: a model that gives every pair the same score ranks every positive
last, so it gets 0 recall (for K below the candidate count), never 100.

Each (image block, caption block) score tile serves both directions: its rows are counted for image ->
text and its columns for text -> image, so the cost is one blocked GEMM plus two comparisons per score.
The positives are excluded by index, using the very tile values that were counted, so float rounding
can never make a positive count against itself.

Backends compute the two rank vectors; `retrieval_recall` turns ranks into the metrics. The "torch"
backend runs on any torch device; a fused GPU kernel registers itself with `register_recall_backend`
and is picked by backend="auto" on the devices it claims.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fdrd.errors import FdrdError

# A tile of 2048 x 2048 float32 scores is 16 MiB (+ 4 MiB per boolean mask): big enough that the GEMM
# runs near peak speed, small enough to sit beside a 50k x 512 embedding table on a laptop.
DEFAULT_BLOCK_SIZE = 2048

RankFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class RecallBackend:
    """A way to compute (image -> text ranks, text -> image ranks), 1-based, int64."""

    name: str
    ranks: RankFunction
    # Devices this backend serves (e.g. {"cuda"}); `auto` prefers a specialised backend there.
    device_types: frozenset[str]
    # Higher wins under backend="auto" when several claim the device.
    priority: int = 0
    available: Callable[[], bool] = lambda: True


_BACKENDS: dict[str, RecallBackend] = {}


def register_recall_backend(backend: RecallBackend) -> RecallBackend:
    """Make a backend selectable by name and by backend="auto" on its device types."""
    _BACKENDS[backend.name] = backend
    return backend


def available_recall_backends() -> list[str]:
    return sorted(name for name, backend in _BACKENDS.items() if backend.available())


def choose_backend(name: str, device: torch.device) -> RecallBackend:
    if name != "auto":
        if name not in _BACKENDS:
            raise FdrdError(
                f"unknown recall backend {name!r}; known backends: auto, {', '.join(sorted(_BACKENDS))}"
            )
        backend = _BACKENDS[name]
        if not backend.available():
            raise FdrdError(f"recall backend {name!r} is not available on this machine; use backend='torch'")
        return backend
    candidates = [
        backend
        for backend in _BACKENDS.values()
        if device.type in backend.device_types and backend.available()
    ]
    return max(candidates, key=lambda backend: backend.priority)


def _caption_offsets(text_to_image: torch.Tensor, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions grouped by image: `order[offsets[i]:offsets[i + 1]]` are image i's caption indices."""
    order = torch.argsort(text_to_image, stable=True)
    counts = torch.bincount(text_to_image, minlength=num_images)
    offsets = torch.zeros(num_images + 1, dtype=torch.int64, device=text_to_image.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return order, offsets


def torch_blocked_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ranks of the positives with O((N + M) * D + block^2) memory."""
    num_images, num_texts = image_emb.shape[0], text_emb.shape[0]
    device = image_emb.device
    order, offsets = _caption_offsets(text_to_image, num_images)

    # Positive scores. Image i's is the best of its captions; caption j's is the score of its image.
    # Both come from products of the same rows and columns as the tiles below; the tiles exclude
    # positives by index, so these values only decide which OTHER candidates tie or beat them.
    image_positive = torch.full((num_images,), float("-inf"), dtype=torch.float32, device=device)
    text_positive = torch.empty(num_texts, dtype=torch.float32, device=device)
    for start in range(0, num_images, block_size):
        stop = min(start + block_size, num_images)
        captions = order[offsets[start] : offsets[stop]]
        scores = image_emb[start:stop] @ text_emb[captions].T
        own = scores[text_to_image[captions] - start, torch.arange(len(captions), device=device)]
        text_positive[captions] = own
        image_positive[start:stop] = image_positive[start:stop].scatter_reduce(
            0, text_to_image[captions] - start, own, reduce="amax"
        )

    image_beaten = torch.zeros(num_images, dtype=torch.int64, device=device)
    text_beaten = torch.zeros(num_texts, dtype=torch.int64, device=device)
    for row_start in range(0, num_images, block_size):
        row_stop = min(row_start + block_size, num_images)
        rows = image_emb[row_start:row_stop]
        row_threshold = image_positive[row_start:row_stop, None]
        for col_start in range(0, num_texts, block_size):
            col_stop = min(col_start + block_size, num_texts)
            tile = rows @ text_emb[col_start:col_stop].T
            col_threshold = text_positive[None, col_start:col_stop]
            image_beaten[row_start:row_stop] += (tile >= row_threshold).sum(1)
            text_beaten[col_start:col_stop] += (tile >= col_threshold).sum(0)
            # Take back the positives (caption j and its own image) that the two counts just included.
            owners = text_to_image[col_start:col_stop]
            inside = (owners >= row_start) & (owners < row_stop)
            if inside.any():
                cols = torch.nonzero(inside).squeeze(1)
                pos_rows = owners[cols] - row_start
                pos_scores = tile[pos_rows, cols]
                row_hits = (pos_scores >= image_positive[pos_rows + row_start]).long()
                image_beaten.index_add_(0, pos_rows + row_start, -row_hits)
                text_beaten[cols + col_start] -= (pos_scores >= text_positive[cols + col_start]).long()
    return image_beaten + 1, text_beaten + 1


register_recall_backend(
    RecallBackend(name="torch", ranks=torch_blocked_ranks, device_types=frozenset({"cpu", "cuda", "mps"}))
)


def _check_inputs(image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor) -> None:
    if image_emb.ndim != 2 or text_emb.ndim != 2:
        raise FdrdError(
            f"retrieval_recall: embeddings must be 2-D (count, dim); got image {tuple(image_emb.shape)}, "
            f"text {tuple(text_emb.shape)}"
        )
    if image_emb.shape[0] == 0 or text_emb.shape[0] == 0:
        raise FdrdError("retrieval_recall: no images or no captions to rank; is the split empty?")
    if image_emb.shape[1] != text_emb.shape[1]:
        raise FdrdError(
            f"retrieval_recall: image embeddings have width {image_emb.shape[1]} but caption embeddings "
            f"{text_emb.shape[1]}; both must come from the same model"
        )
    if text_to_image.shape != (text_emb.shape[0],):
        raise FdrdError(
            f"retrieval_recall: text_to_image has shape {tuple(text_to_image.shape)}, expected one image "
            f"index per caption ({text_emb.shape[0]},)"
        )
    if text_to_image.dtype.is_floating_point or text_to_image.dtype == torch.bool:
        raise FdrdError(f"retrieval_recall: text_to_image must hold integer indices, got {text_to_image.dtype}")
    num_images = image_emb.shape[0]
    bad = torch.nonzero((text_to_image < 0) | (text_to_image >= num_images)).squeeze(1)
    if bad.numel():
        j = int(bad[0])
        raise FdrdError(
            f"retrieval_recall: caption {j} points to image {int(text_to_image[j])}, outside 0..{num_images - 1}"
        )
    counts = torch.bincount(text_to_image.long(), minlength=num_images)
    lonely = torch.nonzero(counts == 0).squeeze(1)
    if lonely.numel():
        shown = ", ".join(str(int(i)) for i in lonely[:10])
        raise FdrdError(
            f"retrieval_recall: {lonely.numel()} image(s) have no caption (indices {shown}"
            f"{', ...' if lonely.numel() > 10 else ''}); every image needs at least one positive caption"
        )
    for name, emb in (("image", image_emb), ("caption", text_emb)):
        if not bool(torch.isfinite(emb).all()):
            row = int(torch.nonzero(~torch.isfinite(emb).all(1))[0])
            raise FdrdError(f"retrieval_recall: {name} embedding {row} holds NaN or inf; the model diverged")


def median_rank(ranks: torch.Tensor) -> float:
    """The statistical median (mean of the two middle ranks when the count is even)."""
    ordered = torch.sort(ranks).values.double()
    middle = (len(ordered) - 1) / 2
    return float((ordered[int(middle)] + ordered[int(middle + 0.5)]) / 2)


def recall_from_ranks(
    image_ranks: torch.Tensor, text_ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for direction, ranks in (("i2t", image_ranks), ("t2i", text_ranks)):
        for k in ks:
            metrics[f"{direction}_r{k}"] = 100.0 * float((ranks <= k).double().mean())
    for direction, ranks in (("i2t", image_ranks), ("t2i", text_ranks)):
        metrics[f"{direction}_mean_rank"] = float(ranks.double().mean())
        metrics[f"{direction}_median_rank"] = median_rank(ranks)
    return metrics


def positive_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor | Sequence[int],
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based ranks (image -> text per image, text -> image per caption), after validating the inputs."""
    if block_size < 1:
        raise FdrdError(f"retrieval_recall: block_size must be positive, got {block_size}")
    text_to_image = torch.as_tensor(text_to_image, device=text_emb.device)
    _check_inputs(image_emb, text_emb, text_to_image)
    # Half-precision scores would round distinct cosines into ties; rank on float32 scores.
    image_emb = image_emb.detach().float().contiguous()
    text_emb = text_emb.detach().float().to(image_emb.device).contiguous()
    text_to_image = text_to_image.long().to(image_emb.device)
    chosen = choose_backend(backend, image_emb.device)
    return chosen.ranks(image_emb, text_emb, text_to_image, block_size)


def retrieval_recall(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, float]:
    """Recall@K in percent for both directions, plus mean and median rank (1-based).

    `text_to_image[j]` is the index of caption j's image; an image may have several captions, and
    every image needs at least one.
    """
    if not ks or any(int(k) < 1 for k in ks):
        raise FdrdError(f"retrieval_recall: ks must be positive integers, got {list(ks)}")
    image_ranks, text_ranks = positive_ranks(image_emb, text_emb, text_to_image, backend, block_size)
    return recall_from_ranks(image_ranks, text_ranks, ks)
