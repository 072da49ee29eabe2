"""Categories and meta-categories of a domain, and the sibling categories that negatives swap in.

`Taxonomy` is what every later stage reads (negatives, audit, the benchmark's category weights);
`build_taxonomy` derives one per domain from the domain's own files where they exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Taxonomy:
    domain: str
    categories: tuple[str, ...]  # human-readable names; the index is the category_id
    meta_categories: dict[str, str]  # category -> meta-category; "" when the domain has none

    def category_id(self, category: str) -> int:
        try:
            return self.categories.index(category)
        except ValueError:
            raise KeyError(f"{self.domain}: unknown category {category!r}") from None

    def meta_category(self, category: str) -> str:
        return self.meta_categories.get(category, "")

    def siblings(self, category: str) -> list[str]:
        """Other categories of the same meta-category, in category order; all other categories
        when the domain has no meta-categories."""
        meta = self.meta_category(category)
        return [c for c in self.categories if c != category and self.meta_category(c) == meta]
