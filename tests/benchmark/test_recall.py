"""Streaming recall@K against a brute-force full-matrix reference, with planted ties and edge cases."""

from __future__ import annotations

import pytest
import torch

from benchmark.metrics import recall as recall_module
from benchmark.metrics import retrieval_recall
from benchmark.metrics.deduplicated import deduplicated_ranks, first_occurrences
from fdrd.errors import FdrdError


def reference_recall(image_emb, text_emb, text_to_image, ks=(1, 5, 10)):
    """The obvious way: the full score matrix, one candidate at a time, in float64."""
    # Element-wise products summed in one fixed order: identical vectors give bit-identical scores.
    scores = (image_emb.double()[:, None, :] * text_emb.double()[None, :, :]).sum(-1)
    num_images, num_texts = scores.shape
    owner = [int(i) for i in text_to_image]
    image_ranks, text_ranks = [], []
    for i in range(num_images):
        own = [j for j in range(num_texts) if owner[j] == i]
        best = max(scores[i, j] for j in own)
        image_ranks.append(1 + sum(1 for j in range(num_texts) if owner[j] != i and scores[i, j] >= best))
    for j in range(num_texts):
        positive = scores[owner[j], j]
        text_ranks.append(1 + sum(1 for i in range(num_images) if i != owner[j] and scores[i, j] >= positive))
    result = {}
    for name, ranks in (("i2t", image_ranks), ("t2i", text_ranks)):
        for k in ks:
            result[f"{name}_r{k}"] = 100.0 * sum(r <= k for r in ranks) / len(ranks)
        ordered = sorted(ranks)
        n = len(ordered)
        result[f"{name}_mean_rank"] = sum(ranks) / n
        result[f"{name}_median_rank"] = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    return result


def quantised(generator, rows, dim, levels=4):
    # Multiples of 1/levels: every dot product is exact in float32, so ties planted here are exact
    # ties for the blocked GEMM too, whatever its summation order.
    return torch.randint(-levels, levels + 1, (rows, dim), generator=generator).float() / levels


def assert_same(got, expected):
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


@pytest.mark.parametrize("block_size", [1, 3, 7, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantised_scores_with_many_ties_match_reference(seed, block_size):
    generator = torch.Generator().manual_seed(seed)
    num_images, dim = 23, 3
    image_emb = quantised(generator, num_images, dim, levels=1)  # 27 distinct vectors: many duplicates
    # Every image gets at least one caption, some get up to four, in shuffled order.
    owners = torch.cat([torch.arange(num_images), torch.randint(0, num_images, (31,), generator=generator)])
    text_to_image = owners[torch.randperm(len(owners), generator=generator)]
    text_emb = quantised(generator, len(text_to_image), dim, levels=1)
    got = retrieval_recall(image_emb, text_emb, text_to_image, ks=(1, 2, 5, 10), block_size=block_size)
    assert_same(got, reference_recall(image_emb, text_emb, text_to_image, ks=(1, 2, 5, 10)))


@pytest.mark.parametrize("block_size", [5, 16, 2048])
def test_random_float_embeddings_with_duplicates_match_reference(block_size):
    generator = torch.Generator().manual_seed(7)
    image_emb = torch.nn.functional.normalize(torch.randn(40, 16, generator=generator), dim=1)
    image_emb[10] = image_emb[3]  # duplicate images: an exact tie for every caption of either
    image_emb[33] = image_emb[3]
    text_to_image = torch.cat([torch.arange(40), torch.tensor([3, 3, 10, 39])])
    text_emb = image_emb[text_to_image] + 0.8 * torch.randn(len(text_to_image), 16, generator=generator)
    text_emb[41] = text_emb[0]  # duplicate caption of a different image
    got = retrieval_recall(image_emb, text_emb, text_to_image, block_size=block_size)
    expected = reference_recall(image_emb, text_emb, text_to_image)
    assert_same(got, expected)
    assert expected["t2i_r1"] < 100.0  # the planted duplicates cost caption 3 its first place


def test_all_equal_scores_give_zero_recall_not_hundred():
    image_emb = torch.ones(20, 4)
    text_emb = torch.ones(20, 4)
    got = retrieval_recall(image_emb, text_emb, torch.arange(20), block_size=6)
    assert got["i2t_r1"] == got["t2i_r1"] == got["i2t_r10"] == got["t2i_r10"] == 0.0
    assert got["i2t_mean_rank"] == got["t2i_mean_rank"] == 20.0


def test_perfect_embeddings_give_full_recall():
    image_emb = torch.eye(12)
    got = retrieval_recall(image_emb, image_emb.clone(), torch.arange(12), block_size=5)
    assert got["i2t_r1"] == got["t2i_r1"] == 100.0
    assert got["i2t_median_rank"] == got["t2i_median_rank"] == 1.0


def test_k_larger_than_candidates_and_single_image():
    generator = torch.Generator().manual_seed(3)
    image_emb = torch.randn(3, 8, generator=generator)
    text_emb = torch.randn(3, 8, generator=generator)
    got = retrieval_recall(image_emb, text_emb, [2, 0, 1], ks=(1, 5, 10))
    assert got["i2t_r5"] == got["t2i_r10"] == 100.0
    assert_same(got, reference_recall(image_emb, text_emb, [2, 0, 1]))

    one = retrieval_recall(torch.randn(1, 8), torch.randn(2, 8), [0, 0])
    assert one["i2t_r1"] == one["t2i_r1"] == 100.0


def test_half_precision_inputs_are_ranked_in_float32():
    generator = torch.Generator().manual_seed(4)
    image_emb = quantised(generator, 30, 8).half()
    text_emb = quantised(generator, 30, 8).half()
    got = retrieval_recall(image_emb, text_emb, torch.arange(30), block_size=8)
    assert_same(got, reference_recall(image_emb.float(), text_emb.float(), torch.arange(30)))


def test_tiles_never_exceed_the_block(monkeypatch):
    seen = []
    real_matmul = torch.matmul

    def spy(left, right, **kwargs):
        out = real_matmul(left, right, **kwargs)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "matmul", spy)
    generator = torch.Generator().manual_seed(5)
    owners = torch.arange(70) % 50
    retrieval_recall(torch.randn(50, 4, generator=generator), torch.randn(70, 4, generator=generator),
                     owners, block_size=16)
    # A tile is 16 images by the captions of at most 16 images (images 0..19 have two captions).
    most_captions = max(int(torch.bincount(owners)[start : start + 16].sum()) for start in range(0, 50, 16))
    assert len(seen) == 16  # 4 x 4 blocks, each computed exactly once
    assert all(rows <= 16 and cols <= most_captions for rows, cols in seen)


@pytest.mark.parametrize("shape", [(1, 8), (3, 5), (300, 16), (7, 8 * 300), (256, 2048), (513, 24)])
def test_packed_true_counts_equal_plain_sums(shape):
    generator = torch.Generator().manual_seed(shape[0] * 7 + shape[1])
    for density in (0.0, 0.3, 1.0):
        mask = torch.rand(shape, generator=generator) < density
        assert torch.equal(recall_module.count_true_per_row(mask), mask.sum(1))
        assert torch.equal(recall_module.count_true_per_column(mask), mask.sum(0))


@pytest.mark.parametrize(
    ("images", "texts", "owners", "message"),
    [
        (torch.randn(3, 4), torch.randn(2, 4), [0, 1], r"image\(s\) have no caption \(indices 2\)"),
        (torch.randn(3, 4), torch.randn(3, 5), [0, 1, 2], "width"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 3], "caption 2 points to image 3"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1], "one image index per caption"),
        (torch.randn(0, 4), torch.randn(3, 4), [0, 1, 2], "no images"),
        (torch.full((2, 4), float("nan")), torch.randn(2, 4), [0, 1], "NaN"),
        (torch.randn(2, 4), torch.randn(2, 4), [0.0, 1.0], "integer"),
    ],
)
def test_bad_inputs_raise_clear_errors(images, texts, owners, message):
    with pytest.raises(FdrdError, match=message):
        retrieval_recall(images, texts, torch.tensor(owners))


def test_unknown_backend_lists_known_ones():
    with pytest.raises(FdrdError, match="known backends: auto, torch"):
        retrieval_recall(torch.randn(2, 3), torch.randn(2, 3), [0, 1], backend="nope")


def test_auto_prefers_a_registered_specialised_backend(monkeypatch):
    calls = []

    def fake_ranks(image_emb, text_emb, text_to_image, block_size):
        calls.append(block_size)
        return recall_module.torch_blocked_ranks(image_emb, text_emb, text_to_image, block_size)

    monkeypatch.setitem(
        recall_module._BACKENDS,
        "fused",
        recall_module.RecallBackend("fused", fake_ranks, frozenset({"cpu"}), priority=10),
    )
    retrieval_recall(torch.randn(4, 3), torch.randn(4, 3), torch.arange(4), block_size=2)
    assert calls == [2]


def test_auto_falls_back_to_torch_on_a_device_no_backend_claims():
    assert recall_module.choose_backend("auto", torch.device("meta")).name == "torch"
    assert recall_module.choose_backend("auto", torch.device("cpu")).name == "torch"


def test_non_finite_embedding_is_named_by_row_across_check_chunks():
    text_emb = torch.randn(5000, 4)
    text_emb[4500, 2] = float("inf")
    with pytest.raises(FdrdError, match="caption embedding 4500 holds NaN or inf"):
        retrieval_recall(torch.randn(5000, 4), text_emb, torch.arange(5000))


def test_first_occurrences_finds_identical_rows_and_nothing_else():
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [0.0, -0.0], [-0.0, 0.0], [3.0, 4.0], [5.0, 6.0]])
    assert first_occurrences(rows).tolist() == [0, 1, 0, 3, 3, 1, 6]  # -0.0 and +0.0 are the same value
    assert first_occurrences(torch.eye(5)) is None
    assert first_occurrences(rows.bfloat16()).tolist() == [0, 1, 0, 3, 3, 1, 6]


@pytest.mark.parametrize("block_size", [1, 3, 7])
def test_the_deduplicating_path_matches_the_reference_without_duplicates_too(block_size):
    generator = torch.Generator().manual_seed(8)
    image_emb = quantised(generator, 29, 6)  # 9^6 possible rows: distinct here, but many exact score ties
    owners = torch.cat([torch.arange(29), torch.randint(0, 29, (17,), generator=generator)])
    text_to_image = owners[torch.randperm(len(owners), generator=generator)]
    text_emb = quantised(generator, len(text_to_image), 6)
    assert first_occurrences(image_emb) is None and first_occurrences(text_emb) is None
    ranks = deduplicated_ranks(image_emb, text_emb, text_to_image, block_size, None, None)
    assert_same(
        recall_module.recall_from_ranks(*ranks, ks=(1, 2, 5)),
        reference_recall(image_emb, text_emb, text_to_image, ks=(1, 2, 5)),
    )


@pytest.mark.parametrize("block_size", [1, 3, 7, 16])
def test_copies_across_tile_edges_always_tie_with_the_positive(block_size):
    # Width 77 and these copies make MKL's blocked GEMM round some copies differently from the positive
    # (checked: ranking with `distinct_blocked_ranks` on these data gets several ranks wrong).
    generator = torch.Generator().manual_seed(0)
    image_emb = torch.nn.functional.normalize(torch.randn(50, 77, generator=generator), dim=1)
    copies = [2, 3, 8, 15, 16, 17, 33, 49]
    image_emb[copies] = image_emb[1].clone()
    text_to_image = torch.cat([torch.arange(50), torch.tensor([1, 1, 30])])  # image 1 has three captions
    text_emb = image_emb[text_to_image].clone()
    text_emb[[20, 21, 40]] = text_emb[50].clone()  # copies of a caption of image 1, owned by other images
    got = retrieval_recall(image_emb, text_emb, text_to_image, ks=(1, 5, 10), block_size=block_size)
    assert_same(got, reference_recall(image_emb, text_emb, text_to_image, ks=(1, 5, 10)))
    image_ranks, text_ranks = recall_module.positive_ranks(image_emb, text_emb, text_to_image, block_size=block_size)
    # Caption 1 faces the 8 copies of image 1; image 1's best caption faces the 8 captions of the copies
    # and the 3 copies of its own second caption.
    assert int(text_ranks[1]) == 9 and int(image_ranks[1]) == 12
