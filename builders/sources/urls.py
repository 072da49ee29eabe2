"""The `urls` source: a directory written by `fdrd crawl` (builders/crawl/) as build input.

Every row of the crawled list becomes a `SourceItem` whose `image_path` is the stored image, or a
`Rejection` naming why its download failed (or that its shard has not been crawled yet), so the
build report accounts for every URL. Domains come from the list's `domain` column (default: the
list file's stem); the split from its `split` column, else from a hash of the URL, so that the same
URL always lands in the same split. Captions in the list are kept; empty ones are left to the
caption stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from builders.crawl.lists import UrlRow
from builders.crawl.store import CrawlStore
from builders.sources import check_domains
from builders.sources.base import Rejection, SourceItem
from builders.taxonomy import Taxonomy, build_taxonomy, name_key
from fdrd.errors import FdrdError

# CoOp's split_zhou proportions for datasets without an official split.
DEFAULT_SPLIT_FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.3}


def hash_split(url: str, fractions: dict[str, float]) -> str:
    """A split drawn from the URL's hash: stable across runs, machines and list orders."""
    position = int(hashlib.sha256(url.encode()).hexdigest()[:12], 16) / float(16 ** 12)
    cumulative = 0.0
    for split, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return split
    return list(fractions)[-1]


class UrlSource:
    name = "urls"

    def __init__(self, data_root: str | Path, domains: Sequence[str] | None = None,
                 split_fractions: dict[str, float] | None = None, meta_encoder: str | None = None):
        self.meta_encoder = meta_encoder  # groups categories by meaning when the list gives none
        self._taxonomies: dict[str, Taxonomy] = {}  # an encoder is loaded once per domain, not per call
        self.root = Path(data_root)
        self.store = CrawlStore(self.root)
        self.shard_size = self.store.config()["shard_size"]  # FdrdError when not a crawl output
        self.split_fractions = dict(split_fractions or DEFAULT_SPLIT_FRACTIONS)
        if abs(sum(self.split_fractions.values()) - 1.0) > 1e-9:
            raise FdrdError(f"urls source: split fractions {self.split_fractions} must add up to 1")
        self.rows = self.store.rows()
        known = list(dict.fromkeys(row.domain for row in self.rows))
        self._domains = check_domains(domains, known, f"{self.root}/urls.jsonl")
        self._outcomes = self._read_outcomes()

    def _read_outcomes(self) -> dict[int, dict]:
        """Row index -> crawl record, from finished shards and from journals of unfinished ones."""
        config = self.store.config()
        outcomes: dict[int, dict] = {}
        for shard in range(-(-config["rows"] // config["shard_size"])):
            if self.store.is_done(shard):
                outcomes.update((record["index"], record) for record in self.store.results(shard))
            else:
                outcomes.update(self.store.journaled(shard))
        return outcomes

    def domains(self) -> list[str]:
        return list(self._domains)

    def _domain_rows(self, domain: str) -> list[UrlRow]:
        return [row for row in self.rows if row.domain == domain]

    def split_of(self, row: UrlRow) -> str:
        return row.split or hash_split(row.url, self.split_fractions)

    def taxonomy(self, domain: str) -> Taxonomy:
        """Categories sorted by name (ids stay put when rows are appended in any order); meta-
        categories from the list's `meta_category` column, else derived like any other domain's."""
        if domain not in self._taxonomies:
            self._taxonomies[domain] = self._make_taxonomy(domain)
        return self._taxonomies[domain]

    def _make_taxonomy(self, domain: str) -> Taxonomy:
        rows = [row for row in self._domain_rows(domain) if row.category]
        categories = tuple(sorted({row.category for row in rows}, key=lambda c: (name_key(c), c)))
        meta: dict[str, str] = {}
        for row in rows:
            if not row.meta_category:
                continue
            if meta.setdefault(row.category, row.meta_category) != row.meta_category:
                raise FdrdError(
                    f"{self.root}/urls.jsonl: row {row.index} gives {row.category!r} meta-category "
                    f"{row.meta_category!r}, an earlier row {meta[row.category]!r}; make them agree in the list"
                )
        if meta:
            return Taxonomy(domain, categories, {c: meta.get(c, "") for c in categories},
                            "meta_category column of the URL list", meta_rule="user file")
        return build_taxonomy(domain, categories, encoder=self.meta_encoder)

    def count_items(self, domain: str, splits: Sequence[str]) -> int:
        wanted = set(splits)
        return sum(1 for row in self._domain_rows(domain) if self.split_of(row) in wanted)

    def iter_items(self, domain: str, splits: Sequence[str]) -> Iterator[SourceItem | Rejection]:
        taxonomy = self.taxonomy(domain)
        by_split: dict[str, list[UrlRow]] = {}
        for row in self._domain_rows(domain):  # one URL hash per row, not one per row and split
            by_split.setdefault(self.split_of(row), []).append(row)
        for split in splits:
            for row in by_split.get(split, []):
                yield self._item(row, split, taxonomy)

    def _item(self, row: UrlRow, split: str, taxonomy: Taxonomy) -> SourceItem | Rejection:
        outcome = self._outcomes.get(row.index)
        if outcome is None:
            shard = row.index // self.shard_size
            return Rejection(row.domain, split, row.url, f"not crawled yet (shard {shard} unfinished); rerun fdrd crawl")
        if outcome["status"] != "ok":
            detail = f": {outcome['detail']}" if outcome.get("detail") else ""
            return Rejection(row.domain, split, row.url, f"download failed, {outcome['reason']}{detail}")
        image = self.store.image_file(outcome.get("path"))
        if image is None:  # a tampered journal or result file: never read outside the crawl folder
            return Rejection(row.domain, split, row.url, f"crawl record names {str(outcome.get('path'))[:120]!r}, "
                             "not an image stored inside the crawl folder; refusing to read it")
        return SourceItem(
            domain=row.domain,
            split=split,
            category=row.category,
            category_id=taxonomy.category_id(row.category),
            meta_category=taxonomy.meta_category(row.category),
            original=row.url,
            dataset="urls",
            license=row.license,
            image_path=str(image),
            caption=row.caption or None,
            extra={"crawl_sha256": outcome["sha256"], "final_url": outcome.get("final_url", row.url)},
        )
