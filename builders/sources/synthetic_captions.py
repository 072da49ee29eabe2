"""Captions, attribute spans and negatives for synthetic specimens, from their true attributes.

A caption is kept as a list of pieces: literal text, an article ("a"/"an", chosen from the word
after it) and slots (the category name or one attribute value). Rendering the pieces gives the text
and the exact character span of every slot. A negative is the same pieces with one slot's value
swapped and rendered again, so a swap replaces whole words only and the article still agrees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from builders.sources.synthetic_specimens import ATTRIBUTE_VALUES

# Adjectives go before the noun in this order ("a small striped red starflower").
ADJECTIVE_ATTRIBUTES = ("size", "pattern", "colour")
TAIL_PHRASES = {
    "background": ("on a ", " background"),
    "position": ("near the ", " of the picture"),
    "rotation": ("shown ", ""),
}
SENTENCE_FRAMES = (
    ("", "."),
    ("A photo of ", "."),
    ("This is ", "."),
    ("Here we see ", "."),
    ("An illustration showing ", "."),
    ("There is ", " in this image."),
)
# Pretraining captions: short, lower case, sometimes with filler words, like alt text.
PRETRAIN_FRAMES = (("", ""), ("photo: ", ""), ("", " pic"), ("my ", ""), ("", ", found today"), ("img of ", ""))


@dataclass(frozen=True)
class Slot:
    name: str  # "category" or an attribute type
    value: str


@dataclass(frozen=True)
class Article:
    capital: bool


Piece = str | Slot | Article


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: dict[str, tuple[int, int]]  # slot name -> (start, end)


def _vowel_sound(word: str) -> bool:
    """Whether "an" goes before `word`: a vowel letter, except where it sounds like a "w" or "y"
    ("a one-spot", "a unique")."""
    lowered = word.lower()
    return lowered[:1] in ("a", "e", "i", "o", "u") and not lowered.startswith(("one", "uni", "use", "eu"))


def render(pieces: list[Piece]) -> Rendered:
    text = ""
    spans: dict[str, tuple[int, int]] = {}
    for k, piece in enumerate(pieces):
        if isinstance(piece, Slot):
            spans[piece.name] = (len(text), len(text) + len(piece.value))
            text += piece.value
        elif isinstance(piece, Article):
            following = next((p.value if isinstance(p, Slot) else p for p in pieces[k + 1 :] if p != " "), "")
            article = "an" if _vowel_sound(following) else "a"
            text += article.capitalize() if piece.capital else article
        else:
            text += piece
    return Rendered(text, spans)


def _noun_phrase(
    category: str, attributes: dict[str, str], mentioned: list[str], capital: bool, article: bool = True
) -> list[Piece]:
    pieces: list[Piece] = [Article(capital), " "] if article else []
    for name in ADJECTIVE_ATTRIBUTES:
        if name in mentioned:
            pieces += [Slot(name, attributes[name]), " "]
    pieces.append(Slot("category", category))
    return pieces


def _tail(attributes: dict[str, str], mentioned: list[str], rng: random.Random) -> list[Piece]:
    names = [n for n in mentioned if n in TAIL_PHRASES]
    rng.shuffle(names)
    pieces: list[Piece] = []
    for k, name in enumerate(names):
        before, after = TAIL_PHRASES[name]
        pieces += [" " if k == 0 else ", ", before, Slot(name, attributes[name]), after]
    return pieces


def caption_pieces(category: str, attributes: dict[str, str], rng: random.Random) -> list[Piece]:
    """A full caption naming the category and 2-4 of the true attributes."""
    mentioned = rng.sample(list(ATTRIBUTE_VALUES), rng.randint(2, 4))
    opening, closing = rng.choice(SENTENCE_FRAMES)
    pieces: list[Piece] = [opening] if opening else []
    pieces += _noun_phrase(category, attributes, mentioned, capital=not opening)
    pieces += _tail(attributes, mentioned, rng)
    pieces.append(closing)
    return pieces


def pretrain_caption_pieces(category: str, attributes: dict[str, str], rng: random.Random) -> list[Piece]:
    """A short, noisier caption: the category and 0-2 attributes, lower case, filler words."""
    mentioned = rng.sample(list(ATTRIBUTE_VALUES), rng.randint(0, 2))
    opening, closing = rng.choice(PRETRAIN_FRAMES)
    pieces: list[Piece] = [opening] if opening else []
    pieces += _noun_phrase(category, attributes, mentioned, capital=False, article=False)
    pieces += _tail(attributes, mentioned, rng)
    pieces.append(closing)
    return pieces


def swap(pieces: list[Piece], name: str, value: str) -> list[Piece]:
    """The same caption with slot `name` set to `value` (whole words only)."""
    return [replace(p, value=value) if isinstance(p, Slot) and p.name == name else p for p in pieces]


def mentioned_attributes(pieces: list[Piece]) -> list[str]:
    return [p.name for p in pieces if isinstance(p, Slot) and p.name != "category"]


def attribute_records(pieces: list[Piece]) -> tuple[str, list[dict]]:
    """Caption text and its `attributes` column: one record per mentioned attribute, in text order."""
    rendered = render(pieces)
    records = []
    for piece in pieces:
        if isinstance(piece, Slot) and piece.name != "category":
            start, end = rendered.spans[piece.name]
            records.append({"name": piece.name, "value": piece.value, "char_start": start, "char_end": end})
    return rendered.text, records


def negatives(
    pieces: list[Piece], category: str, siblings: list[str], rng: random.Random, per_kind: int = 2
) -> list[dict]:
    """`per_kind` sibling-category swaps (drawn without replacement) and `per_kind` attribute swaps
    (distinct attributes while the caption mentions enough, each to a different value)."""
    result = []
    for sibling in rng.sample(siblings, min(per_kind, len(siblings))):
        result.append({"text": render(swap(pieces, "category", sibling)).text, "kind": "category", "category": sibling})
    mentioned = mentioned_attributes(pieces)
    current = {p.name: p.value for p in pieces if isinstance(p, Slot)}
    # Distinct attributes first; a caption with one attribute swaps it to different values.
    chosen = rng.sample(mentioned, min(per_kind, len(mentioned)))
    used_values: dict[str, set[str]] = {}
    while mentioned and len(chosen) < per_kind:
        chosen.append(rng.choice(mentioned))
    for name in chosen:
        used = used_values.setdefault(name, {current[name]})
        options = [v for v in ATTRIBUTE_VALUES[name] if v not in used]
        if not options:
            continue
        value = rng.choice(options)
        used.add(value)
        result.append({"text": render(swap(pieces, name, value)).text, "kind": "attribute", "category": category})
    return result
