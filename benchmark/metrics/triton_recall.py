"""The "triton" recall backend: one fused kernel tiles the image x caption score GEMM and counts ranks in its
epilogue, so no score is ever written to memory (each tile lives in registers).

Same contract as the streaming torch path (benchmark/metrics/recall.py): exact ranks, ties count against the
positive, positives excluded by index, several captions per image, N != M. Captions are grouped by image
(a permutation when they are not already), so the positives of a block of images lie in a narrow band of
caption tiles. Two launches of the same kernel:

1. FIND_POSITIVES, over the band tiles only (about one per image block): the tile is computed exactly as
   in step 2 (same rows, same columns, same code) and each caption's positive score is taken from it;
   each image's threshold is then the best score among its captions.
2. Over every tile: a score counts against image i when it is >= i's threshold and its caption is not
   i's own, and against caption j when it is >= j's positive score and its image is not j's owner. The
   per-tile counts are added atomically, so no score is stored anywhere.

Identical vectors get identical scores wherever they fall: on the GPU a tile element is a fixed sequence
of MMA (or, for fp32, IEEE FMA) steps over the same K blocks, whatever its position in the tile, so a
duplicate of the positive always ties with it (the streaming torch path must deduplicate to get this,
because BLAS rounds by position). bf16/fp16 inputs are multiplied as they are with fp32 accumulation;
fp32 inputs use input_precision="ieee" (no TF32).

On CPU tensors the kernel runs only in Triton's interpreter (TRITON_INTERPRET=1), which is for tests.
There `tl.dot` becomes numpy's BLAS, which rounds by position like any BLAS, and it multiplies bfloat16
bit patterns instead of values (triton-lang/triton#11584); so the interpreted kernel upcasts each
operand tile to fp32 (exact for bf16 and fp16, whose products are exact in fp32 too) and sums the
products over K with one broadcast reduction, which adds in the same order for every element.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from benchmark.metrics.recall import caption_offsets
from benchmark.metrics.shards import WHOLE, RowShard
from fdrd.errors import FdrdError

# tl.dot needs every tile edge to be at least 16.
_SMALLEST_TILE = 16


@dataclass(frozen=True)
class TileConfig:
    """One launch configuration; both launches of one ranking use the same, so they compute alike."""

    block_m: int  # images per tile
    block_n: int  # captions per tile
    block_k: int  # embedding width consumed per step
    group_m: int = 8  # image tiles that share a sweep over caption tiles, for L2 reuse
    num_warps: int = 8
    num_stages: int = 3


# Starting points for a Hopper-class GPU (perf/recall_gpu.py --configs compares others): half precision
# runs on tensor cores in 128 x 128 tiles; fp32 with IEEE precision runs on FMA units, where smaller tiles
# keep the accumulator in registers.
HALF_TILES = TileConfig(block_m=128, block_n=128, block_k=64, group_m=8, num_warps=8, num_stages=3)
FLOAT_TILES = TileConfig(block_m=64, block_n=64, block_k=32, group_m=8, num_warps=4, num_stages=2)


def _floor_power_of_two(value: int) -> int:
    return 1 << (max(value, 1).bit_length() - 1)


def default_tiles(dtype: torch.dtype, dim: int, block_size: int) -> TileConfig:
    """The tile configuration for `dtype`, its tile edges capped by the caller's block_size."""
    base = FLOAT_TILES if dtype == torch.float32 else HALF_TILES
    cap = max(_SMALLEST_TILE, _floor_power_of_two(block_size))
    # A narrow embedding needs no wide K step (masked lanes would only multiply zeros).
    block_k = max(_SMALLEST_TILE, min(base.block_k, triton.next_power_of_2(dim)))
    block_m, block_n = min(base.block_m, cap), min(base.block_n, cap)
    # About 1024 scores per warp: a small tile gets fewer warps instead of idle ones.
    num_warps = min(base.num_warps, max(1, block_m * block_n // 1024))
    return TileConfig(block_m, block_n, block_k, base.group_m, num_warps, base.num_stages)


def _recall_tiles(
    image_ptr,
    text_ptr,
    owner_ptr,  # (M,) int32: image of each caption, captions grouped by image
    offsets_ptr,  # (N + 1,) int32: captions of image i are offsets[i]:offsets[i + 1]
    band_ptr,  # (2, T) int32: the (image tile, caption tile) pairs that hold positives
    positive_ptr,  # (M,) float32: each caption's positive score (written by FIND_POSITIVES)
    best_ptr,  # (N,) float32: each image's best positive score
    image_count_ptr,  # (N,) int32: captions of other images scoring >= the image's best
    text_count_ptr,  # (M,) int32: other images scoring >= the caption's positive
    num_images,
    num_texts,
    first_image_tile,  # the counting launch covers image tiles first_image_tile .. + image_tiles - 1
    image_tiles,
    num_band_tiles,
    DIM: tl.constexpr,  # the embedding width: fixed per model, so the K loop is known when compiling
    FIND_POSITIVES: tl.constexpr,
    INTERPRETED: tl.constexpr,
    IEEE: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    if FIND_POSITIVES:
        tile_m = tl.load(band_ptr + pid)
        tile_n = tl.load(band_ptr + num_band_tiles + pid)
    else:
        # Grouped order: GROUP_M image tiles sweep the caption tiles together, so each caption tile is
        # read from L2 rather than memory by most of them.
        per_group = GROUP_M * tl.cdiv(num_texts, BLOCK_N)
        first_m = (pid // per_group) * GROUP_M
        group_size = min(image_tiles - first_m, GROUP_M)
        tile_m = first_image_tile + first_m + (pid % per_group) % group_size
        tile_n = (pid % per_group) // group_size
    rows = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < num_images
    col_ok = cols < num_texts

    # The score tile. 64-bit offsets: rows * DIM passes 2**31 on large tables.
    row_base = image_ptr + rows.to(tl.int64)[:, None] * DIM
    col_base = text_ptr + cols.to(tl.int64)[:, None] * DIM
    scores = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k_start in range(0, DIM, BLOCK_K):
        ks = k_start + tl.arange(0, BLOCK_K)
        if EVEN_K:
            a = tl.load(row_base + ks[None, :], mask=row_ok[:, None], other=0.0)
            b = tl.load(col_base + ks[None, :], mask=col_ok[:, None], other=0.0)
        else:
            a = tl.load(row_base + ks[None, :], mask=row_ok[:, None] & (ks[None, :] < DIM), other=0.0)
            b = tl.load(col_base + ks[None, :], mask=col_ok[:, None] & (ks[None, :] < DIM), other=0.0)
        if INTERPRETED:
            products = a.to(tl.float32)[:, :, None] * tl.trans(b.to(tl.float32))[None, :, :]
            scores += tl.sum(products, axis=1)
        elif IEEE:
            scores = tl.dot(a, tl.trans(b), scores, input_precision="ieee")
        else:
            scores = tl.dot(a, tl.trans(b), scores)

    if FIND_POSITIVES:
        owner = tl.load(owner_ptr + cols, mask=col_ok, other=-1)
        is_positive = rows[:, None] == owner[None, :]
        positive = tl.max(tl.where(is_positive, scores, float("-inf")), axis=0)
        owner_here = (owner >= tile_m * BLOCK_M) & (owner < tile_m * BLOCK_M + BLOCK_M)
        tl.store(positive_ptr + cols, positive, mask=col_ok & owner_here)
    else:
        best = tl.load(best_ptr + rows, mask=row_ok, other=float("inf"))
        positive = tl.load(positive_ptr + cols, mask=col_ok, other=float("inf"))
        against_image = (scores >= best[:, None]) & col_ok[None, :]
        against_text = (scores >= positive[None, :]) & row_ok[:, None]
        # Positives are excluded by index, and only tiles that meet the captions of their images hold any.
        first_own = tl.load(offsets_ptr + tile_m * BLOCK_M)
        last_own = tl.load(offsets_ptr + tl.minimum(tile_m * BLOCK_M + BLOCK_M, num_images))
        if (tile_n * BLOCK_N < last_own) & (tile_n * BLOCK_N + BLOCK_N > first_own):
            owner = tl.load(owner_ptr + cols, mask=col_ok, other=-1)
            other_pair = rows[:, None] != owner[None, :]
            against_image = against_image & other_pair
            against_text = against_text & other_pair
        tl.atomic_add(image_count_ptr + rows, tl.sum(against_image.to(tl.int32), axis=1), mask=row_ok)
        tl.atomic_add(text_count_ptr + cols, tl.sum(against_text.to(tl.int32), axis=0), mask=col_ok)


_KERNELS: dict[bool, object] = {}


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1), read at call time."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _kernel():
    # Decorated on first use in each mode: triton.jit reads TRITON_INTERPRET when it decorates, and a test
    # process may set it after this module was imported.
    mode = interpreting()
    if mode not in _KERNELS:
        _KERNELS[mode] = triton.jit(_recall_tiles)
    return _KERNELS[mode]


def _band_tiles(offsets: torch.Tensor, num_images: int, tiles: TileConfig) -> torch.Tensor:
    """(2, T) int32: for each image tile, every caption tile that holds one of its images' captions."""
    device = offsets.device
    starts = torch.arange(0, num_images, tiles.block_m, device=device)
    stops = torch.clamp(starts + tiles.block_m, max=num_images)
    first = offsets[starts] // tiles.block_n
    last = (offsets[stops] - 1) // tiles.block_n
    widths = last - first + 1
    tile_m = torch.repeat_interleave(torch.arange(len(starts), device=device), widths)
    position = torch.arange(len(tile_m), device=device) - torch.repeat_interleave(
        torch.cumsum(widths, 0) - widths, widths
    )
    tile_n = torch.repeat_interleave(first, widths) + position
    return torch.stack([tile_m, tile_n]).to(torch.int32).contiguous()


def triton_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    block_size: int,
    tiles: TileConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based (image -> text, text -> image) ranks with the fused kernel; `block_size` caps the tile edges.

    Inputs arrive validated, on one device, both float32, bfloat16 or float16, rows contiguous.
    """
    image_count, text_count = triton_counts(image_emb, text_emb, text_to_image, block_size, tiles)
    return image_count + 1, text_count + 1


def triton_counts(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    block_size: int,
    tiles: TileConfig | None = None,
    shard: RowShard = WHOLE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The beaten counts (int64) of `shard`'s image tiles: the band pass finds every positive score, the
    counting launch covers only the shard's image tiles (benchmark/metrics/shards.py)."""
    interpreted = interpreting()
    if image_emb.device.type != "cuda" and not interpreted:
        raise FdrdError(
            f"recall backend 'triton' runs on CUDA tensors; these are on {image_emb.device} (on CPU it runs "
            "only in Triton's interpreter, TRITON_INTERPRET=1, which is for tests); use backend='torch'"
        )
    num_images, dim = image_emb.shape
    num_texts = text_emb.shape[0]
    device = image_emb.device
    tiles = tiles or default_tiles(image_emb.dtype, dim, block_size)
    order, offsets = caption_offsets(text_to_image, num_images)
    grouped = bool((order == torch.arange(num_texts, device=device)).all())
    grouped_text = text_emb if grouped else text_emb[order].contiguous()
    owner = text_to_image[order]
    band = _band_tiles(offsets, num_images, tiles)

    positive = torch.full((num_texts,), float("nan"), dtype=torch.float32, device=device)
    best = torch.empty(num_images, dtype=torch.float32, device=device)
    image_count = torch.zeros(num_images, dtype=torch.int32, device=device)
    text_count = torch.zeros(num_texts, dtype=torch.int32, device=device)
    owner32 = owner.to(torch.int32)
    offsets32 = offsets.to(torch.int32)
    kernel = _kernel()
    constants = dict(
        DIM=dim,
        INTERPRETED=interpreted,
        IEEE=image_emb.dtype == torch.float32,
        EVEN_K=dim % tiles.block_k == 0,
        BLOCK_M=tiles.block_m,
        BLOCK_N=tiles.block_n,
        BLOCK_K=tiles.block_k,
        GROUP_M=tiles.group_m,
        num_warps=tiles.num_warps,
        num_stages=tiles.num_stages,
    )
    own_tiles = shard.blocks(triton.cdiv(num_images, tiles.block_m))
    arguments = (
        image_emb,
        grouped_text,
        owner32,
        offsets32,
        band,
        positive,
        best,
        image_count,
        text_count,
        num_images,
        num_texts,
        own_tiles.start,
        len(own_tiles),
        band.shape[1],
    )
    grid = len(own_tiles) * triton.cdiv(num_texts, tiles.block_n)
    # Triton launches on the current CUDA device: make it the tensors' one (cuda:1 under a launcher).
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernel[(band.shape[1],)](*arguments, FIND_POSITIVES=True, **constants)
        if bool(torch.isnan(positive).any()):  # every caption's tile is in the band: a bug, not bad input
            raise RuntimeError("triton recall: the band pass left a caption without its positive score")
        best = best.scatter_reduce_(0, owner, positive, reduce="amax", include_self=False)
        if grid:
            kernel[(grid,)](*arguments, FIND_POSITIVES=False, **constants)

    text_counts = torch.empty(num_texts, dtype=torch.int64, device=device)
    text_counts[order] = text_count.to(torch.int64)
    return image_count.to(torch.int64), text_counts
