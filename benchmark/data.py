"""FDRD splits for the benchmark: loading, few-shot sampling, and batches a method can consume.

A built FDRD directory loads with `datasets.load_dataset(dir, domain, split=...)`; this module adds
the errors a user can act on (missing directory, unknown domain or split, too few shots) and turns
rows into batches: pixels through the backbone's own preprocessing (or cached frozen image features,
see feature_cache.py), captions through the method's tokenizer (which leaves room for its prompt).
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.augment import augmented_pixels
from benchmark.negatives import KINDS, NegativeSampler
from fdrd.errors import FdrdError
from fdrd.manifest import MANIFEST_NAME, read_build_manifest, verify_build

TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
# Images per forward when the teacher's features of the original training images are computed.
TEACHER_CHUNK = 64


def check_data_dir(data_dir: str | Path) -> dict[str, Any]:
    """The directory's manifest, or an FdrdError saying what is missing and how to make it. The shards
    must be the ones the manifest lists (sizes and sha256) and README.md must load exactly those, so that
    the manifest's content hash, which results cite, describes the data read."""
    path = Path(data_dir)
    if not path.is_dir():
        raise FdrdError(f"{path}: no such dataset directory; build one with `fdrd build --out {path}`")
    if not (path / MANIFEST_NAME).is_file():
        raise FdrdError(f"{path}: no {MANIFEST_NAME}; is this a directory written by `fdrd build`?")
    manifest = read_build_manifest(path)
    problems = verify_build(path, manifest, reuse=True)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FdrdError(f"{path}: files differ from {MANIFEST_NAME}: {problems[0]}{more}; run `fdrd validate "
                        f"{path}` for the full list, and rebuild the dataset before benchmarking on it")
    return manifest


def available_domains(data_dir: str | Path) -> list[str]:
    """Domains of a built directory, in build order (the manifest's record of what was built)."""
    manifest = check_data_dir(data_dir)
    build_order = (manifest.get("build") or {}).get("domains") or []
    listed = manifest.get("domains") or {}
    domains = [domain for domain in build_order if domain in listed] or list(listed)
    if not domains:
        raise FdrdError(f"{Path(data_dir) / MANIFEST_NAME}: lists no domains; the build may have failed")
    return domains


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    # `datasets` draws its own progress bars while preparing a local directory; they would break
    # through ours.
    import datasets

    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def load_split(data_dir: str | Path, domain: str, split: str):
    """One domain's split as a `datasets.Dataset` (the `all` config names every domain together)."""
    import datasets

    domains = available_domains(data_dir)
    if domain not in domains and domain != "all":
        raise FdrdError(
            f"{data_dir}: no domain {domain!r}; available domains: {', '.join(domains)}"
        )
    try:
        with _quiet_datasets():
            return datasets.load_dataset(str(data_dir), domain, split=split)
    except ValueError as error:
        if "split" in str(error).lower():
            raise FdrdError(f"{data_dir}: domain {domain!r} has no split {split!r} ({error})") from error
        raise FdrdError(f"{data_dir}: cannot load domain {domain!r} split {split!r}: {error}") from error
    except FileNotFoundError as error:
        raise FdrdError(
            f"{data_dir}: domain {domain!r} split {split!r} has no shard files ({error}); rebuild the directory"
        ) from error


def few_shot_indices(
    categories: Sequence[str],
    record_ids: Sequence[str],
    shots: int | None,
    seed: int,
    *,
    allow_fewer: bool = False,
    where: str = "train split",
) -> list[int]:
    """Indices of `shots` records per category, drawn with `seed`, sorted ascending.

    The draw depends only on the seed and on the set of (category, record id) pairs, never on row
    order: candidates are sorted by record id and categories visited in sorted order. `shots=None`
    takes every record. A category with fewer records than `shots` is an error naming it, unless
    `allow_fewer` (then all of that category's records are taken).
    """
    if len(categories) != len(record_ids):
        raise ValueError("categories and record_ids must have the same length")
    if shots is not None and shots < 1:
        raise FdrdError(f"--shots must be at least 1 (or omitted for every record), got {shots}")
    by_category: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for index, (category, record_id) in enumerate(zip(categories, record_ids, strict=True)):
        by_category[category].append((record_id, index))
    if shots is None:
        return list(range(len(categories)))
    short = {category: len(members) for category, members in by_category.items() if len(members) < shots}
    if short and not allow_fewer:
        worst = sorted(short.items(), key=lambda item: (item[1], item[0]))
        listed = ", ".join(f"{category!r} has {count}" for category, count in worst[:5])
        raise FdrdError(
            f"{where}: {len(short)} {'category has' if len(short) == 1 else 'categories have'} fewer than {shots} records "
            f"({listed}{', ...' if len(short) > 5 else ''}); lower --shots or pass --allow-fewer-shots "
            "to take all records of those categories"
        )
    rng = random.Random(f"fdrd-few-shot:{seed}")
    chosen: list[int] = []
    for category in sorted(by_category):
        members = sorted(by_category[category])
        picked = members if len(members) <= shots else rng.sample(members, shots)
        chosen.extend(index for _, index in picked)
    return sorted(chosen)


def sample_few_shot(dataset, shots: int | None, seed: int, *, allow_fewer: bool = False, where: str = "train split"):
    """The few-shot subset of a `datasets.Dataset` (see few_shot_indices)."""
    indices = few_shot_indices(
        dataset["category"], dataset["id"], shots, seed, allow_fewer=allow_fewer, where=where
    )
    return dataset.select(indices)


@dataclass
class Captions:
    """A split's captions tokenized once, for one method (its prompt length decides the truncation)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: torch.Tensor

    def batch(self, indices: torch.Tensor, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `indices`, trimmed to the batch's longest caption as a per-batch tokenization would be, or to
        `length` (a global batch's longest, when a rank holds part of it)."""
        mask = self.attention_mask[indices]
        if length is None:
            length = int(mask.sum(1).max())
        return self.input_ids[indices, :length], mask[:, :length]

    def longest(self, indices: Sequence[int] | torch.Tensor) -> int:
        return int(self.attention_mask[torch.as_tensor(indices, dtype=torch.long)].sum(1).max())


def tokenize_captions(method, captions: Sequence[str]) -> Captions:
    tokens = method.tokenize(list(captions))
    return Captions(tokens["input_ids"], tokens["attention_mask"], tokens["truncated"].bool())


def keyed_random(purpose: str, key: str, record_id: str) -> random.Random:
    """The stream of one record's draws for one purpose in one epoch (`key` names the seed and epoch): a
    record's crops, negatives and coin flips never depend on its batch, its rank or the worker making it."""
    return random.Random(f"{purpose}:{key}:{record_id}")


class SplitBatches:
    """Batches of one split for one method: tokenized captions, category ids, and the image side.

    With `image_features` (from the feature cache) the image side is those rows and no image is
    decoded; without, each batch decodes its images and runs the backbone's preprocessing.

    `training=True` (the few-shot train split) adds what the method's `training_batch_needs()` asks for
    and augments images when its config says `augment`: random resized crop + flip (benchmark/augment.py),
    `m` negative captions per record (benchmark/negatives.py) as `negative_input_ids` /
    `negative_attention_mask` (B*m rows, record-major), `negative_category_id` (B, m; -1 for a category
    the split does not have), `negative_kind` (B, m; 0 category, 1 attribute, -1 empty slot),
    `negative_mask` (B, m; a real negative) and `negative_texts`; `record_uniform` (B,), one uniform number
    per record for a method's per-record coin flips; and `teacher_image_features` (B, D), frozen prompt-free
    features of the original image (all records computed once, `prepare`) or of the augmented view.

    A batch is made in two halves: `cpu_batch` (no model: slicing, decoding, augmenting, negatives; what a
    loader worker runs, benchmark/loader.py) and `to_device` (the move, and teacher features from the model).
    Every random draw of a record comes from `keyed_random(purpose, key, record id)`: the trainer's key names
    the seed and the epoch, so a batch is the same in any process, with any number of workers, after a
    resume, and a record's draws do not depend on which records share its batch. Without a key (a batch made
    by hand) one number is drawn from torch's global generator as the key.
    """

    def __init__(self, dataset, method, image_features: torch.Tensor | None = None, *, training: bool = False):
        self.dataset = dataset
        self.method = method
        self.training = training
        self.ids: list[str] = list(dataset["id"])
        self.captions = tokenize_captions(method, dataset["caption"])
        self.category_ids = torch.tensor(dataset["category_id"], dtype=torch.long)
        if image_features is not None and image_features.shape[0] != len(self.ids):
            raise ValueError(f"{image_features.shape[0]} cached feature rows for {len(self.ids)} records")
        self.augment = training and bool(getattr(method.config, "augment", False))
        if self.augment and image_features is not None:
            raise ValueError(
                f"{method.name}: training images are augmented, so cached features of the unaugmented images "
                "would be wrong; pass no image_features (Method.uses_feature_cache says when a cache applies)"
            )
        self.image_features = image_features
        needs = method.training_batch_needs() if training else None
        self.negatives = None
        if needs is not None and needs.negatives:
            self.negatives = NegativeSampler.from_dataset(dataset, needs.negatives)
            self.category_id_of = dict(zip(dataset["category"], dataset["category_id"], strict=True))
        self.record_uniform = bool(needs and needs.record_uniform)
        self.teacher_view = needs.teacher_features if needs else None
        self._teacher_original: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def truncated_count(self) -> int:
        return int(self.captions.truncated.sum())

    @property
    def decodes(self) -> bool:
        """Whether making a batch does work worth a loader worker: decoding images or drawing negatives."""
        return self.image_features is None or self.negatives is not None

    @property
    def _keyed(self) -> bool:
        return self.augment or self.negatives is not None or self.record_uniform

    def batch(
        self, indices: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu", key: str | None = None
    ) -> dict[str, Any]:
        return self.to_device(self.cpu_batch(indices, key), device)

    def cpu_batch(
        self, indices: Sequence[int] | torch.Tensor, key: str | None = None, length: int | None = None
    ) -> dict[str, Any]:
        """The half of a batch that needs no model, on the CPU (`length`: pad captions to it)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        rows = indices.tolist()
        if key is None and self._keyed:
            key = str(int(torch.randint(0, 2**62, (1,)).item()))
        input_ids, attention_mask = self.captions.batch(indices, length)
        ids = [self.ids[i] for i in rows]
        batch: dict[str, Any] = {
            "ids": ids,
            "rows": indices,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "category_id": self.category_ids[indices],
        }
        if self.image_features is not None:
            batch["image_features"] = self.image_features[indices]
        elif self.augment:
            images = self.dataset.select_columns(["image"])[rows]["image"]
            streams = [keyed_random("augment", key, record_id) for record_id in ids]
            batch["pixel_values"] = augmented_pixels(images, self.method.backbone, streams)
        else:
            batch["pixel_values"] = pixel_values(self.method, self.dataset, rows)
        if self.negatives is not None:
            batch.update(self._negatives(rows, [keyed_random("negatives", key, record_id) for record_id in ids]))
        if self.record_uniform:
            draws = [keyed_random("record", key, record_id).random() for record_id in ids]
            batch["record_uniform"] = torch.tensor(draws, dtype=torch.float64)
        return batch

    def to_device(self, batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
        """`batch` (from cpu_batch) on `device` (asynchronously from pinned memory), with teacher features."""
        device = torch.device(device)
        moved = {
            name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for name, value in batch.items()
        }
        if self.teacher_view is not None:
            moved["teacher_image_features"] = self._teacher_features(batch["rows"].tolist(), moved, device)
        return moved

    def _negatives(self, rows: list[int], streams: list[random.Random]) -> dict[str, Any]:
        m = self.negatives.m
        drawn = [self.negatives.draw(row, stream) for row, stream in zip(rows, streams, strict=True)]
        empty = [m - len(found) for found in drawn]
        texts = [[n.text for n in found] + [""] * gap for found, gap in zip(drawn, empty, strict=True)]
        kinds = [[KINDS.index(n.kind) for n in found] + [-1] * gap for found, gap in zip(drawn, empty, strict=True)]
        categories = [[self.category_id_of.get(n.category, -1) for n in found] + [-1] * gap
                      for found, gap in zip(drawn, empty, strict=True)]
        tokens = self.method.tokenize([text for row in texts for text in row])
        kind_ids = torch.tensor(kinds, dtype=torch.long).view(len(rows), m)
        return {
            "negative_texts": texts,
            "negative_input_ids": tokens["input_ids"],
            "negative_attention_mask": tokens["attention_mask"],
            "negative_category_id": torch.tensor(categories, dtype=torch.long).view(len(rows), m),
            "negative_kind": kind_ids,
            "negative_mask": kind_ids >= 0,
        }

    def prepare(self, device: torch.device | str, workers: int = 0) -> None:
        """Compute what every batch shares before the first one (the teacher's features of the original
        images), split over the ranks of a distributed run."""
        if self._needs_original_teacher and self._teacher_original is None:
            from benchmark.feature_cache import encode_frozen

            self._teacher_original = encode_frozen(
                self.method, self.dataset, list(range(len(self))), device=torch.device(device), chunk=TEACHER_CHUNK,
                precision=None, workers=workers,
            )

    @property
    def _needs_original_teacher(self) -> bool:
        return self.teacher_view is not None and self.image_features is None and not (
            self.teacher_view == "augmented" and self.augment
        )

    @torch.no_grad()
    def _teacher_features(self, rows: list[int], batch: dict[str, Any], device) -> torch.Tensor:
        """Frozen prompt-free image features for the teacher (fp32, no gradient): of the view the step trains
        on when asked and augmenting, else of the original images."""
        if "image_features" in batch:  # cached frozen features are exactly these
            return batch["image_features"].float()
        if self.teacher_view == "augmented" and self.augment:
            return self.method.frozen_image_features(batch["pixel_values"]).float()
        # Every record once, in record order and fixed chunks: a feature never depends on which records
        # shared its batch, so a resumed run gets the same bits as an uninterrupted one.
        self.prepare(device)
        return self._teacher_original[rows].to(device)


def pixel_values(method, dataset, indices: list[int]) -> torch.Tensor:
    """Decode the images of `indices` and preprocess them as the checkpoint's processor does."""
    images = dataset.select_columns(["image"])[indices]["image"]
    return method.backbone.preprocess(images)
