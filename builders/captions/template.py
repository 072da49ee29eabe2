"""Deterministic captions from labels (the `template` captioner), for users without a VLM.

A source that knows its images' attributes (the synthetic source draws them; a user's labelled
folder may have them) puts them in `item.extra["attributes"]` as {type: value}. The caption names the
category and every attribute, in one of a few sentence forms picked by a hash of the record key, so
the same record always gets the same caption; the attribute spans are recorded as it is written.

A source without attribute labels (the CoOp datasets) gets a category caption instead
(`category_caption`): the category and its meta-category in one of a few sentence forms, and no
attribute at all, since nothing is known about the image beyond its class.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from builders.captions.insert import article_for, display_name, name_counter
from builders.taxonomy import name_key
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


# How a category is named, after CoOp's hand-written prompts for these domains ("{} texture.",
# "a photo of a person doing {}.", "a photo of {}, a type of food."); every other domain: "a/an {}".
_SUBJECTS = {"dtd": "{a} {name} texture", "ucf101": "a person doing {name}", "food-101": "{name}"}
_DEFAULT_SUBJECT = "{a} {name}"
# (form without the meta-category, form with it); the meta-category is called a group because
# its names are of every kind: a species, a car make, an aircraft family, a kind of scene.
_CATEGORY_FORMS = (
    ("A photo of {subject}.", "A photo of {subject}, from the {meta} group."),
    ("{Subject}.", "{Subject}, in the {meta} group."),
    ("This image shows {subject}.", "This image shows {subject} ({meta})."),
    ("There is {subject} in this picture.", "There is {subject} in this picture, from the {meta} group."),
)
# A trailing note in brackets ("workplace (office building, factory, lab, etc.)", or the "(2)"
# that numbers groups of one name) is left out of the caption.
_BRACKETED_TAIL = re.compile(r"\s*\([^()]*\)\s*$")
_READABLE_GROUP = re.compile(r"[^\W_][\w' ,&/-]*", re.UNICODE)


def category_subject(domain: str, category: str) -> str:
    """The noun phrase naming `category` in a caption of `domain` ("an Abyssinian", "a banded texture")."""
    name = display_name(category)
    return _SUBJECTS.get(domain, _DEFAULT_SUBJECT).format(a=article_for(name), name=name)


def category_caption(
    domain: str, category: str, meta_category: str, categories: tuple[str, ...], record_key: str, seed: int = 0
) -> str:
    """A caption naming `category` and its meta-category, in a form picked by a hash of seed and
    record key. The meta-category is left out when it would name a class ("like pink primrose"
    groups of spelling similarity, a group named after its only member) or is not a plain name;
    a form whose own words name another class ("a photo" in a domain with a class "photo") is
    passed over for the next."""
    digest = hashlib.sha256(f"{seed}\x00category\x00{record_key}".encode()).digest()
    subject = category_subject(domain, category)
    fields = {"subject": subject, "Subject": subject[:1].upper() + subject[1:]}
    meta = _BRACKETED_TAIL.sub("", meta_category or "").strip()
    counter = name_counter(tuple(categories))
    first = digest[0] % len(_CATEGORY_FORMS)
    forms = [_CATEGORY_FORMS[(first + k) % len(_CATEGORY_FORMS)] for k in range(len(_CATEGORY_FORMS))]
    candidates = [grouped.format(meta=meta, **fields) for _, grouped in forms] if meta and _READABLE_GROUP.fullmatch(meta) else []
    candidates += [plain.format(**fields) for plain, _ in forms]
    for caption in candidates:
        named, _ = counter.counts(caption)
        if dict(named) == {name_key(category): 1}:
            return caption
    return candidates[len(candidates) - len(forms)]  # every form names another class: the plain one
