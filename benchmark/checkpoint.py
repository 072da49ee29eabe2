"""Training checkpoints: the trainable parameters only (safetensors) plus what resuming needs.

Layout of a checkpoint directory:
    epoch-0001/trainable.safetensors   trainable parameters by name (the frozen backbone is never copied)
    epoch-0001/state.pt                optimizer, scheduler, RNG states (torch, CUDA, numpy, python),
                                       that epoch's data order, step counters, loss history
    latest.json                        the last complete epoch and the run fingerprint

An epoch directory is written under a temporary name and renamed when complete, and latest.json is
replaced atomically after it, so a crash leaves the previous checkpoint intact. The fingerprint
(method, resolved config, seed, training records, model revision) stops a resume that would mix two
different runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdrd.errors import FdrdError
from fdrd.manifest import write_json_atomic

LATEST_NAME = "latest.json"
PARAMETERS_NAME = "trainable.safetensors"
STATE_NAME = "state.pt"


def run_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def trainable_state(method) -> dict[str, torch.Tensor]:
    """The trainable parameters by their module path, detached CPU copies."""
    trainable = {id(parameter) for parameter in method.trainable_parameters()}
    return {
        name: parameter.detach().cpu().contiguous().clone()
        for name, parameter in method.named_parameters()
        if id(parameter) in trainable
    }


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_dir_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def save_checkpoint(directory: str | Path, *, epoch: int, fingerprint: str, method, state: dict[str, Any]) -> Path:
    """Write epoch `epoch` (1-based, complete) and point latest.json at it."""
    from safetensors.torch import save_file

    directory = Path(directory)
    final = directory / epoch_dir_name(epoch)
    staging = directory / f".{epoch_dir_name(epoch)}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(trainable_state(method), str(staging / PARAMETERS_NAME), metadata={"epoch": str(epoch)})
    torch.save({**state, "epoch": epoch, "fingerprint": fingerprint, "rng": rng_state()}, staging / STATE_NAME)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    write_json_atomic(directory / LATEST_NAME, {"epoch": epoch, "path": final.name, "fingerprint": fingerprint})
    return final


def latest_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """latest.json's content, or None when the directory holds no complete checkpoint."""
    path = Path(directory) / LATEST_NAME
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text())
        return {"epoch": int(latest["epoch"]), "path": str(latest["path"]), "fingerprint": str(latest["fingerprint"])}
    except (ValueError, KeyError, TypeError) as error:
        raise FdrdError(f"{path}: unreadable ({error}); delete the checkpoint directory or run without --resume") from error


def load_checkpoint(directory: str | Path, fingerprint: str, method) -> dict[str, Any]:
    """Load the latest checkpoint's parameters into `method`; return its state (optimizer, RNG, ...)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    latest = latest_checkpoint(directory)
    if latest is None:
        raise FdrdError(f"{directory}: no checkpoint to resume from")
    if latest["fingerprint"] != fingerprint:
        raise FdrdError(
            f"{directory / LATEST_NAME}: written by a different run (method, config, seed, training records or "
            "model differ); resume with the same settings, or run without --resume to start over"
        )
    epoch_dir = directory / latest["path"]
    try:
        parameters = load_file(str(epoch_dir / PARAMETERS_NAME))
        state = torch.load(epoch_dir / STATE_NAME, weights_only=False)
    except (OSError, RuntimeError, ValueError) as error:
        raise FdrdError(f"{epoch_dir}: unreadable checkpoint ({error}); delete it to resume from an earlier one") from error
    expected = trainable_state(method)
    if set(parameters) != set(expected):
        raise FdrdError(
            f"{epoch_dir / PARAMETERS_NAME}: holds parameters {sorted(parameters)}, the method has {sorted(expected)}"
        )
    named = dict(method.named_parameters())
    with torch.no_grad():
        for name, value in parameters.items():
            named[name].copy_(value.to(named[name].device, named[name].dtype))
    return state
