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
    name_counter,
    name_key,
    name_tokens,
    replace_name,
)
from builders.captions.repair import domain_checker
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
    metas = tuple(taxonomy.meta_category(c) for c in taxonomy.categories)
    return list(_swap_table(taxonomy.categories, metas).get(category, ()))


@lru_cache(maxsize=16)
def _swap_table(categories: tuple[str, ...], metas: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """`swap_candidates` of every category at once: a taxonomy is fixed for a whole build."""
    members: dict[str, list[str]] = {}
    for category, meta in zip(categories, metas, strict=True):
        members.setdefault(meta, []).append(category)
    table = {}
    for category, meta in zip(categories, metas, strict=True):
        siblings = [c for c in members[meta] if c != category] or [c for c in categories if c != category]
        table[category] = tuple(
            c for c in siblings if not _same_name(c, category) and not contains_name(display_name(c), category)
        )
    return table


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


@lru_cache(maxsize=256)
def _with_edge_words(values: tuple[str, ...]) -> tuple[tuple[str, str, str, str], ...]:
    """(value, lower-cased value, first word, last word) of each vocabulary entry, once."""
    out = []
    for value in values:
        words = value.lower().split()
        out.append((value, value.lower(), words[0].strip(_PUNCTUATION), words[-1].strip(_PUNCTUATION)))
    return tuple(out)


_PUNCTUATION = ".,;:!?"


def _attribute_candidates(
    caption: str,
    attributes: list[dict[str, Any]],
    vocabulary: Vocabulary,
    domain: str,
    rng: random.Random,
    per_span: int,
) -> list[tuple[dict[str, Any], str]]:
    """(span, new value) pairs in draw order: up to `per_span` random values for each span, the
    spans in random order and interleaved, so that successive negatives change different spans
    whenever the caption has several. A value comes from the span's own slot in its domain
    (`Vocabulary.swap_pool`) and has the span's grammatical role: "petals" never becomes
    "bell-shaped", "one" never "two", a flower is never "jumping"."""
    drawn: list[list[tuple[dict[str, Any], str]]] = []
    for span in attributes:
        start, end = span["char_start"], span["char_end"]
        if caption[start:end] != span["value"]:
            continue  # a span that does not slice the caption cannot be swapped safely
        before = caption[:start].split()[-1:]
        after = caption[end:].split()[:1]
        word_before = before[0].lower().strip(_PUNCTUATION) if before else None
        word_after = after[0].lower().strip(_PUNCTUATION) if after else None
        same = vocabulary.synonyms_of(span["value"])
        role = vocabulary.role_of(span["name"], span["value"])
        values = [
            value
            for value, lower, first, last in _with_edge_words(vocabulary.swap_pool(domain, span["name"]))
            # "a sofa background" must not become "a dark background background".
            if lower not in same and first != word_before and last != word_after
            and vocabulary.role_of(span["name"], value) == role
        ]
        if values:
            drawn.append([(span, v) for v in rng.sample(values, min(per_span, len(values)))])
    rng.shuffle(drawn)
    ordered = []
    for i in range(max((len(c) for c in drawn), default=0)):
        ordered.extend(c[i] for c in drawn if i < len(c))
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
    result = NegativeSet([])
    seen = {caption.lower()}
    domain = taxonomy.domain
    category_quota = m - m // 2

    counter = name_counter(taxonomy.categories)
    caption_counts, caption_inside = counter.counts(caption)
    checker = domain_checker(domain, taxonomy.categories, vocabulary)

    def names_only(text: str, allowed: set[str]) -> bool:
        """The negative names no category more often than the caption except `allowed`, and no
        category sits inside a word more often: what the audit checks ("grilled rice" -> "fried
        rice" would be a category swap in disguise, "blurred green" -> "blurred ginger" hides a
        "red ginger" inside words)."""
        counts, inside = counter.counts(text)
        if any(inside[k] > caption_inside[k] for k in inside):
            return False
        return all(k in allowed for k in counts if counts[k] > caption_counts[k])

    def add(text: str, kind: str, named: str) -> bool:
        if text.lower() in seen:
            return False
        if kind == "category" and contains_name(text, category):
            return False
        if not names_only(text, {name_key(named)} if kind == "category" else set()):
            return False
        if checker.non_words(text) or checker.repeated_names(text):
            return False  # what the audit would count: "a terrier scottish terrier", a glued name
        seen.add(text.lower())
        result.negatives.append({"text": text, "kind": kind, "category": named})
        return True

    for kept in (keep or [])[:m]:
        # Vetted elsewhere, but held to the same checks as our own.
        add(kept["text"], "category", kept["category"])

    category_pool: list[str] = []
    if find_name(caption, category):
        category_pool = swap_candidates(category, taxonomy)
        rng.shuffle(category_pool)
    # A few spare values per span: some candidates fail the checks in `add`.
    attribute_pool = _attribute_candidates(caption, attributes, vocabulary, domain, rng, per_span=2 * m + 2)

    def take_category(limit: int) -> None:
        while category_pool and sum(n["kind"] == "category" for n in result.negatives) < limit:
            other = category_pool.pop(0)
            add(category_negative(caption, category, other), "category", other)

    def take_attribute(limit: int) -> None:
        while attribute_pool and len(result.negatives) < limit:
            span, value = attribute_pool.pop(0)
            add(attribute_negative(caption, span, value), "attribute", category)

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
