"""Multi-view hard negatives for one record: sibling-category swaps and attribute swaps.

Half of a record's `m` negatives swap the category for a sibling (a category of the same
meta-category, drawn without replacement), half swap one attribute span for another value of the
same type. Guarantees (tests/builders/test_negatives.py checks each): no negative equals the
caption, no two negatives are equal, the true category name does not survive in a category
negative, every replacement is whole-word, and a category negative names a category of the same
meta-category whenever that meta-category has at least two members. When one view cannot be made
(no attribute spans, too few siblings) the other view fills in and the shortfall is counted.
Everything is drawn from a generator seeded by the build seed and the record id.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from builders.captions.attributes import Vocabulary
from builders.captions.insert import (
    contains_name,
    display_name,
    find_name,
    fix_article,
    name_tokens,
    replace_name,
)
from builders.taxonomy import Taxonomy


@dataclass
class NegativeSet:
    """The negatives of one record (schema rows) and what went short, for the build report."""

    negatives: list[dict[str, Any]]
    notes: Counter[str] = field(default_factory=Counter)


def record_rng(seed: int, record_key: str) -> random.Random:
    """A generator that depends only on the build seed and the record (string seeding is stable)."""
    return random.Random(f"{seed}\x00{record_key}")


def _same_name(a: str, b: str) -> bool:
    return [t.lower() for t in name_tokens(a)] == [t.lower() for t in name_tokens(b)]


def swap_candidates(category: str, taxonomy: Taxonomy) -> list[str]:
    """Categories a category negative may name, in taxonomy order.

    Siblings of the same meta-category; all other categories only when the meta-category has a
    single member. A candidate whose name contains the true name ("english cocker spaniel" for
    "cocker spaniel") is left out: the true name would survive the swap.
    """
    siblings = taxonomy.siblings(category)
    if not siblings:
        siblings = [c for c in taxonomy.categories if c != category]
    return [c for c in siblings if not _same_name(c, category) and not contains_name(display_name(c), category)]


def category_negative(caption: str, category: str, other: str) -> str:
    """`caption` with every whole-word occurrence of `category` replaced by `other`."""
    return replace_name(caption, category, display_name(other))


def attribute_negative(caption: str, span: dict[str, Any], value: str) -> str:
    """`caption` with one attribute span replaced by `value` (capitalised like the old value)."""
    start, end = span["char_start"], span["char_end"]
    old = caption[start:end]
    if old[:1].isupper():
        value = value[:1].upper() + value[1:]
    return fix_article(caption[:start] + value + caption[end:], start)


def names_new_category(caption: str, text: str, value: str, taxonomy: Taxonomy) -> bool:
    """True when swapping in `value` made `text` name some category more often than `caption` does."""
    by_word = _categories_by_word(taxonomy.categories)
    suspects = {c for w in name_tokens(value) for c in by_word.get(w.lower(), ())}
    return any(len(find_name(text, other)) > len(find_name(caption, other)) for other in sorted(suspects))


@lru_cache(maxsize=64)
def _categories_by_word(categories: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """word -> categories whose name contains it (once per taxonomy, not once per record)."""
    index: dict[str, list[str]] = {}
    for category in categories:
        for word in {t.lower() for t in name_tokens(category)}:
            index.setdefault(word, []).append(category)
    return {word: tuple(names) for word, names in index.items()}


def _attribute_candidates(
    caption: str, attributes: list[dict[str, Any]], vocabulary: Vocabulary, domain: str, rng: random.Random
) -> list[tuple[dict[str, Any], str]]:
    """(span, new value) pairs in draw order: shuffled, then interleaved so that successive
    negatives change different spans whenever the caption has several."""
    entries = vocabulary.for_domain(domain)
    per_span: list[list[tuple[dict[str, Any], str]]] = []
    for span in attributes:
        if caption[span["char_start"] : span["char_end"]] != span["value"]:
            continue  # a span that does not slice the caption cannot be swapped safely
        start, end = span["char_start"], span["char_end"]
        before = caption[:start].split()[-1:]
        after = caption[end:].split()[:1]
        values = [
            v
            for v in entries.get(span["name"], ())
            if not vocabulary.are_synonyms(v, span["value"])
            # "a sofa background" must not become "a dark background background".
            and [w.lower() for w in v.split()[-1:]] != [w.lower().strip(".,;:!?") for w in after]
            and [w.lower() for w in v.split()[:1]] != [w.lower().strip(".,;:!?") for w in before]
        ]
        if values:
            rng.shuffle(values)
            per_span.append([(span, v) for v in values])
    rng.shuffle(per_span)
    ordered = []
    for i in range(max((len(c) for c in per_span), default=0)):
        ordered.extend(c[i] for c in per_span if i < len(c))
    return ordered


def make_negatives(
    caption: str,
    category: str,
    attributes: list[dict[str, Any]],
    taxonomy: Taxonomy,
    vocabulary: Vocabulary,
    m: int,
    rng: random.Random,
    keep: list[dict[str, Any]] | None = None,
) -> NegativeSet:
    """Up to `m` negatives for one record (fewer only when neither view can make more).

    `keep` holds negatives already vetted elsewhere (the fdrd-json import keeps sound released
    category swaps); they count toward the category view.
    """
    result = NegativeSet(list(keep or [])[:m])
    seen = {caption.lower()} | {n["text"].lower() for n in result.negatives}
    domain = taxonomy.domain
    category_quota = m - m // 2

    def add(text: str, kind: str, named: str) -> bool:
        if text.lower() in seen:
            return False
        if kind == "category" and contains_name(text, category):
            return False
        seen.add(text.lower())
        result.negatives.append({"text": text, "kind": kind, "category": named})
        return True

    category_pool: list[str] = []
    if find_name(caption, category):
        category_pool = swap_candidates(category, taxonomy)
        rng.shuffle(category_pool)
    attribute_pool = _attribute_candidates(caption, attributes, vocabulary, domain, rng)

    def take_category(limit: int) -> None:
        while category_pool and sum(n["kind"] == "category" for n in result.negatives) < limit:
            other = category_pool.pop(0)
            add(category_negative(caption, category, other), "category", other)

    def take_attribute(limit: int) -> None:
        while attribute_pool and len(result.negatives) < limit:
            span, value = attribute_pool.pop(0)
            text = attribute_negative(caption, span, value)
            if names_new_category(caption, text, value, taxonomy):
                continue  # "grilled rice" -> "fried rice" would be a category swap in disguise
            add(text, "attribute", category)

    take_category(category_quota)
    if sum(n["kind"] == "category" for n in result.negatives) < category_quota:
        result.notes["category_view_short"] += 1
    # Attribute swaps fill every slot left, which also covers a short category view.
    take_attribute(m)
    if sum(n["kind"] == "attribute" for n in result.negatives) < m // 2:
        result.notes["attribute_view_short"] += 1
    take_category(m - sum(n["kind"] == "attribute" for n in result.negatives))
    if len(result.negatives) < m:
        result.notes["short_negative_records"] += 1
    return result
