"""Loader workers: batches built by 0 or 2 worker processes are bit-identical (augmentation, negatives and the
per-record draws are keyed by seed, epoch and record, never by the worker or the batch), and so is training
and encoding; an error in a worker comes back as one clear error."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.evaluation import encode_split
from benchmark.loader import default_workers, planned_batches
from benchmark.methods.base import resolve_run
from benchmark.train import seed_everything, train
from fdrd.errors import FdrdError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def train_split(synthetic_fdrd):
    return load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train")


def build(name, backbone, **overrides):
    spec = resolve_run(name, overrides)
    seed_everything(0)
    return spec.method_cls(backbone, spec.config)


def assert_same_batch(first, second):
    assert first.keys() == second.keys()
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == second[key].dtype and torch.equal(value, second[key]), key
        else:
            assert value == second[key], key


def test_batches_are_the_same_with_zero_and_two_workers(tiny_backbone, train_split):
    method = build("dcar", tiny_backbone)  # augments, draws negatives and per-record coins
    batches = SplitBatches(train_split, method, training=True)
    plan = [([0, 5, 9], "1:0"), ([2, 3], "1:0"), ([7, 1, 4, 11], "1:1"), ([6], "2:0")]
    here = list(planned_batches(batches.cpu_batch, plan, workers=0))
    there = list(planned_batches(batches.cpu_batch, plan, workers=2))
    assert len(here) == len(there) == len(plan)
    for first, second in zip(here, there, strict=True):
        assert_same_batch(first, second)
    assert {"pixel_values", "negative_input_ids", "record_uniform"} <= set(here[0])
    # Keyed by the epoch: the same records in another epoch get other views.
    other_epoch = batches.cpu_batch([0, 5, 9], "1:1")
    assert not torch.equal(other_epoch["pixel_values"], here[0]["pixel_values"])


def test_a_records_draws_do_not_depend_on_the_rest_of_its_batch(tiny_backbone, train_split):
    """What lets a rank build its slice of a global batch alone."""
    method = build("dcar", tiny_backbone)
    batches = SplitBatches(train_split, method, training=True)
    whole = batches.cpu_batch([3, 8, 10, 2], "4:2")
    alone = batches.cpu_batch([10], "4:2", length=batches.captions.longest([3, 8, 10, 2]))
    assert torch.equal(alone["pixel_values"][0], whole["pixel_values"][2])
    assert alone["negative_texts"][0] == whole["negative_texts"][2]
    assert alone["record_uniform"][0] == whole["record_uniform"][2]
    assert torch.equal(alone["input_ids"][0], whole["input_ids"][2])  # padded as the global batch is


def test_training_and_encoding_are_bit_identical_with_workers(tiny_backbone, train_split, synthetic_fdrd):
    results = []
    for workers in (0, 2):
        method = build("dcar", tiny_backbone, epochs=1, batch_size=8, warmup_epochs=0)
        report = train(
            method, SplitBatches(train_split, method, training=True), seed=1, device=CPU, workers=workers
        )
        test = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "test")
        encoded = encode_split(method, SplitBatches(test, method), device=CPU, batch_size=16, workers=workers)
        parameters = [p.detach().clone() for p in method.trainable_parameters()]
        results.append((report.loss_per_epoch, parameters, encoded))
    (loss_a, params_a, (images_a, texts_a)), (loss_b, params_b, (images_b, texts_b)) = results
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))
    assert torch.equal(images_a, images_b) and torch.equal(texts_a, texts_b)
    untouched = build("dcar", tiny_backbone)
    assert any(
        not torch.equal(a, b.detach())
        for a, b in zip(params_a, untouched.trainable_parameters(), strict=True)
    )


def failing(index: int):
    if index == 2:
        raise FdrdError(f"record {index}: unreadable image; rebuild the dataset")
    return index


def test_an_error_in_a_worker_is_one_clear_error():
    with pytest.raises(FdrdError, match=r"^record 2: unreadable image; rebuild the dataset$"):
        list(planned_batches(failing, [(0,), (1,), (2,), (3,)], workers=2))
    with pytest.raises(FdrdError, match="--workers must be 0"):
        list(planned_batches(failing, [(0,)], workers=-1))


def test_default_workers_leave_a_cpu_for_each_rank(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert default_workers(1) == 8  # capped
    assert default_workers(4) == 3
    assert default_workers(16) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert default_workers(1) == 1 and default_workers(2) == 0


def test_a_cpu_device_decodes_in_the_main_process_by_default(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert default_workers(1, "cpu") == 0
    assert default_workers(1, "cuda") == 8
