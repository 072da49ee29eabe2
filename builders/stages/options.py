"""What a build is asked to do (`fdrd build`'s options) and the identity that decides its content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builders.normalize import NormalizeOptions
from builders.writer import DEFAULT_SHARD_BYTES
from fdrd.errors import FdrdError
from fdrd.schema import SCHEMA_VERSION, SPLIT_CHOICES, SPLITS

STAGING = ".fdrd-build"
CHUNK_SIZE = 64  # items per normalization unit: small enough for a smooth bar, big enough to amortise IPC
# Splits a test image must not near-duplicate; order = which copy of an exact duplicate is kept.
TRAINING_SPLITS = ("train", "val", "pretrain")
KEEP_ORDER = ("train", "val", "pretrain", "test")
DEFAULT_PHASH_THRESHOLD = 4  # of 64 bits: re-encodes and resizes land within 0-2, unrelated photos far above


@dataclass(frozen=True)
class CaptionSettings:
    """`fdrd build`'s caption options, turned into builders.captions.stage.CaptionOptions lazily."""

    captioner: str = "auto"
    captions_path: str | None = None
    model: str | None = None
    prompt: str | None = None
    trust_remote_code: bool = False
    gpus: int | None = None
    batch_size: int | None = None
    negatives: int = 4


@dataclass(frozen=True)
class BuildOptions:
    out: Path = Path("fdrd-data")
    source: str = "auto"
    data_root: Path | None = None
    domains: tuple[str, ...] | None = None
    split: str = "all"
    per_category: int | None = None
    seed: int = 0
    workers: int = 1
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD
    shard_bytes: int = DEFAULT_SHARD_BYTES
    captions: CaptionSettings = field(default_factory=CaptionSettings)
    caption_cache_dir: Path | None = None  # default: <out>/.fdrd-build/caption-cache
    overwrite: bool = False
    # Image-folder and URL sources: the CLIP text encoder that groups classes by meaning.
    meta_encoder: str | None = None


def requested_splits(split: str) -> tuple[str, ...]:
    """`--split` to the splits asked of the source; `all` includes `pretrain`, which only the
    synthetic source has (others yield nothing for it)."""
    if split not in SPLIT_CHOICES:
        raise FdrdError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    return SPLITS if split == "all" else (split,)


def build_identity(options: BuildOptions, source_name: str, domains: Sequence[str]) -> dict[str, Any]:
    """Everything that decides the content of a build (workers and paths of caches do not)."""
    captions = asdict(options.captions)
    captions.pop("gpus")
    captions.pop("batch_size")
    return {
        "source": source_name,
        "data_root": str(Path(options.data_root).expanduser().resolve()) if options.data_root else None,
        "domains": list(domains),
        "splits": list(requested_splits(options.split)),
        "per_category": options.per_category,
        "seed": options.seed,
        "meta_encoder": options.meta_encoder,
        "normalize": asdict(options.normalize),
        "phash_threshold": options.phash_threshold,
        "shard_bytes": options.shard_bytes,
        "captions": captions,
        "chunk_size": CHUNK_SIZE,
        "schema_version": SCHEMA_VERSION,
    }
