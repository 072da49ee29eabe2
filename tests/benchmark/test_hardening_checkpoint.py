"""Issue 9, class 1: nothing a user hands us is unpickled, and no path read from a checkpoint leaves its folder.

A planted pickle runs `exec`, which creates a marker file; every test asserts the marker never appears,
after first proving (on a second marker) that the planted bytes really do run code when unpickled.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil

import numpy as np
import pytest
import torch

from benchmark.backbone import ClipBackbone
from benchmark.checkpoint import (
    LATEST_NAME,
    LEGACY_STATE_NAME,
    STATE_NAME,
    STATE_TENSORS_NAME,
    decode_state,
    encode_state,
    latest_checkpoint,
    read_state,
)
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import get_method, resolve_config
from benchmark.train import seed_everything, train
from fdrd.errors import FdrdError

CPU = torch.device("cpu")


class Planted:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def assert_live(tmp_path, save, load):
    """The planted payload is not a dud: loading a copy of it the unsafe way does run code."""
    proof = tmp_path / "proof-it-runs"
    probe = tmp_path / "probe.bin"
    save(Planted(proof), probe)
    load(probe)
    assert proof.exists()


@pytest.fixture(scope="module")
def coop_run(tiny_backbone, synthetic_fdrd, tmp_path_factory):
    """A 1-epoch CoOp checkpoint folder and what builds the same run again."""
    split = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train")
    cache = FeatureCache()

    def fresh():
        method_cls = get_method("coop")
        seed_everything(5)
        method = method_cls(tiny_backbone, resolve_config(method_cls, {"epochs": 2, "batch_size": 8, "n_ctx": 4}))
        features = cache.features(method, split, device=CPU, batch_size=64, precision="fp32")
        return method, SplitBatches(split, method, features)

    folder = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    method, batches = fresh()
    train(method, batches, seed=5, device=CPU, checkpoint_dir=folder, stop_after_epochs=1)
    return folder, fresh


def copy_of(folder, tmp_path):
    target = tmp_path / "run.ckpt"
    shutil.copytree(folder, target)
    return target


def test_a_pickled_state_is_refused_and_never_runs(coop_run, tmp_path):
    folder, fresh = coop_run
    folder = copy_of(folder, tmp_path)
    marker = tmp_path / "pwned"
    epoch_dir = folder / "epoch-0001"
    (epoch_dir / STATE_NAME).unlink()
    (epoch_dir / STATE_TENSORS_NAME).unlink()
    torch.save({"optimizer": Planted(marker)}, epoch_dir / LEGACY_STATE_NAME)
    assert_live(tmp_path, torch.save, lambda path: torch.load(path, weights_only=False))
    method, batches = fresh()
    with pytest.raises(FdrdError, match=r"state\.pt, a pickle .* never loaded"):
        train(method, batches, seed=5, device=CPU, checkpoint_dir=folder, resume=True)
    assert not marker.exists()


def test_every_checkpoint_file_is_json_or_safetensors(coop_run):
    from safetensors.torch import load_file

    folder, _ = coop_run
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert {path.suffix for path in files} == {".json", ".safetensors"}
    for path in files:
        json.loads(path.read_text()) if path.suffix == ".json" else load_file(str(path))


@pytest.mark.parametrize("pointer", ["../elsewhere", "/tmp", "epoch-0001/../../x", "epoch-0002", "", "epoch-1"])
def test_latest_json_cannot_point_out_of_its_folder(coop_run, tmp_path, pointer):
    folder = copy_of(coop_run[0], tmp_path)
    latest = json.loads((folder / LATEST_NAME).read_text())
    (folder / LATEST_NAME).write_text(json.dumps({**latest, "path": pointer}))
    with pytest.raises(FdrdError, match="refusing to follow it"):
        latest_checkpoint(folder)


def test_an_epoch_folder_that_links_out_is_refused(coop_run, tmp_path):
    folder = copy_of(coop_run[0], tmp_path)
    outside = tmp_path / "outside"
    shutil.move(folder / "epoch-0001", outside)
    (folder / "epoch-0001").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FdrdError, match="refusing to follow it"):
        latest_checkpoint(folder)


@pytest.mark.parametrize("damage", ["not json", "[" * 100_000 + "]" * 100_000, '{"$tensor": "t999"}', '{"$what": 1}',
                                    '{"$items": [[[1], 2]]}'])
def test_a_damaged_state_is_a_named_error(coop_run, tmp_path, damage):
    folder = copy_of(coop_run[0], tmp_path)
    (folder / "epoch-0001" / STATE_NAME).write_text(damage)
    with pytest.raises(FdrdError, match="epoch-0001: unreadable checkpoint state"):
        read_state(folder / "epoch-0001")


@pytest.mark.parametrize("name", [STATE_TENSORS_NAME, "trainable.safetensors"])
@pytest.mark.parametrize("damage", [b"garbage", b"\xff" * 16])
def test_a_damaged_safetensors_file_is_a_named_error(coop_run, tmp_path, name, damage):
    folder = copy_of(coop_run[0], tmp_path)
    (folder / "epoch-0001" / name).write_bytes(damage)
    method, batches = coop_run[1]()
    with pytest.raises(FdrdError, match=r"epoch-0001.*(not a safetensors file|unreadable checkpoint)"):
        train(method, batches, seed=5, device=CPU, checkpoint_dir=folder, resume=True)


def test_state_round_trips_exactly():
    rng = np.random.RandomState(7)
    rng.randn(3)  # a cached gaussian and a moved position
    state = {
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3, dtype=torch.float64)},
                                1: {"momentum_buffer": None}},
                      "param_groups": [{"lr": 0.1 + 1e-17, "betas": (0.9, 0.999), "params": [0, 1], "foreach": None}]},
        "tiny": 5e-324, "inf": math.inf, "ints": [2**70, -1, True], "$dollar": "kept", "empty": {},
        "numpy": rng.get_state(), "python": (3, tuple(range(625)), None),
        "bf16": torch.randn(4).to(torch.bfloat16), "u8": torch.arange(5, dtype=torch.uint8),
        "scalar": np.float32(1.5),
    }
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(encode_state(state, tensors))
    back = decode_state(json.loads(text), {k: v.clone() for k, v in tensors.items()})
    assert_same(back, state)
    restored = np.random.RandomState()
    restored.set_state(back["numpy"])
    assert np.array_equal(restored.randn(5), rng.randn(5))


def assert_same(got, want):
    """Structural equality with types, written out here rather than taken from the code under test."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and torch.equal(got, want)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and np.array_equal(got, want)
    elif isinstance(want, np.generic):
        assert got == want.item()
    elif isinstance(want, (dict, list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        pairs = zip(got.items(), want.items(), strict=True) if isinstance(want, dict) else zip(got, want, strict=True)
        for a, b in pairs:
            assert_same(a, b)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert type(got) is type(want) and got == want


# ---------------------------------------------------------------- model folders


def pickled_model_folder(source, target, marker):
    """A copy of a real tiny CLIP whose weights are a planted pickle (pytorch_model.bin) instead."""
    shutil.copytree(source, target)
    (target / "model.safetensors").unlink()
    with open(target / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weights": Planted(marker)}, handle)
    return target


def test_a_model_folder_with_pickled_weights_is_refused_and_never_runs(tiny_clip_dir, tmp_path):
    marker = tmp_path / "pwned"
    folder = pickled_model_folder(tiny_clip_dir, tmp_path / "model", marker)
    assert_live(tmp_path, lambda obj, path: path.write_bytes(pickle.dumps(obj)), lambda path: pickle.loads(path.read_bytes()))
    with pytest.raises(FdrdError, match=r"pytorch_model\.bin are pickles, .* never opened"):
        ClipBackbone.from_pretrained(folder)
    assert not marker.exists()


def test_the_cli_names_a_pickled_model_in_one_line(tiny_clip_dir, synthetic_fdrd, tmp_path):
    import subprocess
    import sys

    marker = tmp_path / "pwned"
    folder = pickled_model_folder(tiny_clip_dir, tmp_path / "model", marker)
    done = subprocess.run(
        [sys.executable, "-m", "fdrd.cli", "bench", "zeroshot", "--data", str(synthetic_fdrd), "--model", str(folder),
         "--out", str(tmp_path / "runs"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "pytorch_model.bin are pickles" in done.stderr
    assert not marker.exists()
