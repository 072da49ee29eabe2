"""Two CPU ranks (gloo) against one process: the ranking split over ranks is exact, the gradient of a global
batch split over ranks is the single-process gradient (in-batch negatives gathered, DCAR's per-image terms
as shares, a rank idle when the batch is smaller than the world), the trainer's global batches are the
single-process ones, and encoding dealt round robin gives the single-process embeddings bit for bit.

The ranks run tests/benchmark/gloo_checks.py under torchrun (one launch for all, a few seconds). The
references are computed here, in one process, with one thread as the ranks have (torchrun's default): an
embedding then depends on nothing but the batch it was computed in.

Tolerances: integer ranks and encodings must be identical. Gradients and trained parameters may differ in
the last bits only: summed over ranks, a gradient is a sum of two partial sums in another order (fp32
addition is not associative) and a matrix product over a half batch may round differently from one over the
whole, so they are compared at rtol 1e-4 / atol 1e-6 (fp32 keeps ~7 digits; the differences observed are
~1e-8 relative, and a wrong term, a missing negative or a gradient counted twice is off by 1e-2 or more).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmark import collectives
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.evaluation import encode_split, encode_texts_once
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import resolve_run
from benchmark.metrics import positive_ranks
from benchmark.train import seed_everything, train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gloo_checks  # noqa: E402  (the ranks' script: its constants and helpers are shared with the references)

CPU = torch.device("cpu")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def rank_environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    }
    return {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ranks_output(synthetic_fdrd, tiny_clip_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gloo")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(HERE / "gloo_checks.py"),
        str(synthetic_fdrd),
        str(tiny_clip_dir),
        str(out),
    ]
    done = subprocess.run(command, env=rank_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return load_file(str(out / "tensors.safetensors")), json.loads((out / "facts.json").read_text())


@pytest.fixture(scope="module")
def train_split(synthetic_fdrd):
    return load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train")


def test_ranking_split_over_ranks_is_exactly_one_process(ranks_output):
    tensors, _ = ranks_output
    images, texts, owners = gloo_checks.planted_tables(5)
    expected = positive_ranks(images, texts, owners, backend="torch", block_size=8)
    assert torch.equal(tensors["i2t"], expected[0]) and torch.equal(tensors["t2i"], expected[1])
    assert (expected[0] > 1).any() and (
        expected[1] > 1
    ).any()  # not a perfect ranking that any split gets right


@pytest.mark.parametrize("name", ["coop", "dcar"])
@pytest.mark.parametrize("label", ["nine", "one"])
def test_a_global_batch_over_two_ranks_has_the_single_process_gradient(
    ranks_output, tiny_backbone, train_split, name, label
):
    tensors, facts = ranks_output
    rows = gloo_checks.GRADIENT_BATCHES[label]
    spec = resolve_run(name, {"n_ctx": 2} if name == "coop" else {})
    with one_thread():
        seed_everything(0)
        method = spec.method_cls(tiny_backbone, spec.config)
        method.train()
        batches = SplitBatches(train_split, method, training=True)
        losses = method.loss(batches.batch(rows, key=gloo_checks.KEY))
        losses["loss"].backward()
    assert facts[f"{name}-{label}-loss"] == pytest.approx(float(losses["loss"].detach()), rel=1e-5)
    compared = 0
    for parameter_name, parameter in method.named_parameters():
        if not parameter.requires_grad or parameter.grad is None:
            continue
        got = tensors[f"{name}-{label}-{parameter_name}"]
        torch.testing.assert_close(got, parameter.grad, **TOLERANCE)
        compared += int(parameter.grad.abs().sum() > 0)
    # Every parameter got a real gradient (with one record CoOp's contrastive loss is constant: only DCAR's
    # per-image terms move anything, and they must come through from the one active rank).
    expected_moving = 0 if (name, label) == ("coop", "one") else len(method.trainable_parameters())
    assert compared == expected_moving


def test_the_trainers_global_batches_and_result_are_one_process(ranks_output, tiny_backbone, train_split):
    tensors, facts = ranks_output
    with one_thread():
        seed_everything(3)
        spy = gloo_checks.IdSpy(tiny_backbone, gloo_checks.spy_config())
        features = FeatureCache().features(spy, train_split, device=CPU, batch_size=5, precision="fp32")
        report = train(spy, SplitBatches(train_split, spy, features), seed=3, device=CPU)
    assert torch.equal(tensors["cached-features"], features)
    rank0, rank1 = facts["seen"]
    # Steps of 7 records: each rank saw its contiguous slice, the first rank the larger half.
    assert len(rank0) == len(rank1) == len(spy.seen) == 2 * 4
    for single, first, second in zip(spy.seen, rank0, rank1, strict=True):
        assert first + second == single
        assert collectives.shard_sizes(len(single), 2) == [len(first), len(second)]
    epochs = [sorted(sum(spy.seen[4 * epoch : 4 * epoch + 4], [])) for epoch in range(2)]
    assert epochs[0] == epochs[1] == sorted(train_split["id"])  # every record once per epoch
    assert spy.seen[:4] != spy.seen[4:]  # in a new order each epoch
    assert facts["spy-losses"] == pytest.approx(report.loss_per_epoch, rel=1e-5)
    torch.testing.assert_close(tensors["spy-mix"], spy.mix.detach(), **TOLERANCE)


def test_encoding_dealt_round_robin_is_bit_identical(ranks_output, tiny_backbone, synthetic_fdrd):
    tensors, _ = ranks_output
    test_split = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "test")
    zeroshot = resolve_run("zeroshot")
    method = zeroshot.method_cls(tiny_backbone, zeroshot.config)
    with one_thread():
        images, texts = encode_split(method, SplitBatches(test_split, method), device=CPU, batch_size=5)
        captions = encode_texts_once(method, list(test_split["caption"]), device=CPU, batch_size=5)
    assert torch.equal(tensors["encoded-images"], images) and torch.equal(tensors["encoded-texts"], texts)
    assert torch.equal(tensors["negative-texts"], captions)


@pytest.mark.parametrize(("count", "parts"), [(0, 2), (1, 3), (7, 2), (9, 4), (64, 8)])
def test_a_global_batch_splits_into_contiguous_slices_one_per_rank(count, parts):
    rows = list(range(100, 100 + count))
    slices = [collectives.shard_rows(rows, index, parts) for index in range(parts)]
    assert sum(slices, []) == rows
    sizes = [len(part) for part in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
