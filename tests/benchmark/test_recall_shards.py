"""Ranking split over processes: the counts of every row shard, summed, are exactly the single-process ranks
(integers, no tolerance), on random data with planted ties and duplicates, for the torch path (distinct and
deduplicating) and the Triton kernel (in its interpreter on CPU), with more shards than blocks too."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from benchmark.metrics import RowShard, positive_rank_counts, positive_ranks
from benchmark.metrics.deduplicated import first_occurrences
from benchmark.metrics.recall import torch_blocked_ranks

HAS_TRITON = importlib.util.find_spec("triton") is not None


def tables(seed: int, num_images: int, extra: int, dim: int, duplicates: bool):
    generator = torch.Generator().manual_seed(seed)
    owners = torch.cat(
        [torch.arange(num_images), torch.randint(0, num_images, (extra,), generator=generator)]
    )
    owners = owners[torch.randperm(len(owners), generator=generator)]
    while True:
        # Entries in {-1, -1/2, 0, 1/2, 1}: frequent exact ties whatever the summation order.
        image = torch.randint(-2, 3, (num_images, dim), generator=generator).float() / 2
        text = torch.randint(-2, 3, (len(owners), dim), generator=generator).float() / 2
        if duplicates:
            image[num_images - 1] = image[0]
            text[-1] = text[0]
            return image, text, owners
        if first_occurrences(image) is None and first_occurrences(text) is None:
            return image, text, owners  # distinct rows: the path without deduplication


def summed(image, text, owners, shards: int, backend: str, block_size: int):
    image_total = torch.zeros(image.shape[0], dtype=torch.int64)
    text_total = torch.zeros(text.shape[0], dtype=torch.int64)
    for index in range(shards):
        image_part, text_part = positive_rank_counts(
            image, text, owners, RowShard(index, shards), backend, block_size
        )
        image_total += image_part.cpu()
        text_total += text_part.cpu()
    return image_total + 1, text_total + 1


@pytest.mark.parametrize("duplicates", [False, True], ids=["distinct", "duplicates"])
@pytest.mark.parametrize("shards", [1, 2, 3, 5])
@pytest.mark.parametrize("block_size", [4, 7, 64])
def test_torch_shards_sum_to_the_single_process_ranks(duplicates, shards, block_size):
    image, text, owners = tables(shards * 10 + block_size, 29, 17, 6, duplicates)
    expected = positive_ranks(image, text, owners, backend="torch", block_size=block_size)
    got = summed(image, text, owners, shards, "torch", block_size)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    # The data really has ties (else any order of counting would agree).
    scores = image @ text.T
    assert scores.unique().numel() < scores.numel() // 2


def test_a_shard_counts_only_its_own_images():
    image, text, owners = tables(3, 20, 5, 6, duplicates=False)
    first, _ = positive_rank_counts(image, text, owners, RowShard(0, 2), "torch", 4)
    second, _ = positive_rank_counts(image, text, owners, RowShard(1, 2), "torch", 4)
    ranks, _ = torch_blocked_ranks(image, text, owners, 4)
    # Five blocks of four images: shard 0 takes blocks 0-1 (images 0-7), shard 1 blocks 2-4.
    assert torch.equal(first[:8], ranks[:8] - 1) and not first[8:].any()
    assert torch.equal(second[8:], ranks[8:] - 1) and not second[:8].any()


def test_row_shards_cover_every_block_once():
    for blocks in range(0, 12):
        for count in range(1, 6):
            covered = [block for index in range(count) for block in RowShard(index, count).blocks(blocks)]
            assert covered == list(range(blocks))
    with pytest.raises(ValueError):
        RowShard(2, 2)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("shards", [2, 3])
def test_triton_shards_sum_to_its_own_single_process_ranks(monkeypatch, shards):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    image, text, owners = tables(shards, 70, 21, 24, duplicates=True)
    expected = positive_ranks(image, text, owners, backend="triton", block_size=16)
    got = summed(image, text, owners, shards, "triton", 16)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
