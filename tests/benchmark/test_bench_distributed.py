"""`fdrd bench --procs N` end to end through torchrun (gloo, CPU), and the launch's clear errors.

`--procs 2` against `--procs 1` for CoOp (cached features) and DCAR (augmentation, negatives, teacher,
head): the same results, checkpoints within fp32 tolerance, `distributed` recorded. A rank that raises,
exits or hangs ends the job with one line naming the rank and its error within a bounded time, and the
checkpoint it leaves (written by rank 0 under --procs 2) resumes, under --procs 2 and in one process, to the
uninterrupted result.

Tolerances (the module docstring of test_distributed.py says why): trainable parameters at rtol 1e-4 /
atol 1e-6 (observed: identical or ~1e-8 relative). Ranks are integers computed from those parameters; a
difference in the last bit could move an item only if two of its scores were within ~1e-7 of each other,
so at most 2% of the ranks may differ (observed: none) and every recall figure may move by at most the
share of items whose rank moved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from benchmark.distributed import LaunchOptions, torchrun_arguments
from benchmark.results import RECALL_KEYS, load_results
from fdrd.cli import app
from fdrd.errors import FdrdError
from fdrd.manifest import read_manifest

TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
RUNS = {
    # 24 training records: 3 steps of 8 per epoch; the test split of 96 encoded in batches of 16.
    "coop": [
        "--set",
        "epochs=3",
        "--set",
        "warmup_epochs=0",
        "--set",
        "batch_size=8",
        "--set",
        "n_ctx=2",
        "--set",
        "lr=0.01",
    ],
    "dcar": ["--set", "epochs=2", "--set", "warmup_epochs=0", "--set", "batch_size=10"],
}


def environment(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS", "FDRD_FAULT")
    }
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def fdrd_bench(method, data, model, out, *args, env=None, timeout=240):
    """`python -m fdrd.cli bench` in a process of its own (torchrun starts the ranks from it)."""
    domain = next(iter(read_manifest(data)["domains"]))
    command = [
        sys.executable,
        "-m",
        "fdrd.cli",
        "bench",
        method,
        "--data",
        str(data),
        "--model",
        str(model),
        "--shots",
        "2",
        "--seeds",
        "1",
        "--domains",
        domain,
        "--out",
        str(out),
        "--eval-batch-size",
        "16",
        *RUNS[method],
        *args,
    ]
    began = time.monotonic()
    done = subprocess.run(command, env=env or environment(), capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - began


def checkpoint(out, epoch=None):
    (folder,) = out.glob("*/*/seed-1.ckpt")
    latest = json.loads((folder / "latest.json").read_text())
    return load_file(str(folder / f"epoch-{epoch or latest['epoch']:04d}" / "trainable.safetensors")), latest[
        "epoch"
    ]


def assert_equivalent(one, two):
    """Results of the same run on one rank and on two (tolerances in the module docstring)."""
    (first,), (second,) = load_results(one), load_results(two)
    assert first["run_label"] == second["run_label"] and first["config"] == second["config"]
    moved = sum(
        a != b
        for direction in ("i2t", "t2i")
        for a, b in zip(first["ranks"][direction], second["ranks"][direction], strict=True)
    )
    items = len(first["ranks"]["i2t"])
    assert moved <= 0.02 * 2 * items, moved
    for key in RECALL_KEYS:
        assert abs(first["metrics"][key] - second["metrics"][key]) <= 100 * moved / items + 1e-9, key
    assert first["training"]["loss_per_epoch"] == pytest.approx(
        second["training"]["loss_per_epoch"], rel=1e-5
    )
    assert first["hard_negatives"].keys() == second["hard_negatives"].keys()
    parameters_one, epochs_one = checkpoint(one)
    parameters_two, epochs_two = checkpoint(two)
    assert epochs_one == epochs_two == first["config"]["epochs"]
    assert parameters_one.keys() == parameters_two.keys()
    for name, value in parameters_one.items():
        torch.testing.assert_close(parameters_two[name], value, **TOLERANCE)
    return first, second


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coop", "dcar"])
def test_two_processes_give_the_results_of_one(method, synthetic_fdrd, tiny_clip_dir, tmp_path):
    runs = {}
    for procs in (1, 2):
        done, _ = fdrd_bench(
            method, synthetic_fdrd, tiny_clip_dir, tmp_path / f"procs{procs}", "--procs", str(procs)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = tmp_path / f"procs{procs}"
    one, two = assert_equivalent(runs[1], runs[2])
    assert one["distributed"]["world_size"] == 1 and two["distributed"]["world_size"] == 2
    assert two["distributed"]["backend"] == "gloo" and two["distributed"]["nodes"] == 1
    assert isinstance(two["distributed"]["workers"], int)
    assert one["training"]["feature_cache"] == (method == "coop")
    # Only rank 0 wrote: one results file, one checkpoint folder, one table.
    assert len(list(runs[2].rglob("seed-1.json"))) == 1
    # And the runs trained: the parameters left their initialisation (compared with the untrained epoch count 0
    # would be vacuous, so against a one-epoch checkpoint of the same run).
    first_epoch, _ = checkpoint(runs[2], epoch=1)
    last, _ = checkpoint(runs[2])
    assert any(not torch.equal(first_epoch[name], last[name]) for name in last)


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_job_and_its_checkpoint_resumes(synthetic_fdrd, tiny_clip_dir, tmp_path):
    reference, _ = fdrd_bench("coop", synthetic_fdrd, tiny_clip_dir, tmp_path / "whole", "--procs", "1")
    assert reference.returncode == 0, reference.stderr[-3000:]
    # Step 5 is the second step of epoch 2 (3 steps per epoch): epoch 1's checkpoint is complete.
    done, seconds = fdrd_bench(
        "coop",
        synthetic_fdrd,
        tiny_clip_dir,
        tmp_path / "split",
        "--procs",
        "2",
        env=environment(FDRD_FAULT="1:5:raise"),
    )
    assert done.returncode == 2 and seconds < 120
    last_line = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last_line.startswith("error: rank 1 of 2 CPU processes (local rank 1) exited with code")
    assert (
        "RuntimeError: fault injected by FDRD_FAULT at step 5" in last_line
        and "the job was stopped" in last_line
    )
    assert not list((tmp_path / "split").rglob("seed-1.json"))
    _, epoch = checkpoint(tmp_path / "split")
    assert epoch == 1
    # Resumed under --procs 2 ...
    shutil.copytree(tmp_path / "split", tmp_path / "again")
    again, _ = fdrd_bench(
        "coop", synthetic_fdrd, tiny_clip_dir, tmp_path / "again", "--procs", "2", "--resume"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_results(tmp_path / "again")[0]["training"]["resumed_from_epoch"] == 1
    assert_equivalent(tmp_path / "whole", tmp_path / "again")
    # ... and in one process: a --procs 2 checkpoint holds the trainable parameters of one state.
    domain = next(iter(read_manifest(synthetic_fdrd)["domains"]))
    resumed = CliRunner().invoke(
        app,
        [
            "bench",
            "coop",
            "--data",
            str(synthetic_fdrd),
            "--model",
            str(tiny_clip_dir),
            "--shots",
            "2",
            "--seeds",
            "1",
            "--domains",
            domain,
            "--out",
            str(tmp_path / "split"),
            "--eval-batch-size",
            "16",
            "--device",
            "cpu",
            "--resume",
            *RUNS["coop"],
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    (written,) = load_results(tmp_path / "split")
    assert written["training"]["resumed_from_epoch"] == 1
    assert_equivalent(tmp_path / "whole", tmp_path / "split")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("exit", "rank 1 of 2 CPU processes (local rank 1) exited with code 3 without reporting an error"),
        # The live rank waits in the gradient all-reduce until --dist-timeout, then fails with the timeout.
        ("hang", "rank 0 of 2 CPU processes (local rank 0) exited with code"),
    ],
)
def test_a_rank_that_dies_or_hangs_ends_the_job_in_bounded_time(
    mode, expected, synthetic_fdrd, tiny_clip_dir, tmp_path
):
    done, seconds = fdrd_bench(
        "coop",
        synthetic_fdrd,
        tiny_clip_dir,
        tmp_path,
        "--procs",
        "2",
        "--dist-timeout",
        "5",
        env=environment(FDRD_FAULT=f"1:2:{mode}"),
        timeout=180,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last_line = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert expected in last_line, done.stderr[-3000:]
    assert seconds < 90
    if mode == "hang":
        assert "timed out" in last_line.lower() or "timeout" in last_line.lower(), last_line


# ------------------------------------------------------------------ the launch's refusals (nothing starts)
def invoke(*args):
    return CliRunner().invoke(app, ["bench", "coop", "--data", "nowhere", *args], catch_exceptions=True)


def refused(result, pattern):
    assert isinstance(result.exception, FdrdError), result.output
    assert re.search(pattern, str(result.exception)), str(result.exception)


def fake_gpus(monkeypatch, count, nccl=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: f"Test GPU {index}")
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: nccl)


def test_more_gpus_than_present_is_refused(monkeypatch):
    fake_gpus(monkeypatch, 0)
    refused(invoke("--gpus", "4"), r"--gpus 4: this machine has no CUDA device .*use --procs 4")
    fake_gpus(monkeypatch, 1)
    refused(
        invoke("--gpus", "4"),
        r"--gpus 4: this machine has 1 CUDA device\(s\) \(cuda:0 Test GPU 0\); use --gpus 1",
    )


def test_missing_nccl_is_refused(monkeypatch):
    fake_gpus(monkeypatch, 2, nccl=False)
    refused(invoke("--gpus", "2"), r"no NCCL .*install a CUDA build of torch with NCCL, or use --procs 2")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            ["--procs", "2", "--device", "cuda"],
            r"--procs 2 runs CPU processes with gloo, but --device cuda asks for a GPU",
        ),
        (["--procs", "2", "--gpus", "2"], r"exclude each other"),
        (["--procs", "-1"], r"count processes per node"),
        (["--procs", "2", "--nodes", "2"], r"--nodes 2: give every node the same --rdzv-endpoint"),
        (
            ["--procs", "2", "--nodes", "2", "--node-rank", "2", "--master-addr", "10.0.0.1"],
            r"--node-rank 2 must lie in 0..1",
        ),
        (["--procs", "2", "--rdzv-endpoint", "h:1", "--master-addr", "h"], r"not both"),
        (["--nodes", "2"], r"need --gpus N or --procs N"),
        (["--procs", "2", "--dist-timeout", "0"], r"--dist-timeout must be positive"),
    ],
)
def test_impossible_launches_are_refused(args, pattern):
    refused(invoke(*args), pattern)


def test_rendezvous_options_reach_torchrun_as_given():
    from torch.distributed.run import parse_args

    single = parse_args(torchrun_arguments(LaunchOptions(procs=3), "fdrd.cli", ["bench", "coop"]))
    assert single.standalone and single.nproc_per_node == "3" and single.max_restarts == 0
    assert (
        single.module
        and single.training_script == "fdrd.cli"
        and single.training_script_args == ["bench", "coop"]
    )
    c10d = parse_args(torchrun_arguments(LaunchOptions(gpus=8, nodes=4, rdzv_endpoint="head:29400"), "m", []))
    assert (c10d.nnodes, c10d.rdzv_backend, c10d.rdzv_endpoint, c10d.nproc_per_node) == (
        "4",
        "c10d",
        "head:29400",
        "8",
    )
    assert not c10d.standalone and c10d.rdzv_id
    static = parse_args(
        torchrun_arguments(
            LaunchOptions(gpus=2, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29555), "m", []
        )
    )
    assert (static.rdzv_backend, static.master_addr, static.master_port, static.node_rank) == (
        "static",
        "10.0.0.1",
        29555,
        1,
    )


@pytest.mark.skipif(
    not torch.cuda.is_available() or not torch.distributed.is_nccl_available(),
    reason="needs a CUDA device with NCCL",
)
def test_one_gpu_process_runs_under_nccl(synthetic_fdrd, tiny_clip_dir, tmp_path):
    done, _ = fdrd_bench("coop", synthetic_fdrd, tiny_clip_dir, tmp_path, "--gpus", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = load_results(tmp_path)
    assert written["distributed"]["backend"] == "nccl" and written["device"]["type"] == "cuda"
