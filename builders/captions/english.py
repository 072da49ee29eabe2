"""Does a caption read as English? Words in no dictionary, names repeated back to back, other classes named.

Repairs by substitution write words like "sdogtered" or "Westplane", double a name ("lotus lotus",
"terrier scottish terrier") or leave a caption naming a class that is not its own ("a beagle" for a
basset hound). `CaptionChecker` finds all three; the audit counts them and the caption stage refuses
to write a caption or negative that has any, so a built dataset audits to zero by construction.

The dictionary is wordfreq's English word list (shipped inside the package, no network): every word
seen often enough in its corpora, inflections included ("scattered", "airplanes", "petals").

A word counts as a non-word when it is in no dictionary, is no word of a class name of the domain
(plural and possessive forms included), and is not written as a name or a code: a token that starts
with a capital letter (an airline, "Cityhopper") or holds a digit ("G-BHUM1", "A320-214") is a name,
quoted text (`"..."`) is copied from the image, and web addresses are skipped. A name or code still
counts when a class name or a generic word of the domain is glued into it ("Sky737-400",
"biDH-82", "Westplane"): that is what the released substitutions left behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from builders.captions.insert import NameCounter, loose_name_pattern, name_pattern, name_tokens
from builders.taxonomy import name_key

# Letters or digits, joined by an apostrophe, hyphen, slash or dot when another letter or digit follows:
# "bell-shaped", "F-16A/B", "Abyssinian's", "www.example.com" are one token each.
_TOKEN = re.compile(r"[^\W_](?:[^\W_]|['’\-/.](?=[^\W_]))*")
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
_POSSESSIVE = re.compile(r"['’]s?$", re.IGNORECASE)
_PLURAL = ("es", "s")
# Words of a class name that may stand before it without repeating it ("bread and fish and chips").
_FUNCTION_WORDS = {"a", "an", "and", "de", "in", "la", "le", "of", "on", "or", "the", "with"}


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """wordfreq's English words ("large" list, lower case). Loaded once, about half a second."""
    import wordfreq

    return frozenset(wordfreq.get_frequency_dict("en", "large"))


def is_english_word(word: str) -> bool:
    """`word` (any case, possessive aside) is in the dictionary."""
    lower = word.lower().replace("’", "'")
    words = english_words()
    return lower in words or _POSSESSIVE.sub("", lower) in words


def _singular_forms(word: str) -> list[str]:
    word = _POSSESSIVE.sub("", word.lower().replace("’", "'"))
    forms = [word]
    for ending in _PLURAL:
        if word.endswith(ending) and len(word) > len(ending) + 1:
            forms.append(word[: -len(ending)])
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    return forms


def quoted_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _QUOTED.finditer(text)]


@dataclass(frozen=True)
class Finding:
    """One defect in one text: what kind, the offending words, and where they start."""

    kind: str  # "non_word" | "repeated_name" | "other_class"
    words: str
    start: int
    end: int
    drop: tuple[int, int] = (0, 0)  # repeated_name: the span whose removal leaves one copy


class CaptionChecker:
    """The three English checks for one domain: its class names and its generic nouns ("cat",
    "plane": the words category insertion replaces, vocabulary.json `head_nouns`)."""

    def __init__(self, classes: Iterable[str], generic_words: Iterable[str] = ()):
        self.classes = tuple(c for c in dict.fromkeys(classes) if name_tokens(c))
        self.generic = tuple(g.lower() for g in dict.fromkeys(generic_words) if g.strip())
        self.counter = NameCounter(self.classes)
        self._class_words = {t.lower() for c in self.classes for t in re.split(r"[\s_\-/]+", c) if t}
        self._glue_patterns = [loose_name_pattern(c) for c in self.classes] + [
            re.compile(re.escape(g)) for g in self.generic if " " not in g
        ]
        self._names = sorted(set(self.classes) | set(self.generic), key=lambda n: (-len(n), n.lower()))
        self._first = {n: name_tokens(n)[0].lower() for n in self._names}

    # --- words in no dictionary -------------------------------------------------------------

    def _known_part(self, part: str) -> bool:
        if not part:
            return True
        if any(ch.isdigit() for ch in part) or part[0].isupper():
            return True  # a code or a name
        return is_english_word(part) or any(form in self._class_words for form in _singular_forms(part))

    def glued(self, token: str) -> bool:
        """A class name or generic word glued to letters on its left, or to lower-case letters on its
        right ("Sky737-400", "biDH-82", "Westplane", "planeer"); a plural ending is not glue."""
        for pattern in self._glue_patterns:
            for match in pattern.finditer(token):
                start, end = match.span()
                left = start > 0 and token[start - 1].isalpha()
                rest = token[end:]
                # Glue on the right only counts in a word that does not start with the name: a Latin
                # family ("Bromeliaceae") or a model code ("767-300ER") grows a name legitimately.
                right = (start > 0 or token[:1].islower()) and (
                    (bool(re.match(r"[a-z]", rest)) and not re.fullmatch(r"(?:e?s)?(?:['’]s?)?", rest))
                    or (bool(re.match(r"[A-Z]", rest)) and match.group(0)[-1:].islower())
                )
                if left or right:
                    return True
        return False

    def non_words(self, text: str) -> list[Finding]:
        quoted = quoted_spans(text)
        found = []
        for match in _TOKEN.finditer(text):
            start, end = match.span()
            token = match.group(0)
            if any(s <= start < e for s, e in quoted) or "." in token or "@" in token:
                continue
            if is_english_word(token) or any(f in self._class_words for f in _singular_forms(token)):
                continue  # "coneflowers" is the plural of a class name
            parts = re.split(r"[-/]", _POSSESSIVE.sub("", token))
            if self.glued(token) or not all(self._known_part(p) for p in parts):
                found.append(Finding("non_word", token, start, end))
        return found

    # --- names repeated back to back --------------------------------------------------------

    def mentions(self, text: str) -> list[tuple[int, int, str]]:
        """Whole-word mentions of class names and generic words, longest first, never overlapping."""
        taken: list[tuple[int, int, str]] = []
        lower = text.lower()
        for name in (n for n in self._names if self._first[n] in lower):  # cheap prefilter
            for match in _plural_name_pattern(name).finditer(text):
                start, end = match.span()
                if not any(s < end and start < e for s, e, _ in taken):
                    taken.append((start, end, name))
        return sorted(taken)

    def repeated_names(self, text: str) -> list[Finding]:
        """A name right after itself ("lotus lotus", "airplane airplanes", "plane airplane"), or a
        class name right after one of its own words ("terrier scottish terrier", "Boeing Boeing 717")."""
        found = []
        mentions = self.mentions(text)
        for (s1, e1, n1), (s2, e2, n2) in zip(mentions, mentions[1:], strict=False):
            if text[e1:s2].strip() == "" and _same_noun(text[s1:e1], text[s2:e2]):
                # "passion flower flower": the generic word goes; "beagle beagle": the first copy.
                drop = (e1, e2) if n1 in self.classes and n2 not in self.classes else (s1, s2)
                found.append(Finding("repeated_name", text[s1:e2], s1, e2, drop))
        for start, end, name in mentions:
            if name not in self.classes:
                continue
            before = re.search(r"([^\W_][\w'’-]*)\s+$", text[:start])
            own = {t.lower() for t in name_tokens(name)} - _FUNCTION_WORDS
            if before and before.group(1).lower() in own:
                found.append(Finding("repeated_name", text[before.start(1) : end], before.start(1), end,
                                     (before.start(1), start)))
        return sorted(set(found), key=lambda f: f.start)

    # --- a class other than the record's own ------------------------------------------------

    def other_classes(self, text: str, own: str) -> list[str]:
        """Name keys of the classes other than `own` that `text` names as a word of their own."""
        every, inside = self.counter.counts(text)
        own_key = name_key(own)
        return sorted(k for k in every if k != own_key and every[k] > inside[k])

    def problems(self, text: str, own: str | None = None) -> list[Finding]:
        """Every finding of the three checks (other classes only when `own` is given)."""
        found = self.non_words(text) + self.repeated_names(text)
        if own is not None:
            found += [Finding("other_class", key, 0, 0) for key in self.other_classes(text, own)]
        return found


@lru_cache(maxsize=65536)
def _plural_name_pattern(name: str) -> re.Pattern[str]:
    """A whole-word name, plural ending allowed ("yellow irises", "sunflowers")."""
    strict = name_pattern(name).pattern
    return re.compile(strict.replace(r"(?![^\W_])", r"(?:e?s)?(?![^\W_])"), re.IGNORECASE)


def _same_noun(a: str, b: str) -> bool:
    """"plane" and "airplanes", "lotus" and "lotus": one noun written twice (plural aside)."""
    forms_a, forms_b = _singular_forms(a), _singular_forms(b)
    return any(x == y or (len(x) > 2 and y.endswith(x)) or (len(y) > 2 and x.endswith(y))
               for x in forms_a for y in forms_b)


@lru_cache(maxsize=64)
def caption_checker(classes: tuple[str, ...], generic_words: tuple[str, ...] = ()) -> CaptionChecker:
    """One checker per domain (its classes and generic words), built once."""
    return CaptionChecker(classes, generic_words)
