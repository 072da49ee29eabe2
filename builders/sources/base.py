"""What every source yields: a `SourceItem` per usable input, a `Rejection` per unusable one.

A source never decodes or resizes images (builders/normalize.py does, the same way for every source)
and never silently drops an input: anything it cannot use becomes a `Rejection` with a reason that
ends up in `rejected.jsonl`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceItem:
    domain: str
    split: str  # one of fdrd.schema.SPLITS
    category: str  # human-readable name ("Yorkshire Terrier")
    category_id: int  # stable within the domain
    meta_category: str  # "" when the domain has none
    original: str  # source path relative to the data root, or URL; feeds fdrd.schema.record_id
    dataset: str  # source dataset name for the `source` column ("oxford_pets", "synthetic", ...)
    license: str = ""
    # Exactly one of these is set: raw encoded bytes, or a file to read them from.
    image_bytes: bytes | None = None
    image_path: str | None = None
    # Annotations the source already has; None means "to be filled by the caption stage".
    caption: str | None = None
    attributes: list[dict[str, Any]] | None = None
    negatives: list[dict[str, Any]] | None = None
    # Source-specific facts for later stages (e.g. structured attribute labels for the template
    # captioner); not written to the shards.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejection:
    domain: str
    split: str
    original: str  # path or URL, as in SourceItem.original
    reason: str  # plain words: "missing file", "entry points outside the data root", ...
