"""Frozen image features computed once per image and reused across epochs, seeds and methods.

For methods whose image side is frozen and prompt-free (`frozen_prompt_free_images`: zeroshot, coop,
clip_adapter, whose adapter acts after the frozen tower) the image tower gives the same output for an
image every epoch, so it runs once per record and the trainer feeds `batch["image_features"]` instead
of pixels: no decoding, no preprocessing, no vision transformer per step.

Features are keyed by record id and by a cache key naming everything that decides them: the model
revision (content hash of its folder, or Hub commit), the method's `frozen_image_features`
implementation, and the precision they were computed in. Kept in memory; optionally also written to
a directory as safetensors (one file per set of records) so later runs skip the encoding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from rich.progress import Progress

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
    ) -> torch.Tensor:
        """(len(dataset), D) float32 features on the CPU, in dataset order; encodes only what is missing."""
        from benchmark.data import pixel_values

        if not method.frozen_prompt_free_images:
            raise ValueError(f"{method.name}: its image side is trainable or prompted; features cannot be cached")
        key = cache_key(method, precision)
        ids = list(dataset["id"])
        store = self._memory.setdefault(key, {})
        disk_file = self._disk_file(key, ids)
        if disk_file is not None and disk_file.is_file() and any(i not in store for i in ids):
            store.update(self._load(disk_file, key))
        missing = [index for index, record_id in enumerate(ids) if record_id not in store]
        if missing:
            task = progress.add_task(description, total=len(missing), status="") if progress is not None else None
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                pixels = pixel_values(method, dataset, chunk).to(device)
                with torch.inference_mode(), autocast_for(device, precision):
                    encoded = method.frozen_image_features(pixels).float().cpu()
                for row, index in enumerate(chunk):
                    store[ids[index]] = encoded[row]
                self.encoded += len(chunk)
                if task is not None:
                    progress.advance(task, len(chunk))
            if disk_file is not None:
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


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA when precision says so; a no-op context elsewhere (CPU runs in fp32)."""
    enabled = device.type == "cuda" and precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
