"""Multi-view negative captions for training (dcar-method.md step 6): per record, `m` negatives, half
with the category swapped for a sibling of the same meta-category, half with one attribute swapped.

They come from the dataset's `negatives` column when it has them and are made on the fly from the
record's own columns otherwise (benchmark/ never imports builders/, so this is the benchmark's own,
smaller generator): a category swap replaces every whole-word occurrence of the category's name with a
sibling's name (siblings: the split's other categories of the same meta-category, or every other
category when the meta-category has one member); an attribute swap replaces one annotated attribute span
with another value of the same attribute name seen in the split. Whatever the source, a negative is
never the positive (compared case- and space-insensitively), never a duplicate, and a category negative
never still names the true category. When a record cannot fill a view, the other view fills in; when
neither can, the record has fewer than `m` (the batch marks the missing slots).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("category", "attribute")
_VOWELS = "aeiou"
_EDGE_PUNCTUATION = ".,;:!?"


@dataclass(frozen=True)
class Negative:
    text: str
    kind: str  # "category" | "attribute"
    category: str  # the category the negative describes


def text_key(text: str) -> str:
    """What two captions must differ in to count as different: case and runs of spaces do not count."""
    return " ".join(text.casefold().split())


def display_name(category: str) -> str:
    return " ".join(category.replace("_", " ").split())


def _name_pattern(name: str) -> re.Pattern[str]:
    # Whole words only, a hyphen counting as part of a word: "pointed starflower" is not inside
    # "three-pointed starflower". Any run of spaces or underscores matches a space in the name.
    words = [re.escape(word) for word in display_name(name).split()]
    return re.compile(r"(?<![\w-])" + r"[\s_]+".join(words) + r"(?![\w-])", re.IGNORECASE)


def names_category(text: str, category: str) -> bool:
    return bool(display_name(category)) and _name_pattern(category).search(text) is not None


def _with_article(text: str, start: int) -> str:
    """Make an "a"/"an" right before position `start` agree with the word that now starts there."""
    match = re.search(r"(?<![\w-])(a|an|A|An)(\s+)$", text[:start])
    if match is None or start >= len(text):
        return text
    article = "an" if text[start].lower() in _VOWELS else "a"
    if match.group(1)[0].isupper():
        article = article.capitalize()
    return text[: match.start(1)] + article + match.group(2) + text[start:]


def category_swap(caption: str, category: str, other: str) -> str | None:
    """`caption` with every whole-word occurrence of `category` replaced by `other`; None when absent."""
    pattern = _name_pattern(category)
    if not display_name(category) or pattern.search(caption) is None:
        return None
    replacement = display_name(other)
    pieces, last, starts = [], 0, []
    for match in pattern.finditer(caption):
        pieces.append(caption[last : match.start()])
        value = replacement[:1].upper() + replacement[1:] if match.group(0)[:1].isupper() else replacement
        starts.append(sum(len(piece) for piece in pieces))
        pieces.append(value)
        last = match.end()
    pieces.append(caption[last:])
    text = "".join(pieces)
    # Articles are fixed from the last replacement backwards so that earlier positions stay valid.
    for start in reversed(starts):
        text = _with_article(text, start)
    return text


def attribute_swap(caption: str, span: dict[str, Any], value: str) -> str | None:
    """`caption` with one attribute span replaced by `value`; None when the span does not slice the caption."""
    start, end = int(span["char_start"]), int(span["char_end"])
    if not (0 <= start < end <= len(caption)) or caption[start:end] != span["value"]:
        return None
    if caption[start:end][:1].isupper():
        value = value[:1].upper() + value[1:]
    return _with_article(caption[:start] + value + caption[end:], start)


class NegativeSampler:
    """Draws up to `m` negatives per record of one split (column first, then made on the fly)."""

    def __init__(
        self,
        captions: Sequence[str],
        categories: Sequence[str],
        meta_categories: Sequence[str],
        attributes: Sequence[Sequence[dict[str, Any]]],
        column: Sequence[Sequence[dict[str, Any]]] | None,
        m: int,
    ):
        if m < 1:
            raise ValueError(f"m must be at least 1, got {m}")
        self.captions, self.categories, self.attributes = list(captions), list(categories), list(attributes)
        self.column = list(column) if column is not None else [[] for _ in self.captions]
        self.m = m
        members: dict[str, list[str]] = defaultdict(list)
        for category, meta in sorted(set(zip(categories, meta_categories, strict=True))):
            members[meta].append(category)
        everything = sorted(set(categories))
        self.siblings: dict[str, list[str]] = {}
        for category, meta in zip(categories, meta_categories, strict=True):
            if category in self.siblings:
                continue
            # A category with the same name text would give the positive back: it is no sibling.
            key = text_key(display_name(category))
            others = [c for c in everything if text_key(display_name(c)) != key]
            # A meta-category of one: any other category of the domain, as the builder does.
            self.siblings[category] = [c for c in members[meta] if c in others] or others
        values: dict[str, set[str]] = defaultdict(set)
        for spans in self.attributes:
            for span in spans or []:
                values[span["name"]].add(span["value"])
        self.values = {name: sorted(found) for name, found in values.items()}

    @classmethod
    def from_dataset(cls, dataset, m: int) -> NegativeSampler:
        columns = set(dataset.column_names)
        return cls(
            dataset["caption"],
            dataset["category"],
            dataset["meta_category"] if "meta_category" in columns else [""] * len(dataset),
            dataset["attributes"] if "attributes" in columns else [[] for _ in range(len(dataset))],
            dataset["negatives"] if "negatives" in columns else None,
            m,
        )

    def __len__(self) -> int:
        return len(self.captions)

    def draw(self, index: int, rng: random.Random) -> list[Negative]:
        """Up to m negatives of record `index`: ceil(m/2) category swaps and floor(m/2) attribute swaps when
        both views can be made, the other view filling in otherwise."""
        caption, category = self.captions[index], self.categories[index]
        seen = {text_key(caption)}
        chosen: list[Negative] = []

        def accept(negative: Negative) -> bool:
            key = text_key(negative.text)
            if not negative.text.strip() or key in seen:
                return False
            if negative.kind == "category" and names_category(negative.text, category):
                return False  # the true name survived the swap
            seen.add(key)
            chosen.append(negative)
            return True

        # Column first; the on-the-fly candidates are made only when the column runs short.
        pools = {kind: _lazy_chain(self._column_pool(index, kind, rng), lambda kind=kind: self._fresh_pool(index, kind, rng))
                 for kind in KINDS}
        quota = {"category": self.m - self.m // 2, "attribute": self.m // 2}
        for kind in KINDS:
            _take(pools[kind], quota[kind], kind, chosen, accept)
        for kind in KINDS:  # one view short: the other fills the remaining slots
            other = sum(n.kind != kind for n in chosen)
            _take(pools[kind], self.m - other, kind, chosen, accept)
        return chosen

    def _column_pool(self, index: int, kind: str, rng: random.Random) -> list[Negative]:
        pool = [
            Negative(str(row.get("text") or ""), kind, str(row.get("category") or self.categories[index]))
            for row in self.column[index] or []
            if row.get("kind") == kind
        ]
        rng.shuffle(pool)
        return pool

    def _fresh_pool(self, index: int, kind: str, rng: random.Random) -> Iterator[Negative]:
        """Candidates made from the record's caption, in random order (checked later by `accept`)."""
        caption, category = self.captions[index], self.categories[index]
        if kind == "category":
            others = list(self.siblings.get(category, []))
            rng.shuffle(others)
            made = ((category_swap(caption, category, other), other) for other in others)
            return (Negative(text, "category", other) for text, other in made if text is not None)
        pairs = []
        for span in self.attributes[index] or []:
            before = caption[: int(span["char_start"])].split()[-1:]
            after = caption[int(span["char_end"]) :].split()[:1]
            edge_before = before[0].casefold().strip(_EDGE_PUNCTUATION) if before else None
            edge_after = after[0].casefold().strip(_EDGE_PUNCTUATION) if after else None
            for value in self.values.get(span["name"], []):
                words = value.casefold().split()
                # Another value of the same name, and no doubled word at its edges ("a dark background background").
                if text_key(value) != text_key(span["value"]) and words and words[0] != edge_before and words[-1] != edge_after:
                    pairs.append((span, value))
        rng.shuffle(pairs)
        made = (attribute_swap(caption, span, value) for span, value in pairs)
        return (Negative(text, "attribute", category) for text in made if text is not None)


def _lazy_chain(first: list[Negative], later: Callable[[], Iterable[Negative]]) -> Iterator[Negative]:
    yield from first
    yield from later()


def _take(pool: Iterator[Negative], limit: int, kind: str, chosen: list[Negative], accept) -> None:
    """Accept candidates of `pool` until `chosen` holds `limit` of `kind` or the pool is spent."""
    while sum(n.kind == kind for n in chosen) < limit:
        candidate = next(pool, None)
        if candidate is None:
            return
        accept(candidate)
