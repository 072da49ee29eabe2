"""Putting the category name into a caption, and finding it there again, always as a whole word.

The released FDRD captions were made by plain substring replacement ("cat" -> "great pyrenees" turned
"scattered" into "sgreat pyreneestered"). Everything here matches names only between word boundaries,
case-insensitively, with spaces and underscores treated alike ("german_shorthaired" is found in
"A German Shorthaired pointer"). The negatives and the audit use the same matcher, so what the builder
guarantees is exactly what the audit checks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

# One definition of a name's key for the builder and the audit: their counts are compared by it.
from builders.taxonomy import name_key

# A name boundary: no letter or digit may touch the name on either side. Hyphens and punctuation do
# not count as word characters, so "707-320" is found in "(707-320)" but "cat" is not in "scattered".
_BEFORE = r"(?<![^\W_])"
_AFTER = r"(?![^\W_])"
_WORD = r"[^\W_]+"


def name_tokens(name: str) -> list[str]:
    """The words of a category name; spaces and underscores both separate words."""
    return [token for token in re.split(r"[\s_]+", name.strip()) if token]


@lru_cache(maxsize=65536)
def name_pattern(name: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive pattern for a name whose words may be joined by spaces or underscores."""
    tokens = name_tokens(name)
    if not tokens:
        raise ValueError(f"empty name {name!r}")
    body = r"[\s_]+".join(re.escape(token) for token in tokens)
    return re.compile(_BEFORE + body + _AFTER, re.IGNORECASE)


@lru_cache(maxsize=65536)
def loose_name_pattern(name: str) -> re.Pattern[str]:
    """Like `name_pattern` but without word boundaries: finds the name inside other words too."""
    body = r"[\s_]+".join(re.escape(token) for token in name_tokens(name))
    return re.compile(body, re.IGNORECASE)


def find_name(text: str, name: str) -> list[tuple[int, int]]:
    """Character spans of every whole-word occurrence of `name` in `text`."""
    return [match.span() for match in name_pattern(name).finditer(text)]


def contains_name(text: str, name: str) -> bool:
    return name_pattern(name).search(text) is not None


def display_name(name: str) -> str:
    """How a category is written in a caption: underscores become spaces (CoOp's "great_pyrenees")."""
    return " ".join(name_tokens(name))


# Initialisms are read letter by letter: "an MD-80", "an F/A-18", "a DC-10".
_VOWEL_SOUND_LETTERS = set("AEFHILMNORSX")
_INITIALISM = re.compile(r"^[A-Z]{1,4}(?=$|[\d\-/ ])")
_A_DESPITE_VOWEL = ("uni", "use", "usu", "eu", "one", "once", "uk")
_AN_DESPITE_CONSONANT = ("hour", "honest", "honor", "honour", "heir")


def article_for(word: str) -> str:
    """'a' or 'an' by the sound of the word: vowels, initialisms read letter by letter, and digits
    as spoken ("an 8", "an 18-wheeler", "a 707-320")."""
    word = word.lstrip("\"'(")
    if not word:
        return "a"
    if word[0].isdigit():
        return "an" if word[0] == "8" or re.match(r"(11|18)(?!\d)", word) else "a"
    if _INITIALISM.match(word) and not re.match(r"^[A-Z][a-z]", word):
        return "an" if word[0] in _VOWEL_SOUND_LETTERS else "a"
    lower = word.lower()
    if lower.startswith(_A_DESPITE_VOWEL):
        return "a"
    if lower.startswith(_AN_DESPITE_CONSONANT):
        return "an"
    return "an" if lower[0] in "aeiou" else "a"


_ARTICLE_BEFORE = re.compile(r"(?<![^\W_])(a|an)(\s+)$", re.IGNORECASE)


def fix_article(text: str, start: int) -> str:
    """Make the article right before position `start` ("a"/"an") agree with the word starting there,
    keeping its capitalisation ("A" stays capitalised at a sentence start)."""
    match = _ARTICLE_BEFORE.search(text[:start])
    if not match:
        return text
    wanted = article_for(text[start:])
    old = match.group(1)
    if old.lower() == wanted:
        return text
    new = wanted.capitalize() if old[0].isupper() else wanted
    return text[: match.start(1)] + new + text[match.end(1) :]


def fix_articles_before(text: str, name: str) -> str:
    """Every "a"/"an" right before a whole-word occurrence of `name` made to agree with it."""
    for start, _ in reversed(find_name(text, name)):
        text = fix_article(text, start)
    return text


def replace_spans(text: str, spans: Iterable[tuple[int, int]], replacement: str) -> str:
    """Replace non-overlapping spans by `replacement`, fixing the article before each one."""
    out = text
    # Right to left so that earlier offsets stay valid while later spans change length.
    for start, end in sorted(spans, reverse=True):
        out = fix_article(out[:start] + _sentence_case(out, start, replacement) + out[end:], start)
    return out


def _sentence_case(text: str, start: int, word: str) -> str:
    """`word` with its first letter capitalised when it starts a sentence of `text` at `start`."""
    before = text[:start].rstrip()
    if before == "" or before.endswith((".", "!", "?")):
        return word[:1].upper() + word[1:]
    return word


def replace_name(text: str, name: str, replacement: str) -> str:
    """Every whole-word occurrence of `name` (any case, spaces/underscores alike) replaced by `replacement`."""
    return replace_spans(text, find_name(text, name), replacement)


def _head_noun_spans(caption: str, noun: str, compound_heads: Iterable[str]) -> list[tuple[int, int]]:
    """Whole-word occurrences of a head noun that are not the first half of a compound ("cat" in
    "cat tree" names no cat: replacing it by the breed would write "Bengal tree")."""
    heads = tuple(compound_heads)
    spans = find_name(caption, noun)
    if not heads:
        return spans
    compound = re.compile(r"\s+(?:" + "|".join(re.escape(h) for h in heads) + r")(?![^\W_])", re.IGNORECASE)
    return [(s, e) for s, e in spans if not compound.match(caption, e)]


def insertion_kind(caption: str, category: str, head_nouns: Iterable[str], compound_heads: Iterable[str] = ()) -> str:
    """What `insert_category` does to this caption: "present" (already named), "replaced" (a head
    noun becomes the category) or "prefixed" (a sentence naming it goes in front)."""
    if contains_name(caption, category):
        return "present"
    heads = tuple(compound_heads)
    return "replaced" if any(_head_noun_spans(caption, noun, heads) for noun in head_nouns) else "prefixed"


def insert_category(caption: str, category: str, head_nouns: Iterable[str], compound_heads: Iterable[str] = ()) -> str:
    """Put `category` into a VLM caption.

    If the caption already names the category, it is returned unchanged. Otherwise the first head
    noun found as a whole word ("cat", "airplane", ...; longest first, so "airplane" wins over
    "plane") is replaced by the category, fixing the article in front of it. Only the first
    occurrence is replaced: later mentions ("the cat looks up") then read naturally as anaphora.
    With no head noun, a short sentence "This is a/an {category}." is put in front. A head noun that
    starts a compound ("cat tree", `compound_heads`) is not replaced.
    """
    shown = display_name(category)
    caption = caption.strip()
    if contains_name(caption, category):
        return caption
    first: tuple[int, int] | None = None
    heads = tuple(compound_heads)
    for noun in sorted(set(head_nouns), key=lambda n: (-len(n), n)):
        spans = _head_noun_spans(caption, noun, heads)
        if spans and (first is None or spans[0][0] < first[0]):
            first = spans[0]
    if first is not None:
        start, end = first
        return fix_article(caption[:start] + _sentence_case(caption, start, shown) + caption[end:], start)
    prefix = f"This is {article_for(shown)} {shown}."
    return f"{prefix} {caption}" if caption else prefix


_PLURAL_ENDING = re.compile(r"(?:e?s)(?![^\W_])", re.IGNORECASE)


def inside_word(text: str, start: int, end: int) -> bool:
    """True when text[start:end] touches a letter or digit: "cat" in "scattered". A plural ending
    ("roses", "irises") does not make a name part of another word."""
    before = start > 0 and text[start - 1].isalnum()
    after = end < len(text) and text[end].isalnum() and not _PLURAL_ENDING.match(text, end)
    return before or after


class NameCounter:
    """How often each of many names occurs in a text, as a word or inside words (case-insensitive,
    spaces and underscores alike). The audit counts defects with it, and the negatives check
    their candidates with it, so that a built dataset audits to zero by construction.

    Fast enough for tens of thousands of captions: a name is only searched for when its first
    word occurs in the text."""

    def __init__(self, names: Iterable[str]):
        self.names = [n for n in dict.fromkeys(names) if name_tokens(n)]
        self._first = {n: name_tokens(n)[0].lower() for n in self.names}

    def candidates(self, text: str) -> list[str]:
        lower = text.lower()
        return [n for n in self.names if self._first[n] in lower]

    def counts(self, text: str) -> tuple[Counter[str], Counter[str]]:
        """(every occurrence, occurrences inside another word) per name key. An occurrence that
        lies within another name's occurrence is part of that name, not a mention of its own
        ("rose" in "pink primrose")."""
        found = [
            (match.start(), match.end(), name_key(name))
            for name in self.candidates(text)
            for match in loose_name_pattern(name).finditer(text)
        ]
        every: Counter[str] = Counter()
        inside: Counter[str] = Counter()
        for start, end, key in found:
            if any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in found):
                continue
            every[key] += 1
            inside[key] += int(inside_word(text, start, end))
        return every, inside


@lru_cache(maxsize=64)
def name_counter(names: tuple[str, ...]) -> NameCounter:
    """One counter per set of names (a taxonomy's categories), built once."""
    return NameCounter(names)
