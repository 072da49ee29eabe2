"""Attribute spans: the one-regex extractor against a leftmost-longest reference, the shipped
vocabulary, user extension files and their errors."""

from __future__ import annotations

import json
import random
import re

import pytest

from builders.captions.attributes import DEFAULT_VOCABULARY, Vocabulary, extract_attributes, load_vocabulary
from fdrd.errors import FdrdError
from fdrd.schema import ATTRIBUTE_TYPES

SMALL = Vocabulary(
    attributes={
        "colour": ("red", "dark red", "dark", "blue"),
        "pattern": ("red fox", "striped", "dark"),  # "dark" is a colour: the first type listing it wins
        "pose": ("lying", "lying down", "down"),
        "background": ("grass", "green grass", "sky"),
        "count": ("two", "a pair of"),
    }
)


def reference_extract(caption: str, vocabulary: Vocabulary, protected=()) -> list[dict]:
    """Every whole-word occurrence of every entry, then leftmost-longest without overlaps."""
    entry_type: dict[str, str] = {}
    for kind in ATTRIBUTE_TYPES:
        for entry in vocabulary.attributes.get(kind, ()):
            entry_type.setdefault(entry.lower(), kind)
    candidates = []
    for entry, kind in entry_type.items():
        words = entry.split()
        for start in range(len(caption)):
            if start > 0 and caption[start - 1].isalnum():
                continue
            pos, ok = start, True
            for k, word in enumerate(words):
                if caption[pos : pos + len(word)].lower() != word:
                    ok = False
                    break
                pos += len(word)
                if k < len(words) - 1:
                    gap = pos
                    while gap < len(caption) and caption[gap].isspace():
                        gap += 1
                    if gap == pos:
                        ok = False
                        break
                    pos = gap
            if ok and not (pos < len(caption) and caption[pos].isalnum()):
                if not any(s < pos and start < e for s, e in protected):
                    candidates.append((start, pos, kind))
    chosen, end = [], -1
    for start, stop, kind in sorted(candidates, key=lambda c: (c[0], -(c[1] - c[0]))):
        if start >= end:
            chosen.append({"name": kind, "value": caption[start:stop], "char_start": start, "char_end": stop})
            end = stop
    return chosen


TOKENS = ["red", "Red", "dark", "DARK", "fox", "striped", "lying", "down", "green", "grass", "sky", "two",
          "a", "pair", "of", "blue", "bluest", "reddish", "skyline", "cat"]
SEPARATORS = [" ", "  ", ", ", ". ", "-", "_", "\n"]


def test_extract_matches_reference_on_random_captions():
    rng = random.Random(7)
    for _ in range(2000):
        caption = "".join(rng.choice(TOKENS) + rng.choice(SEPARATORS) for _ in range(rng.randrange(1, 14)))
        protected = []
        if rng.random() < 0.3:
            start = rng.randrange(len(caption))
            protected = [(start, min(len(caption), start + rng.randrange(1, 8)))]
        spans = extract_attributes(caption, SMALL, protected=protected)
        assert spans == reference_extract(caption, SMALL, protected), caption
        for span in spans:
            assert caption[span["char_start"] : span["char_end"]] == span["value"]


def test_longest_entry_wins_and_spans_never_overlap():
    caption = "A dark red fox lying down on green grass under a dark sky"
    spans = [(s["name"], s["value"]) for s in extract_attributes(caption, SMALL)]
    assert spans == [("colour", "dark red"), ("pose", "lying down"), ("background", "green grass"),
                     ("colour", "dark"), ("background", "sky")]


def test_whole_words_only_and_case_insensitive():
    spans = extract_attributes("Reddish skyline, RED Sky", SMALL)
    assert [(s["value"], s["char_start"]) for s in spans] == [("RED", 17), ("Sky", 21)]


def test_protected_category_name_is_not_an_attribute():
    vocabulary = load_vocabulary()
    caption = "A Russian Blue with blue eyes"
    spans = extract_attributes(caption, vocabulary, "oxford_pets", protected=[(2, 14)])
    assert [(s["name"], s["value"]) for s in spans] == [("colour", "blue"), ("shape", "eyes")]


def test_shipped_vocabulary_is_valid_and_domain_entries_apply_only_to_their_domain():
    vocabulary = load_vocabulary()
    assert set(vocabulary.attributes) <= set(ATTRIBUTE_TYPES)
    raw = json.loads(DEFAULT_VOCABULARY.read_text())
    assert "_about" in raw and set(raw["attributes"]) == {"colour", "pattern", "size", "shape", "pose", "count",
                                                           "background"}
    caption = "The airplane is taxiing past a grilled dish"
    pets = [s["value"] for s in extract_attributes(caption, vocabulary, "oxford_pets")]
    planes = [s["value"] for s in extract_attributes(caption, vocabulary, "fgvc_aircraft")]
    food = [s["value"] for s in extract_attributes(caption, vocabulary, "food-101")]
    assert "taxiing" in planes and "taxiing" not in pets
    assert "grilled" in food and "grilled" not in planes
    assert vocabulary.are_synonyms("Grey", "gray") and not vocabulary.are_synonyms("grey", "red")
    assert "cat" in vocabulary.nouns_for("oxford_pets") and "object" in vocabulary.nouns_for("oxford_pets")


def test_user_vocabulary_file_extends_the_shipped_one(tmp_path):
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps({
        "attributes": {"colour": ["periwinkle blue"], "pattern": ["harlequin"]},
        "domain_attributes": {"oxford_pets": {"shape": ["docked tail"]}},
        "synonyms": [["periwinkle blue", "blue"]],
        "head_nouns": {"oxford_pets": ["moggy"]},
    }))
    vocabulary = load_vocabulary(extra)
    caption = "A harlequin moggy with a periwinkle blue collar and a docked tail"
    spans = [(s["name"], s["value"]) for s in extract_attributes(caption, vocabulary, "oxford_pets")]
    assert ("colour", "periwinkle blue") in spans and ("pattern", "harlequin") in spans
    assert ("shape", "docked tail") in spans
    assert "moggy" in vocabulary.nouns_for("oxford_pets")
    assert vocabulary.are_synonyms("blue", "periwinkle blue")
    # The shipped entries are still there.
    assert "striped" in vocabulary.attributes["pattern"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"attributes": {"flavour": ["sweet"]}}), "unknown attribute type"),
        (json.dumps({"attributes": {"colour": "red"}}), "list of non-empty strings"),
        (json.dumps({"attributes": {"colour": ["red", ""]}}), "list of non-empty strings"),
        (json.dumps({"colours": {}}), "unknown key"),
        (json.dumps({"head_nouns": ["cat"]}), "head_nouns must be an object"),
        (json.dumps({"domain_attributes": ["oxford_pets"]}), "domain_attributes must be an object"),
    ],
)
def test_bad_vocabulary_files_are_named_errors(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(FdrdError, match=re.escape(str(path))) as error:
        load_vocabulary(path)
    assert message in str(error.value)


def test_missing_vocabulary_file_is_a_named_error(tmp_path):
    with pytest.raises(FdrdError, match="vocabulary file not found"):
        load_vocabulary(tmp_path / "absent.json")
