"""Exact image<->text retrieval recall@K, computed in blocks so that the N x M score matrix never exists.

Definitions (docs/benchmark.md has the long form):
- score(i, j) is the dot product of image embedding i and caption embedding j, accumulated in float32
  (the methods give L2-normalised embeddings, so this is the cosine). Identical vectors get identical
  scores wherever they sit, so a duplicate of a positive ties with it.
- text -> image: the rank of caption j's image is 1 + the number of OTHER images scoring >= that image.
- image -> text: image i's positive score is the best score among its own captions; its rank is 1 + the
  number of captions of OTHER images scoring >= it.
Ties count against the positive: a model that gives every pair the same score ranks every positive
last, so it gets 0 recall (for K below the candidate count), never 100.

Each (image block, caption block) score tile serves both directions: its rows are counted for image ->
text and its columns for text -> image, so the cost is one blocked GEMM plus two comparisons per score.
The positives are excluded by index, using the very tile values that were counted, so float rounding
can never make a positive count against itself. A BLAS rounds by position, so when some embeddings are
identical the torch backend ranks their distinct vectors instead (benchmark/metrics/deduplicated.py).

Backends compute the two rank vectors; `retrieval_recall` turns ranks into the metrics. Several processes
split the work by blocks of image rows (`RowShard`, `positive_rank_counts`): each shard computes the very
tiles one process computes for its rows, counts them for its images (complete) and for every caption
(partial), and the integer counts summed over shards give exactly the single-process ranks. The "torch"
backend runs on any torch device; the "triton" backend (benchmark/metrics/triton_recall.py), a fused
kernel, is picked by backend="auto" on CUDA devices when Triton is installed. Others register with
`register_recall_backend`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from benchmark.metrics.counting import count_true_per_column, count_true_per_row
from benchmark.metrics.deduplicated import deduplicated_counts, first_occurrences
from benchmark.metrics.shards import WHOLE, RowShard
from fdrd.errors import FdrdError

# A tile of 2048 x 2048 float32 scores is 16 MiB (+ 4 MiB per boolean mask): big enough that the GEMM
# runs near peak speed, small enough to sit beside a 50k x 512 embedding table on a laptop.
DEFAULT_BLOCK_SIZE = 2048

_FINITE_CHECK_ROWS = 4096

RankFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


# (image embeddings, caption embeddings, caption -> image, block size, shard) -> the shard's
# (images' beaten counts, captions' beaten counts), int64; ranks are the sums over shards plus one.
CountFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, RowShard], tuple[torch.Tensor, torch.Tensor]]


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
    # Embedding dtypes it ranks as they are (accumulating in float32); others are converted to float32,
    # which is exact for half precision.
    input_dtypes: frozenset[torch.dtype] = field(default_factory=lambda: frozenset({torch.float32}))
    # What `available` needs, for the error when it is asked for by name and missing.
    requirement: str = ""
    # Counts of one row shard, for ranking split over processes; None: the backend ranks in one piece.
    counts: CountFunction | None = None


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
            needs = f" ({backend.requirement})" if backend.requirement else ""
            raise FdrdError(
                f"recall backend {name!r} is not available on this machine{needs}; use backend='torch'"
            )
        return backend
    candidates = [
        backend
        for backend in _BACKENDS.values()
        if device.type in backend.device_types and backend.available()
    ]
    if not candidates:  # a device nobody claims (xpu, meta, ...): the plain torch backend runs on any
        return _BACKENDS["torch"]
    return max(candidates, key=lambda backend: backend.priority)


def caption_offsets(text_to_image: torch.Tensor, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions grouped by image: `order[offsets[i]:offsets[i + 1]]` are image i's caption indices."""
    order = torch.argsort(text_to_image, stable=True)
    counts = torch.bincount(text_to_image, minlength=num_images)
    offsets = torch.zeros(num_images + 1, dtype=torch.int64, device=text_to_image.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return order, offsets


def torch_blocked_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ranks of the positives with O((N + M) * D + block^2) memory; duplicates tie."""
    image_beaten, text_beaten = torch_blocked_counts(image_emb, text_emb, text_to_image, block_size, WHOLE)
    return image_beaten + 1, text_beaten + 1


def torch_blocked_counts(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int, shard: RowShard
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row shard's beaten counts of the torch path (every shard takes the same path: the duplicate
    check looks at the whole tables)."""
    image_first, text_first = first_occurrences(image_emb), first_occurrences(text_emb)
    if image_first is not None or text_first is not None:
        return deduplicated_counts(image_emb, text_emb, text_to_image, block_size, image_first, text_first, shard)
    return distinct_blocked_counts(image_emb, text_emb, text_to_image, block_size, shard)


def distinct_blocked_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ranks when no two image and no two caption embeddings are identical (distinct_blocked_counts)."""
    image_beaten, text_beaten = distinct_blocked_counts(image_emb, text_emb, text_to_image, block_size, WHOLE)
    return image_beaten + 1, text_beaten + 1


def distinct_blocked_counts(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    block_size: int,
    shard: RowShard,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beaten counts when no two image and no two caption embeddings are identical, for the image-row
    blocks of `shard` (the whole table for WHOLE).

    Captions are reordered so that those of image block b form caption block b. The diagonal tile
    (b, b) then holds every positive of both blocks: it is computed first and alone gives the
    thresholds (positive scores) of its images and captions, so the positives are compared against
    the very values they were taken from. Off-diagonal tiles hold no positive at all and are counted
    plainly. Every tile is computed exactly once; a shard computes every diagonal tile (the thresholds of
    all captions) but counts only its own blocks' rows.
    """
    num_images, num_texts = image_emb.shape[0], text_emb.shape[0]
    device = image_emb.device
    order, offsets = caption_offsets(text_to_image, num_images)
    if bool((order == torch.arange(num_texts, device=device)).all()):
        # Captions already grouped (one per image, in image order: every evaluation split): no copy.
        grouped_text, grouped_owner = text_emb, text_to_image
    else:
        grouped_text, grouped_owner = text_emb[order], text_to_image[order]
    row_bounds = list(range(0, num_images, block_size)) + [num_images]
    col_bounds = [int(offsets[bound]) for bound in row_bounds]
    blocks = [
        (row_bounds[b], row_bounds[b + 1], col_bounds[b], col_bounds[b + 1]) for b in range(len(row_bounds) - 1)
    ]
    widest = max(col_stop - col_start for _, _, col_start, col_stop in blocks)
    # One tile buffer and one mask buffer, reused: no allocation per tile.
    tile_buffer = torch.empty(min(block_size, num_images) * widest, dtype=torch.float32, device=device)
    mask_buffer = torch.empty(tile_buffer.shape, dtype=torch.bool, device=device)

    def tile_of(row_start: int, row_stop: int, col_start: int, col_stop: int) -> torch.Tensor:
        shape = (row_stop - row_start, col_stop - col_start)
        tile = tile_buffer[: shape[0] * shape[1]].view(shape)
        return torch.matmul(image_emb[row_start:row_stop], grouped_text[col_start:col_stop].T, out=tile)

    def at_least(tile: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        mask = mask_buffer[: tile.numel()].view(tile.shape)
        return torch.ge(tile, threshold, out=mask)

    image_positive = torch.empty(num_images, dtype=torch.float32, device=device)
    text_positive = torch.empty(num_texts, dtype=torch.float32, device=device)
    image_beaten = torch.zeros(num_images, dtype=torch.int64, device=device)
    text_beaten = torch.zeros(num_texts, dtype=torch.int64, device=device)

    mine = shard.blocks(len(blocks))
    for block, (row_start, row_stop, col_start, col_stop) in enumerate(blocks):
        tile = tile_of(row_start, row_stop, col_start, col_stop)
        local_owner = grouped_owner[col_start:col_stop] - row_start
        own = tile[local_owner, torch.arange(col_stop - col_start, device=device)]
        text_positive[col_start:col_stop] = own
        best = torch.full((row_stop - row_start,), float("-inf"), dtype=torch.float32, device=device)
        best = best.scatter_reduce(0, local_owner, own, reduce="amax")
        image_positive[row_start:row_stop] = best
        if block not in mine:
            continue
        # Take back the positives the counts include: each caption's own image (exactly once, its
        # score is its threshold) and, per image, those of its captions that tie its best one.
        image_beaten[row_start:row_stop] += count_true_per_row(at_least(tile, best[:, None]))
        image_beaten[row_start:row_stop].index_add_(0, local_owner, -(own >= best[local_owner]).long())
        text_beaten[col_start:col_stop] += count_true_per_column(at_least(tile, own[None, :])) - 1

    for row_start, row_stop, own_col_start, _ in (blocks[block] for block in mine):
        row_threshold = image_positive[row_start:row_stop, None]
        for _, _, col_start, col_stop in blocks:
            if col_start == own_col_start:
                continue
            tile = tile_of(row_start, row_stop, col_start, col_stop)
            image_beaten[row_start:row_stop] += count_true_per_row(at_least(tile, row_threshold))
            text_beaten[col_start:col_stop] += count_true_per_column(
                at_least(tile, text_positive[None, col_start:col_stop])
            )

    text_counts = torch.empty_like(text_beaten)
    text_counts[order] = text_beaten
    return image_beaten, text_counts


register_recall_backend(
    RecallBackend(
        name="torch", ranks=torch_blocked_ranks, device_types=frozenset({"cpu", "cuda", "mps"}),
        counts=torch_blocked_counts,
    )
)


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    # Imported on first use: importing Triton takes a second, and machines without it rank with torch.
    from benchmark.metrics.triton_recall import triton_ranks

    return triton_ranks(image_emb, text_emb, text_to_image, block_size)


def _triton_counts(
    image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: torch.Tensor, block_size: int, shard: RowShard
) -> tuple[torch.Tensor, torch.Tensor]:
    from benchmark.metrics.triton_recall import triton_counts

    return triton_counts(image_emb, text_emb, text_to_image, block_size, shard=shard)


register_recall_backend(
    RecallBackend(
        name="triton",
        ranks=_triton_ranks,
        device_types=frozenset({"cuda"}),
        priority=10,
        available=_triton_installed,
        input_dtypes=frozenset({torch.float32, torch.bfloat16, torch.float16}),
        requirement="it needs the triton package: pip install triton",
        counts=_triton_counts,
    )
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
        # In row chunks: isfinite over the whole table would briefly take several times its memory.
        for start in range(0, emb.shape[0], _FINITE_CHECK_ROWS):
            finite = torch.isfinite(emb[start : start + _FINITE_CHECK_ROWS]).all(1)
            if not bool(finite.all()):
                row = start + int(torch.nonzero(~finite)[0])
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
    chosen, image_emb, text_emb, text_to_image = _prepared(image_emb, text_emb, text_to_image, backend, block_size)
    return chosen.ranks(image_emb, text_emb, text_to_image, block_size)


def positive_rank_counts(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor | Sequence[int],
    shard: RowShard,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row shard's (images' beaten counts, captions' beaten counts), int64: summed over the shards of
    one count they plus one are exactly positive_ranks' ranks. Every shard takes the whole tables."""
    chosen, image_emb, text_emb, text_to_image = _prepared(image_emb, text_emb, text_to_image, backend, block_size)
    if chosen.counts is None:
        raise FdrdError(f"recall backend {chosen.name!r} cannot rank in shards; rank in one process")
    return chosen.counts(image_emb, text_emb, text_to_image, block_size, shard)


def supports_shards(backend: str, device: torch.device) -> bool:
    return choose_backend(backend, device).counts is not None


def _prepared(image_emb, text_emb, text_to_image, backend: str, block_size: int):
    """(backend, image, text, owners) validated and in the dtype and layout the backend ranks."""
    if block_size < 1:
        raise FdrdError(f"retrieval_recall: block_size must be positive, got {block_size}")
    text_to_image = torch.as_tensor(text_to_image, device=text_emb.device)
    _check_inputs(image_emb, text_emb, text_to_image)
    chosen = choose_backend(backend, image_emb.device)
    # Scores are always accumulated in float32 (half-precision scores would round distinct cosines into
    # ties); a backend that multiplies half-precision inputs natively gets them as they are.
    dtype = image_emb.dtype
    if dtype != text_emb.dtype or dtype not in chosen.input_dtypes:
        dtype = torch.float32
    image_emb = image_emb.detach().to(dtype).contiguous()
    text_emb = text_emb.detach().to(image_emb.device, dtype).contiguous()
    return chosen, image_emb, text_emb, text_to_image.long().to(image_emb.device)


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
