"""Training checkpoints: the trainable parameters only (safetensors) plus what resuming needs.

Layout of a checkpoint directory:
    epoch-0001/trainable.safetensors   trainable parameters by name (the frozen backbone is never copied)
    epoch-0001/state.json              optimizer, scheduler, RNG states (torch, CUDA, numpy, python),
    epoch-0001/state.safetensors       that epoch's data order, step counters, loss history: the
                                       structure and scalars as JSON, every tensor or array in safetensors
    latest.json                        the last complete epoch and the run fingerprint

Nothing in a checkpoint is unpickled: a checkpoint folder is a file a user may be handed, and a pickle
runs whatever code it names when loaded. JSON and safetensors hold data only, and floats survive JSON
exactly (repr round-trips), so a resumed run stays bit-identical. latest.json may only name an epoch
folder of its own directory.

An epoch directory is written under a temporary name and renamed when complete, and latest.json is
replaced atomically after it, so a crash leaves the previous checkpoint intact. The fingerprint
(method, resolved config, seed, training records, model revision) stops a resume that would mix two
different runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdrd.errors import FdrdError
from fdrd.manifest import write_json_atomic, write_text_atomic

LATEST_NAME = "latest.json"
PARAMETERS_NAME = "trainable.safetensors"
STATE_NAME = "state.json"
STATE_TENSORS_NAME = "state.safetensors"
LEGACY_STATE_NAME = "state.pt"  # a pickle written by older versions: refused, never loaded
_EPOCH_DIR = re.compile(r"epoch-\d{4,}")

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


# ---------------------------------------------------------------- state as JSON + safetensors
# A tagged JSON encoding: a dict whose keys are all strings without a leading "$" stays a JSON object;
# everything JSON cannot say exactly is a one-key object naming its kind: {"$tensor": key} (the tensor
# lives in state.safetensors under `key`), {"$ndarray": key, "dtype": ...}, {"$tuple": [...]}, and
# {"$items": [[key, value], ...]} for dicts with other keys (the optimizer's integer parameter ids).


def encode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """`value` as JSON-ready data; its tensors and arrays go into `tensors` (detached CPU copies)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$tensor": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        # Integer arrays (numpy's MT19937 key is uint32) travel as int64, exact for every such value.
        stored = value.astype(np.int64) if value.dtype.kind in "ui" else value
        tensors[key] = torch.from_numpy(np.ascontiguousarray(stored).copy())
        return {"$ndarray": key, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return encode_state(value.item(), tensors)
    if isinstance(value, tuple):
        return {"$tuple": [encode_state(item, tensors) for item in value]}
    if isinstance(value, list):
        return [encode_state(item, tensors) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode_state(item, tensors) for key, item in value.items()}
        return {"$items": [[encode_state(k, tensors), encode_state(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"checkpoint state cannot hold a {type(value).__name__}")


class _BadState(ValueError):
    """state.json is not what encode_state writes."""


def decode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of encode_state; _BadState for anything encode_state never writes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode_state(item, tensors) for item in value]
    if not isinstance(value, dict):
        raise _BadState(f"unexpected {type(value).__name__}")
    tags = [key for key in value if key.startswith("$")]
    if not tags:
        return {key: decode_state(item, tensors) for key, item in value.items()}
    tag = tags[0]
    if tag in ("$tensor", "$ndarray"):
        key = value[tag]
        if not isinstance(key, str) or key not in tensors:
            raise _BadState(f"names tensor {key!r}, which {STATE_TENSORS_NAME} does not hold")
        if tag == "$tensor":
            return tensors[key]
        try:
            return tensors[key].numpy().astype(np.dtype(value.get("dtype")))
        except (TypeError, ValueError) as error:
            raise _BadState(f"array {key!r}: {error}") from None
    if tag == "$tuple" and isinstance(value[tag], list):
        return tuple(decode_state(item, tensors) for item in value[tag])
    if tag == "$items" and isinstance(value[tag], list) and all(
        isinstance(pair, list) and len(pair) == 2 for pair in value[tag]
    ):
        items = [(decode_state(k, tensors), decode_state(v, tensors)) for k, v in value[tag]]
        try:
            return dict(items)
        except TypeError as error:  # a list or dict as a key
            raise _BadState(str(error)) from None
    raise _BadState(f"unknown entry {tag!r}")


def write_state(epoch_dir: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_state(state, tensors)
    save_file(tensors, str(epoch_dir / STATE_TENSORS_NAME))
    write_text_atomic(epoch_dir / STATE_NAME, json.dumps(encoded, ensure_ascii=False) + "\n")


def read_state(epoch_dir: str | Path) -> dict[str, Any]:
    """The state written by write_state; FdrdError naming the folder when it is missing or damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    epoch_dir = Path(epoch_dir)
    if not (epoch_dir / STATE_NAME).is_file() and (epoch_dir / LEGACY_STATE_NAME).is_file():
        raise FdrdError(
            f"{epoch_dir}: holds {LEGACY_STATE_NAME}, a pickle from an older fdrd, which is never loaded (a pickle "
            "can run code); delete the checkpoint directory or run without --resume"
        )
    try:
        tensors = load_file(str(epoch_dir / STATE_TENSORS_NAME))
        state = decode_state(json.loads((epoch_dir / STATE_NAME).read_text(encoding="utf-8")), tensors)
    except SafetensorError as error:  # a damaged file (an Exception, not a ValueError)
        raise FdrdError(f"{epoch_dir / STATE_TENSORS_NAME}: not a safetensors file ({error}); delete this epoch "
                        "folder or run without --resume") from error
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as error:  # _BadState is a ValueError
        raise FdrdError(
            f"{epoch_dir}: unreadable checkpoint state ({type(error).__name__}: {str(error)[:200]}); delete this "
            "epoch folder to resume from an earlier one, or run without --resume"
        ) from error
    if not isinstance(state, dict):
        raise FdrdError(f"{epoch_dir / STATE_NAME}: not a checkpoint state (a JSON object); delete the folder")
    return state


def save_checkpoint(directory: str | Path, *, epoch: int, fingerprint: str, method, state: dict[str, Any]) -> Path:
    """Write epoch `epoch` (1-based, complete) and point latest.json at it."""
    from safetensors.torch import save_file

    directory = Path(directory)
    final = directory / epoch_dir_name(epoch)
    staging = directory / f".{epoch_dir_name(epoch)}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(trainable_state(method), str(staging / PARAMETERS_NAME), metadata={"epoch": str(epoch)})
    write_state(staging, {**state, "epoch": epoch, "fingerprint": fingerprint, "rng": rng_state()})
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    write_json_atomic(directory / LATEST_NAME, {"epoch": epoch, "path": final.name, "fingerprint": fingerprint})
    return final


def latest_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """latest.json's content, or None when the directory holds no complete checkpoint. Its `path` must
    name an epoch folder directly inside `directory`; anything else is refused, never followed."""
    directory = Path(directory)
    path = directory / LATEST_NAME
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text(encoding="utf-8"))
        latest = {"epoch": int(latest["epoch"]), "path": str(latest["path"]), "fingerprint": str(latest["fingerprint"])}
    except (ValueError, KeyError, TypeError, RecursionError, UnicodeDecodeError) as error:
        raise FdrdError(f"{path}: unreadable ({error}); delete the checkpoint directory or run without --resume") from error
    epoch_dir = directory / latest["path"]
    inside = epoch_dir.resolve().is_relative_to(directory.resolve())
    if not _EPOCH_DIR.fullmatch(latest["path"]) or latest["path"] != epoch_dir_name(latest["epoch"]) or not inside:
        raise FdrdError(
            f"{path}: points at {latest['path'][:200]!r}, not an epoch folder of this checkpoint directory; refusing "
            "to follow it. Delete the checkpoint directory or run without --resume"
        )
    return latest


def load_checkpoint(directory: str | Path, fingerprint: str, method) -> dict[str, Any]:
    """Load the latest checkpoint's parameters into `method`; return its state (optimizer, RNG, ...)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    latest = latest_checkpoint(directory)
    if latest is None:
        raise FdrdError(f"{directory}: no checkpoint to resume from")
    epoch_dir = directory / latest["path"]
    if latest["fingerprint"] != fingerprint:
        raise FdrdError(
            f"{directory / LATEST_NAME}: written by a different run (method, config, seed, training records or "
            "model differ); resume with the same settings, or run without --resume to start over"
        )
    state = read_state(epoch_dir)
    try:
        parameters = load_file(str(epoch_dir / PARAMETERS_NAME))
    except (OSError, SafetensorError) as error:
        raise FdrdError(f"{epoch_dir}: unreadable checkpoint ({error}); delete it to resume from an earlier one") from error
    expected = trainable_state(method)
    if set(parameters) != set(expected):
        raise FdrdError(
            f"{epoch_dir / PARAMETERS_NAME}: holds parameters {sorted(parameters)}, the method has {sorted(expected)}"
        )
    for name, value in parameters.items():
        if value.shape != expected[name].shape:
            raise FdrdError(f"{epoch_dir / PARAMETERS_NAME}: {name} has shape {tuple(value.shape)}, the method's "
                            f"{tuple(expected[name].shape)}; delete the checkpoint directory or run without --resume")
    named = dict(method.named_parameters())
    with torch.no_grad():
        for name, value in parameters.items():
            named[name].copy_(value.to(named[name].device, named[name].dtype))
    return state
