"""Resuming: 1 epoch + resume 1 epoch gives bit-identical parameters to 2 uninterrupted epochs (CPU)."""

from __future__ import annotations

import pytest
import torch

from benchmark.checkpoint import LATEST_NAME
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import get_method, resolve_config, resolve_run
from benchmark.train import seed_everything, train
from fdrd.errors import FdrdError

CPU = torch.device("cpu")
SEED = 3


@pytest.fixture(scope="module")
def train_split(synthetic_fdrd):
    return load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train")


@pytest.fixture(scope="module")
def feature_cache():
    return FeatureCache()


def fresh(name, backbone, overrides, split, cache):
    """A method as a run builds it: seeded, then its cached training batches."""
    method_cls = get_method(name)
    seed_everything(SEED)
    method = method_cls(backbone, resolve_config(method_cls, overrides))
    features = cache.features(method, split, device=CPU, batch_size=64, precision="fp32")
    return method, SplitBatches(split, method, features)


def trainable(method):
    return {name: p.detach().clone() for name, p in method.named_parameters() if p.requires_grad}


# Warm-up ends after epoch 1, so the resumed epoch also checks that the schedule's position survives.
CASES = [
    ("coop", {"epochs": 2, "batch_size": 8, "n_ctx": 4, "lr": 0.05}),
    ("clip_adapter", {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.01}),
]


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_one_epoch_then_resume_equals_two_epochs(name, overrides, tiny_backbone, train_split, feature_cache, tmp_path):
    method, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    whole = train(method, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path / "whole")
    expected = trainable(method)

    first, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    part = train(first, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path / "split", stop_after_epochs=1)
    assert part.epochs == 1
    # Something else draws random numbers between the two calls, as a new process would.
    torch.rand(17)
    second, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    rest = train(second, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path / "split", resume=True)
    assert rest.resumed_from_epoch == 1 and rest.steps == whole.steps
    assert rest.loss_per_epoch == whole.loss_per_epoch
    got = trainable(second)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    # And the run did move: the comparison is not between two untouched initialisations.
    untouched, _ = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    assert any(not torch.equal(trainable(untouched)[key], expected[key]) for key in expected)


def test_crash_mid_epoch_resumes_from_the_last_complete_epoch(tiny_backbone, train_split, feature_cache, tmp_path):
    name, overrides = CASES[0]
    method, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    train(method, batches, seed=SEED, device=CPU)
    expected = trainable(method)

    crashing, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    real_loss = crashing.loss
    calls = []

    def loss_then_crash(batch):
        calls.append(1)
        if len(calls) == 5:  # second step of epoch 2 (3 steps per epoch)
            raise KeyboardInterrupt
        return real_loss(batch)

    crashing.loss = loss_then_crash
    with pytest.raises(KeyboardInterrupt):
        train(crashing, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path)
    assert '"epoch": 1' in (tmp_path / LATEST_NAME).read_text()

    resumed, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    train(resumed, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path, resume=True)
    for key, value in trainable(resumed).items():
        assert torch.equal(value, expected[key]), key


def test_resume_refuses_a_checkpoint_of_another_run(tiny_backbone, train_split, feature_cache, tmp_path):
    name, overrides = CASES[0]
    method, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    train(method, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path, stop_after_epochs=1)
    other, batches = fresh(name, tiny_backbone, {**overrides, "lr": 0.01}, train_split, feature_cache)
    with pytest.raises(FdrdError, match="written by a different run"):
        train(other, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path, resume=True)


def test_resume_without_checkpoint_starts_fresh(tiny_backbone, train_split, feature_cache, tmp_path):
    name, overrides = CASES[1]
    method, batches = fresh(name, tiny_backbone, overrides, train_split, feature_cache)
    report = train(method, batches, seed=SEED, device=CPU, checkpoint_dir=tmp_path / "new", resume=True)
    assert report.resumed_from_epoch is None and report.epochs == 2


KILLED_RUN = """
import sys, torch
from benchmark.backbone import ClipBackbone
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.methods.base import resolve_run
from benchmark.train import seed_everything, train
data, model, folder = sys.argv[1:4]
split = load_split(data, available_domains(data)[0], "train")
spec = resolve_run("dcar", {"epochs": 2, "batch_size": 8, "warmup_epochs": 0})
seed_everything(SEED)
method = spec.method_cls(ClipBackbone.from_pretrained(model), spec.config)
train(method, SplitBatches(split, method, training=True), seed=SEED, device=torch.device("cpu"),
      checkpoint_dir=folder, workers=2)
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_with_loader_workers_resumes_bit_identically(tiny_backbone, tiny_clip_dir, synthetic_fdrd,
                                                                       train_split, tmp_path):
    """DCAR (crops, negatives, teacher features, per-record coins) built by 2 loader workers: a process killed
    with SIGKILL in epoch 2 resumes to the parameters of a run never interrupted (and built without workers)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = resolve_run("dcar", {"epochs": 2, "batch_size": 8, "warmup_epochs": 0})
    seed_everything(SEED)
    whole = spec.method_cls(tiny_backbone, spec.config)
    train(whole, SplitBatches(train_split, whole, training=True), seed=SEED, device=CPU)
    expected = trainable(whole)

    # The run hangs at global step 5 (epoch 2 of 3 steps each), after writing epoch 1; then it is killed.
    env = {**os.environ, "FDRD_FAULT": "0:5:hang", "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    script = KILLED_RUN.replace("SEED", str(SEED))
    child = subprocess.Popen([sys.executable, "-c", script, str(synthetic_fdrd), str(tiny_clip_dir), str(tmp_path)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (tmp_path / LATEST_NAME).is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # well into the hang
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.killpg(child.pid, signal.SIGKILL)  # the process and its loader workers, as an out-of-memory kill would
    child.wait(timeout=30)
    assert '"epoch": 1' in (tmp_path / LATEST_NAME).read_text()

    seed_everything(SEED)
    resumed = spec.method_cls(tiny_backbone, spec.config)
    report = train(resumed, SplitBatches(train_split, resumed, training=True), seed=SEED, device=CPU,
                   checkpoint_dir=tmp_path, resume=True, workers=2)
    assert report.resumed_from_epoch == 1
    got = trainable(resumed)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
