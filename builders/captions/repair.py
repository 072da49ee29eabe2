"""Making an imported or generated caption read as English before it becomes a positive.

The released FDRD positives were made by plain substring replacement of a generic word by the class
(shared/docs/fdrd-data.md): "cat" -> the breed for pets (for dog breeds too), "plane" or "jet" ->
"<variant> airplane" for aircraft. Where that landed inside a word ("sgreat pyreneestered",
"biDH-82 airplane", "West737-400 airplane"), `restore_substituted` puts back the one generic word
that makes a dictionary word ("scattered", "biplane", "Westjet"); when none does, the damaged token
is dropped. `clean_caption` then, for every free-text captioner:

- compounds: a class standing where "cat" was in "cat tree" becomes the generic word again;
- repeats: "beagle beagle", "terrier scottish terrier", "Boeing Boeing 717" lose the first copy;
- another class named: dropped when it sits in the same noun phrase as the true class ("A beagle
  basset hound", "Airbus A320-214 757-300 airplane"), rewritten to the true class when it names the
  caption's object before the true class does ("A brown beagle stands ..." for a basset hound,
  "Airbus A380-800" -> "Airbus A340-500", its maker fixed), else the record is refused;
- words in no dictionary (`english.CaptionChecker`): "theairplane" is split, a word after "the
  word"/"the logo" is quoted (it was read off the image), any other is dropped;
- the class is inserted when missing (`insert.insert_category`), articles fixed;

and a caption that still fails a check is refused with the reason, never kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from builders.captions.attributes import Vocabulary, load_vocabulary
from builders.captions.english import CaptionChecker, caption_checker, is_english_word, quoted_spans
from builders.captions.insert import (
    display_name,
    find_name,
    fix_article,
    fix_articles_before,
    insert_category,
    insertion_kind,
    loose_name_pattern,
    name_pattern,
    name_tokens,
)
from builders.taxonomy import Taxonomy, name_key

# The generic words that the released generator replaced by the class name, and what it wrote in
# their place ("{}" is the class): shared/docs/fdrd-data.md.
RELEASED_SUBSTITUTIONS = {
    "oxford_pets": (("cat", "dog"), "{}"),
    "fgvc_aircraft": (("plane", "jet"), "{} airplane"),
}
# Function words a glued word may start with ("theairplane" is "the airplane").
_LEADING_FUNCTION_WORDS = ("the", "a", "an", "of", "in", "on", "to", "with", "and", "near")
# A word after one of these is text read off the image: it is quoted, not dropped.
_TEXT_NOUNS = ("word", "words", "name", "logo", "text", "letters", "lettering", "label", "sign", "title",
               "inscription", "writing", "brand", "website", "reads", "says")
# Words that end a noun phrase: another class followed by the true one across any of these is not
# one phrase ("an A320 next to the 737-700").
_PHRASE_BREAKERS = {"is", "are", "was", "were", "has", "have", "and", "or", "with", "of", "on", "in", "at",
                    "by", "to", "from", "near", "next", "behind", "while", "which", "that", "the", "a", "an",
                    "its", "their", "another", "other", "than", "as", "like", "for"}
_MAKER_SUFFIXES = re.compile(r"\s+(Aerospace|Aircraft Company|Aviation|Corporation|Aircraft)$")


def domain_checker(domain: str, classes: tuple[str, ...], vocabulary: Vocabulary | None = None) -> CaptionChecker:
    """The English checks of a domain, shared by the caption stage, the negatives and the audit: its
    class names and its generic nouns (vocabulary.json `head_nouns`, and the words the released files
    substituted)."""
    vocabulary = vocabulary or load_vocabulary()
    substituted = RELEASED_SUBSTITUTIONS.get(domain, ((), ""))[0]
    return caption_checker(tuple(classes), tuple(dict.fromkeys(vocabulary.nouns_for(domain) + substituted)))


class Unrepairable(Exception):
    """A caption that cannot be made to read as English; the message is the rejection reason."""


@dataclass
class Repair:
    caption: str
    notes: Counter[str] = field(default_factory=Counter)


def _tidy(text: str) -> str:
    """Spaces after a dropped word: no double spaces, none before punctuation, no empty parentheses."""
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text[:1].upper() + text[1:] if text else text


def _drop(text: str, start: int, end: int) -> str:
    """`text` without text[start:end]; the article before what follows is fixed."""
    out = text[:start].rstrip() + " " + text[end:].lstrip()
    position = len(text[:start].rstrip()) + 1
    return fix_article(out, position) if position < len(out) else out


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return before == "" or before.endswith((".", "!", "?"))


# --- the released substitutions --------------------------------------------------------------


def _best_word(candidates: list[str]) -> str | None:
    import wordfreq

    known = [c for c in candidates if is_english_word(c)]
    return max(known, key=lambda c: (wordfreq.word_frequency(c.lower(), "en"), -candidates.index(c)), default=None)


def restore_substituted(caption: str, category: str, domain: str, notes: Counter[str]) -> str:
    """Undo the released generator's substitutions that landed inside a word (see the module doc)."""
    if domain not in RELEASED_SUBSTITUTIONS:
        return caption
    words, form = RELEASED_SUBSTITUTIONS[domain]
    inserted = form.format(display_name(category))
    pattern = re.compile(r"(?P<pre>[^\W_]*)(?P<form>" + loose_name_pattern(inserted).pattern + r")(?P<suf>[^\W_]*)",
                         re.IGNORECASE)
    compounds: list[tuple[str, int]] = []  # restored words that name the object ("biplane") and where
    out = caption
    for match in reversed(list(pattern.finditer(caption))):
        pre, suf = match.group("pre"), match.group("suf")
        if not pre and suf.lower() in ("", "s", "es"):
            continue  # a whole word ("Bengals", "707-320 airplanes"): not glued
        start, end = match.span()
        restored = _best_word([pre + w + suf for w in words])
        if restored is None:
            out = _drop(out, start, end)
            if any(not out[s + 1 : e - 1].strip() for s, e in quoted_spans(out)):
                reason = f"in-word substitution {match.group(0)!r} was all of a quoted text; cannot be undone"
                raise Unrepairable(reason)
            notes["in_word_fragments_dropped"] += 1
            continue
        if not pre and _sentence_start(out, start):
            restored = restored[:1].upper() + restored[1:]
        out = out[:start] + restored + out[end:]
        notes["in_word_classes_repaired"] += 1
        if any(re.fullmatch(rf"\w*{w}(?:e?s)?", restored, re.IGNORECASE) for w in words):
            compounds.append((restored, start))
    tail = form.replace("{}", "").strip()
    if tail:
        # "a large airplaneliner": the written generic word glued on its own, the class elsewhere.
        bare = re.compile(rf"(?P<pre>[^\W_]*){re.escape(tail)}(?P<suf>[^\W_]*)", re.IGNORECASE)
        for match in reversed(list(bare.finditer(out))):
            pre, suf = match.group("pre"), match.group("suf")
            if (not pre and suf.lower() in ("", "s", "es")) or is_english_word(match.group(0)):
                continue
            restored = _best_word([pre + w + suf for w in words])
            if restored is not None:
                out = out[: match.start()] + restored + out[match.end() :]
                notes["in_word_classes_repaired"] += 1
    if compounds and not find_name(out, category):
        # "A yellow biDH-82 airplane" was "a yellow biplane": the class goes before the restored noun.
        restored, start = compounds[-1]
        shown = display_name(category)
        out = fix_article(out[:start] + f"{shown} " + out[start:], start)
        notes["class_put_before_restored_word"] += 1
    return out


def restore_compounds(caption: str, category: str, domain: str, meta_category: str, heads: tuple[str, ...],
                      notes: Counter[str]) -> str:
    """"a Bengal tree" was "a cat tree": a class right before a compound head becomes the generic word."""
    if domain not in RELEASED_SUBSTITUTIONS or not heads:
        return caption
    words = RELEASED_SUBSTITUTIONS[domain][0]
    generic = meta_category.lower() if meta_category.lower() in words else words[0]
    head = "|".join(re.escape(h) for h in sorted(heads, key=len, reverse=True))
    pattern = re.compile(name_pattern(category).pattern + rf"(?=\s+(?:{head})(?![^\W_]))", re.IGNORECASE)
    out = caption
    for match in reversed(list(pattern.finditer(caption))):
        start, end = match.span()
        out = fix_article(out[:start] + generic + out[end:], start)
        notes["compounds_restored"] += 1
    return out


# --- repeats, other classes, non-words ------------------------------------------------------


def collapse_repeats(caption: str, checker: CaptionChecker, notes: Counter[str]) -> str:
    """"beagle beagle" -> "beagle", "terrier scottish terrier" -> "scottish terrier"."""
    for _ in range(8):
        found = checker.repeated_names(caption)
        if not found:
            return caption
        start, end = found[-1].drop
        caption = _tidy(fix_article(caption[:start] + caption[end:].lstrip(), start))
        notes["repeats_collapsed"] += 1
    return caption


def _maker(taxonomy: Taxonomy, category: str) -> str:
    """The maker of a class as captions write it ("Airbus", "McDonnell Douglas"), or ""."""
    for level in ("manufacturer", "make"):
        value = taxonomy.levels.get(level, {}).get(category, "")
        if value:
            return _MAKER_SUFFIXES.sub("", value)
    return ""


def _plural(name: str) -> str:
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    if re.search(r"(s|sh|ch|x|z)$", name):
        return name + "es"
    return name + "s"


def _same_phrase(between: str) -> bool:
    words = between.split()
    return len(words) <= 4 and not re.search(r"[.,;:!?()]", between) and not any(
        w.lower() in _PHRASE_BREAKERS for w in words
    )


def _mention_span(text: str, start: int, end: int, name: str) -> tuple[int, int, bool]:
    """A class mention (plural ending included) widened to its designation suffix ("A320" of
    "A320-214"); whether it was plural."""
    plural = name_pattern(name).fullmatch(text[start:end]) is None
    compound = re.search(r"[^\W_]+-$", text[:start])  # "pinkish-orange dahlia": the whole compound goes
    if compound:
        start = compound.start()
    suffix = re.match(r"(?:[-/][^\W_]+)+", text[end:])
    if suffix:
        end += suffix.end()
    return start, end, plural


@lru_cache(maxsize=1)
def _colour_words() -> frozenset[str]:
    """The built-in colour entries; read once (reading vocabulary.json per caption was half of clean_caption)."""
    return frozenset(v.lower() for v in load_vocabulary().attributes.get("colour", ()))


def replace_other_classes(caption: str, category: str, taxonomy: Taxonomy, checker: CaptionChecker,
                          notes: Counter[str]) -> str:
    """Another class named in the caption: dropped next to the true class, rewritten where it names
    the object before the true class does; Unrepairable otherwise (see the module doc)."""
    shown = display_name(category)
    own_maker = _maker(taxonomy, category)
    by_key = {name_key(c): c for c in taxonomy.categories}
    colours = _colour_words()
    for _ in range(32):
        others = [by_key[k] for k in checker.other_classes(caption, category) if k in by_key]
        if not others:
            return caption
        other = others[0]
        own_spans = find_name(caption, category)
        # A leading "This is a X." names the class for the whole caption; the object is described after it.
        lead = re.match(rf"This is an? {re.escape(shown)}\.\s*", caption, re.IGNORECASE)
        described_from = lead.end() if lead else 0
        mentions = [(s, e) for s, e, name in checker.mentions(caption) if name_key(name) == name_key(other)]
        if not mentions:
            return caption
        start, end, _ = _mention_span(caption, *mentions[0], other)
        maker = _maker(taxonomy, other)
        maker_before = re.search(rf"(?<![^\W_]){re.escape(maker)}\s+$", caption[:start], re.IGNORECASE) \
            if maker else None
        after_own = [s for s, _ in own_spans if s >= end]
        if after_own and _same_phrase(caption[end : after_own[0]]):
            # "A beagle basset hound", "Airbus A320-214 757-300 airplane": the other name is a stray modifier.
            cut_from = maker_before.start() if maker_before and maker.lower() != own_maker.lower() else start
            caption = _tidy(_drop(caption, cut_from, end))
            notes["other_class_dropped"] += 1
            continue
        first_own = min((s for s, _ in own_spans if s >= described_from), default=len(caption))
        if start >= described_from and start < first_own:
            # It names the object: every mention of it ("a pink rose ... The rose is") becomes the class.
            for mention in reversed(mentions):
                caption = _rewrite_mention(caption, *_mention_span(caption, *mention, other), other, category,
                                           taxonomy, colours)
                notes["other_class_rewritten"] += 1
            continue
        raise Unrepairable(f"names another class ({display_name(other)}) besides its own; cannot tell which is shown")
    return caption


def _rewrite_mention(caption: str, start: int, end: int, plural: bool, other: str, category: str,
                     taxonomy: Taxonomy, colours: frozenset[str]) -> str:
    """One mention of `other` written as `category`: plural kept, a leading colour kept when the class
    has none ("yellow iris" -> "yellow sword lily"), the maker before it fixed ("Airbus" -> "Boeing")."""
    shown = display_name(category)
    first = name_tokens(other)[0].lower()
    own_first = set(re.split(r"-", name_tokens(category)[0].lower()))
    keep = first if first in colours and not own_first & colours else ""
    new = f"{keep} {shown}" if keep else shown
    new = _plural(new) if plural else new
    maker, own_maker = _maker(taxonomy, other), _maker(taxonomy, category)
    before = re.search(rf"(?<![^\W_]){re.escape(maker)}\s+$", caption[:start], re.IGNORECASE) if maker else None
    if before and maker.lower() != own_maker.lower():
        start = before.start()
        if own_maker and not shown.lower().startswith(own_maker.lower()):
            new = f"{own_maker} {new}"
    if caption[start:start + 1].isupper() and _sentence_start(caption, start):
        new = new[:1].upper() + new[1:]
    return _tidy(fix_article(caption[:start] + new + caption[end:], start))


def fix_non_words(caption: str, checker: CaptionChecker, notes: Counter[str]) -> str:
    """Split ("theairplane"), quote (after "the word") or drop each word in no dictionary."""
    for finding in reversed(checker.non_words(caption)):
        token = finding.words
        lower = token.lower()
        head = next((w for w in _LEADING_FUNCTION_WORDS if lower.startswith(w) and len(lower) - len(w) >= 4
                     and is_english_word(lower[len(w) :])), None)
        if head is not None:
            caption = caption[: finding.start] + token[: len(head)] + " " + token[len(head) :] + caption[finding.end :]
            notes["non_words_split"] += 1
            continue
        if checker.glued(token):
            raise Unrepairable(f"{token!r} has a class name or generic word glued inside; cannot be restored")
        before = caption[: finding.start].split()[-2:]
        if any(w.lower().strip(",:") in _TEXT_NOUNS for w in before):
            caption = caption[: finding.start] + f'"{token}"' + caption[finding.end :]
            notes["non_words_quoted"] += 1
            continue
        caption = _tidy(_drop(caption, finding.start, finding.end))
        notes["non_words_dropped"] += 1
    return caption


def clean_caption(caption: str, category: str, taxonomy: Taxonomy, checker: CaptionChecker,
                  head_nouns: tuple[str, ...], compound_heads: tuple[str, ...] = (),
                  released: bool = False) -> Repair:
    """The caption made to read as English, naming its class (see the module doc); Unrepairable
    with the reason when it cannot be. `released`: undo the released substitutions first."""
    notes: Counter[str] = Counter()
    text = " ".join(caption.split())
    text = re.sub(r"(?<=[a-z]{2})(?<![wW]{3})\.(?=[A-Z])", ". ", text)  # "This is a lotus.The image" lost its space
    # The released flowers prefix writes the class as its file name does ("an orange_dahlia").
    for start, end in reversed(find_name(text, category)):
        text = text[:start] + text[start:end].replace("_", " ") + text[end:]
    if released:
        text = restore_substituted(text, category, taxonomy.domain, notes)
        text = restore_compounds(text, category, taxonomy.domain, taxonomy.meta_category(category),
                                 compound_heads, notes)
    text = collapse_repeats(text, checker, notes)
    text = replace_other_classes(text, category, taxonomy, checker, notes)
    text = fix_non_words(text, checker, notes)
    text = collapse_repeats(text, checker, notes)
    if not text:
        raise Unrepairable("nothing is left of the caption after repair")
    notes[f"category_{insertion_kind(text, category, head_nouns, compound_heads)}"] += 1
    text = fix_articles_before(insert_category(text, category, head_nouns, compound_heads), category)
    problems = checker.problems(text, own=category)
    if problems:
        found = problems[0]
        raise Unrepairable(f"still {found.kind.replace('_', ' ')} {found.words!r} after repair")
    return Repair(text, notes)
