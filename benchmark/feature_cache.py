"""Frozen image features computed once per image and reused across epochs, seeds and methods.

For methods whose image side is frozen and prompt-free (`frozen_prompt_free_images`: zeroshot, coop,
clip_adapter, whose adapter acts after the frozen tower) the image tower gives the same output for an
image every epoch, so it runs once per record and the trainer feeds `batch["image_features"]` instead
of pixels: no decoding, no preprocessing, no vision transformer per step.

Features are keyed by record id and by a cache key naming everything that decides them: the model
revision (content hash of its folder, or Hub commit), the method's `frozen_image_features`
implementation, and the precision they were computed in. Kept in memory; optionally also written to
a directory as safetensors (one file per set of records) so later runs skip the encoding.

Under several ranks the missing images are encoded once in all: chunks dealt round robin over the ranks
(each chunk exactly as one process encodes it), the features gathered on every rank, the file written
by rank 0. Images are decoded by loader workers (benchmark/loader.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch
from rich.progress import Progress, TaskID

from benchmark import collectives
from benchmark.loader import planned_batches
from fdrd.errors import FdrdError
from fdrd.untrusted import parse_json


def cache_key(method, precision: str) -> str:
    """What decides a frozen feature besides the image: model revision, code path, precision."""
    implementation = type(method).frozen_image_features
    return f"{method.backbone.revision}|{implementation.__module__}.{implementation.__qualname__}|{precision}"


class FeatureCache:
    """Frozen image features by (cache key, record id), in memory and optionally on disk."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.encoded = 0  # images run through the image tower by this cache (for tests and reports)

    def features(
        self,
        method,
        dataset,
        *,
        device: torch.device,
        batch_size: int,
        precision: str,
        progress: Progress | None = None,
        description: str = "image features",
        workers: int = 0,
    ) -> torch.Tensor:
        """(len(dataset), D) float32 features on the CPU, in dataset order; encodes only what is missing."""
        if not method.frozen_prompt_free_images:
            raise ValueError(f"{method.name}: its image side is trainable or prompted; features cannot be cached")
        key = cache_key(method, precision)
        ids = list(dataset["id"])
        store = self._memory.setdefault(key, {})
        disk_file = self._disk_file(key, ids)
        if disk_file is not None and disk_file.is_file() and any(i not in store for i in ids):
            store.update(self._load(disk_file, key))
        missing = [index for index, record_id in enumerate(ids) if record_id not in store]
        ranks = collectives.world_size()
        if ranks > 1 and collectives.global_total(len(missing)) != len(missing) * ranks:
            raise FdrdError(f"feature cache: the ranks disagree on which of {len(ids)} images to encode (a cache file "
                            "changed during the run?); rerun")
        if missing:
            task = progress.add_task(description, total=len(missing), status="") if progress is not None else None
            encoded = encode_frozen(method, dataset, missing, device=device, chunk=batch_size, precision=precision,
                                    workers=workers, progress=progress, task=task)
            for row, index in enumerate(missing):
                store[ids[index]] = encoded[row]
            self.encoded += len(missing)
            if disk_file is not None and collectives.is_main():
                self._save(disk_file, key, ids, store)
        return torch.stack([store[record_id] for record_id in ids])

    def _disk_file(self, key: str, ids: list[str]) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(json.dumps([key, sorted(ids)]).encode()).hexdigest()[:24]
        return self.directory / f"features-{digest}.safetensors"

    @staticmethod
    def _save(path: Path, key: str, ids: list[str], store: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        features = torch.stack([store[record_id] for record_id in ids]).contiguous()
        save_file({"features": features}, str(tmp), metadata={"key": key, "ids": json.dumps(ids)})
        tmp.replace(path)

    @staticmethod
    def _load(path: Path, key: str) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                features = handle.get_tensor("features")
        except Exception as error:  # a truncated or foreign file: say which, and what to do
            raise FdrdError(f"{path}: unreadable feature cache file ({error}); delete it to recompute") from error
        ids = parse_json(metadata.get("ids", "[]"), f"{path}: metadata 'ids'", "delete the file to recompute")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise FdrdError(f"{path}: metadata 'ids' is not a list of record ids; delete the file to recompute")
        if metadata.get("key") != key or len(ids) != features.shape[0]:
            raise FdrdError(f"{path}: feature cache file does not match its name (key or row count); delete it")
        return {record_id: features[row] for row, record_id in enumerate(ids)}


def encode_frozen(
    method,
    dataset,
    indices: list[int],
    *,
    device: torch.device,
    chunk: int,
    precision: str | None,
    workers: int = 0,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> torch.Tensor:
    """`method.frozen_image_features` of the dataset rows `indices`, float32 on the CPU, in that order: in
    chunks of `chunk` rows dealt round robin over the ranks (each computed by one rank, exactly as one process
    computes it), then gathered. `precision` None: no autocast."""
    from benchmark.data import pixel_values

    chunks = [indices[start : start + chunk] for start in range(0, len(indices), chunk)]
    mine = collectives.my_chunks(len(chunks))
    decode = functools.partial(pixel_values, method, dataset)
    encoded = []
    pixel_batches = planned_batches(decode, [(chunks[c],) for c in mine], workers=workers, device=device)
    for pixels in pixel_batches:
        with torch.inference_mode(), autocast_for(device, precision or "fp32"):
            encoded.append(method.frozen_image_features(pixels.to(device, non_blocking=True)).float().cpu())
        if progress is not None and task is not None:
            progress.advance(task, encoded[-1].shape[0])
    gathered = collectives.gather_chunks(encoded, [len(rows) for rows in chunks])
    if progress is not None and task is not None:
        progress.update(task, completed=len(indices))  # the other ranks' chunks arrived
    return gathered


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA when precision says so; a no-op context elsewhere (CPU runs in fp32)."""
    enabled = device.type == "cuda" and precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
