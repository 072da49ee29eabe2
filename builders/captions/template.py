"""Deterministic captions from structured attribute labels (the `template` captioner).

A source that knows its images' attributes (the synthetic source draws them; a user's labelled
folder may have them) puts them in `item.extra["attributes"]` as {type: value}. The caption names the
category and every attribute, in one of a few sentence forms picked by a hash of the record key, so
the same record always gets the same caption; the attribute spans are recorded as it is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

from builders.captions.insert import article_for, display_name
from fdrd.errors import FdrdError
from fdrd.schema import ATTRIBUTE_TYPES

# Words that stand before the category name, in this order ("a small red striped circle").
_BEFORE_NOUN = ("size", "colour", "pattern")
# Phrases after it, each with the attribute value in place of {}.
_AFTER_NOUN = {
    "shape": "with {}",
    "pose": "{}",
    "count": "({} in the picture)",
    "position": "in the {} of the image",
    "rotation": "rotated by {}",
    "background": "against a {} background",
}
_OPENINGS = ("A photo of {np}", "{NP}", "This image shows {np}", "There is {np}")


class _Writer:
    """Appends text and records attribute spans at the offsets where they land."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        self.text += text

    def add_value(self, name: str, value: str) -> None:
        start = len(self.text)
        self.text += value
        self.spans.append({"name": name, "value": value, "char_start": start, "char_end": len(self.text)})


def form_index(record_key: str, seed: int = 0) -> int:
    """Which sentence form a record gets: a stable hash, not Python's salted hash()."""
    digest = hashlib.sha256(f"{seed}\x00{record_key}".encode()).digest()
    return digest[0] % len(_OPENINGS)


def template_caption(
    category: str, attributes: dict[str, Any], record_key: str, seed: int = 0
) -> tuple[str, list[dict[str, Any]]]:
    """Caption and attribute spans for a category with labelled attributes {type: value}."""
    unknown = sorted(set(attributes) - set(ATTRIBUTE_TYPES))
    if unknown:
        raise FdrdError(
            f"record {record_key}: unknown attribute type(s) {', '.join(unknown)} in extra['attributes']; "
            f"use {', '.join(ATTRIBUTE_TYPES)}"
        )
    values = {k: " ".join(str(v).split()) for k, v in attributes.items() if str(v).strip()}
    before = [(k, values[k]) for k in _BEFORE_NOUN if k in values]
    first_word = before[0][1] if before else display_name(category)
    opening = _OPENINGS[form_index(record_key, seed)]
    writer = _Writer()
    prefix, _, _ = opening.partition("{")
    article = article_for(first_word)
    starts_sentence = not prefix
    writer.add(prefix + (article.capitalize() if starts_sentence else article) + " ")
    for name, value in before:
        writer.add_value(name, value)
        writer.add(" ")
    writer.add(display_name(category))
    for name, phrase in _AFTER_NOUN.items():
        if name in values:
            head, _, tail = phrase.partition("{}")
            writer.add(" " + head)
            writer.add_value(name, values[name])
            writer.add(tail)
    writer.add(".")
    return writer.text, writer.spans
