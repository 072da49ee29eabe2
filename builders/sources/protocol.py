"""The interface every image source implements, so the pipeline can build from any of them.

A source knows its domains, the taxonomy of each, and yields one `SourceItem` or `Rejection` per
input in a deterministic order (the same data root and options always give the same sequence, which
resumable builds and content hashes rely on).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from builders.sources.base import Rejection, SourceItem
from builders.taxonomy import Taxonomy


@runtime_checkable
class Source(Protocol):
    name: str  # "synthetic", "coop", "imagefolder", "urls"

    def domains(self) -> list[str]:
        """The domains this source will build, in build order."""
        ...

    def taxonomy(self, domain: str) -> Taxonomy:
        """Categories (index = category_id) and meta-categories of `domain`."""
        ...

    def iter_items(self, domain: str, splits: Sequence[str]) -> Iterator[SourceItem | Rejection]:
        """Every input of `domain` in the given splits (subset of fdrd.schema.SPLITS), in a
        deterministic order: split by split in the order given, then the source's own order."""
        ...

    def count_items(self, domain: str, splits: Sequence[str]) -> int:
        """How many things `iter_items` will yield (items and rejections), without reading images.
        The build itself does not call it (it lists the items anyway); tools use it for a quick count."""
        ...
