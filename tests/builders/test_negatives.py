"""Multi-view negatives: every guarantee of builders/captions/negatives.py, checked on thousands of
random records over drawn taxonomies full of traps (names inside other names, single-member
meta-categories, captions without attributes or without the category)."""

from __future__ import annotations

import random

import pytest

from builders.captions.attributes import extract_attributes, load_vocabulary
from builders.captions.insert import contains_name, display_name, find_name
from builders.captions.negatives import make_negatives, record_rng, swap_candidates
from builders.taxonomy import Taxonomy

VOCABULARY = load_vocabulary()

# Meta-category -> members. Traps: "cocker spaniel" inside "english cocker spaniel", a meta with a
# single member, names differing only by case/underscores from words in captions, "Russian Blue"
# holding a colour word.
GROUPS = {
    "cat": ["abyssinian", "Russian_Blue", "sphynx", "Egyptian Mau"],
    "dog": ["cocker spaniel", "english_cocker_spaniel", "beagle", "pug", "great_pyrenees"],
    "bird": ["kiwi"],
}


def taxonomy(groups=GROUPS, domain="oxford_pets") -> Taxonomy:
    categories = tuple(c for members in groups.values() for c in members)
    meta = {c: m for m, members in groups.items() for c in members}
    return Taxonomy(domain, categories, meta)


FILLERS = ["a", "the", "with", "on", "sitting", "red", "white", "striped", "small", "grass", "sofa",
           "two", "scattered", "catch", "looking up", "blue", "."]


def random_caption(rng: random.Random, category: str) -> str:
    words = [rng.choice(FILLERS) for _ in range(rng.randrange(0, 9))]
    for _ in range(rng.choice([0, 1, 1, 2])):
        spelled = rng.choice([display_name(category), category, display_name(category).upper(),
                              display_name(category).title()])
        words.insert(rng.randrange(len(words) + 1), spelled)
    return " ".join(words)


def check_guarantees(caption, category, negatives, tax, m):
    texts = [n["text"] for n in negatives]
    assert len(texts) <= m
    assert caption not in texts, "a negative equals the positive"
    assert len({t.lower() for t in texts}) == len(texts), "two negatives are equal"
    meta = tax.meta_category(category)
    same_meta = [c for c in tax.categories if tax.meta_category(c) == meta]
    for negative in negatives:
        assert negative["kind"] in ("category", "attribute")
        if negative["kind"] == "category":
            other = negative["category"]
            assert other != category
            assert not contains_name(negative["text"], category), "true category survives"
            assert contains_name(negative["text"], other)
            if len(same_meta) >= 2:
                assert tax.meta_category(other) == meta, "sibling from another meta-category"
        else:
            assert negative["category"] == category
            assert len(find_name(negative["text"], category)) == len(find_name(caption, category))


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 6])
def test_guarantees_hold_on_random_records(m):
    tax = taxonomy()
    rng = random.Random(m)
    for record in range(600):
        category = rng.choice(tax.categories)
        caption = random_caption(rng, category)
        protected = find_name(caption, category)
        attributes = extract_attributes(caption, VOCABULARY, tax.domain, protected)
        made = make_negatives(caption, category, attributes, tax, VOCABULARY, m, record_rng(0, f"r{record}"))
        check_guarantees(caption, category, made.negatives, tax, m)


def test_replacements_are_whole_word_and_every_spelling_is_replaced():
    tax = taxonomy()
    caption = "A Great Pyrenees on scattered toys; the great_pyrenees looks up at another GREAT PYRENEES."
    made = make_negatives(caption, "great_pyrenees", [], tax, VOCABULARY, 2, record_rng(0, "x"))
    assert [n["kind"] for n in made.negatives] == ["category", "category"]
    for negative in made.negatives:
        assert "scattered" in negative["text"]
        assert not contains_name(negative["text"], "great pyrenees")
        assert len(find_name(negative["text"], negative["category"])) == 3


def test_a_sibling_containing_the_true_name_is_never_swapped_in():
    tax = taxonomy()
    assert "english_cocker_spaniel" not in swap_candidates("cocker spaniel", tax)
    assert "cocker spaniel" in swap_candidates("english_cocker_spaniel", tax)


def test_single_member_meta_category_swaps_with_other_categories():
    tax = taxonomy()
    assert swap_candidates("kiwi", tax) == [c for c in tax.categories if c != "kiwi"]


def test_half_category_half_attribute_when_both_views_exist():
    tax = taxonomy()
    caption = "A small white beagle sitting on green grass"
    attributes = extract_attributes(caption, VOCABULARY, tax.domain, find_name(caption, "beagle"))
    made = make_negatives(caption, "beagle", attributes, tax, VOCABULARY, 4, record_rng(0, "b"))
    assert [n["kind"] for n in made.negatives] == ["category", "category", "attribute", "attribute"]
    assert not made.notes
    # Attribute negatives change different spans when the caption has several.
    changed = [
        next(a["value"] for a in attributes if a["value"] not in n["text"][a["char_start"] :])
        for n in made.negatives[2:]
    ]
    assert len(set(changed)) == 2


def test_attribute_view_fills_in_for_missing_siblings_and_says_so():
    tax = taxonomy({"cat": ["sphynx", "bengal"], "dog": ["pug"]})
    caption = "A small white sphynx sitting on green grass"
    attributes = extract_attributes(caption, VOCABULARY, tax.domain, find_name(caption, "sphynx"))
    made = make_negatives(caption, "sphynx", attributes, tax, VOCABULARY, 4, record_rng(0, "s"))
    assert [n["kind"] for n in made.negatives] == ["category", "attribute", "attribute", "attribute"]
    assert made.notes["category_view_short"] == 1 and "short_negative_records" not in made.notes


def test_category_view_fills_in_for_missing_attributes_and_says_so():
    tax = taxonomy()
    made = make_negatives("zzz beagle qqq", "beagle", [], tax, VOCABULARY, 4, record_rng(0, "q"))
    assert [n["kind"] for n in made.negatives] == ["category"] * 4
    assert made.notes["attribute_view_short"] == 1


def test_nothing_to_swap_gives_fewer_negatives_and_says_so():
    tax = taxonomy()
    made = make_negatives("zzz qqq", "beagle", [], tax, VOCABULARY, 4, record_rng(0, "q"))
    assert made.negatives == []
    assert made.notes["short_negative_records"] == 1


def test_synonyms_and_doubled_words_are_not_swapped_in():
    tax = taxonomy()
    caption = "A grey beagle against a sofa background"
    attributes = extract_attributes(caption, VOCABULARY, tax.domain, find_name(caption, "beagle"))
    for seed in range(40):
        made = make_negatives(caption, "beagle", attributes, tax, VOCABULARY, 6, record_rng(seed, "g"))
        for negative in made.negatives:
            assert "gray beagle" not in negative["text"].lower()
            assert "background background" not in negative["text"].lower()


def test_attribute_swap_never_names_another_category():
    tax = taxonomy({"rice": ["fried rice", "risotto"], "meat": ["steak"]}, domain="food-101")
    caption = "A plate of grilled rice next to a steak"
    attributes = extract_attributes(caption, VOCABULARY, "food-101", find_name(caption, "risotto"))
    assert any(a["value"] == "grilled" for a in attributes)
    for seed in range(60):
        made = make_negatives(caption, "risotto", attributes, tax, VOCABULARY, 4, record_rng(seed, "r"))
        assert all(not contains_name(n["text"], "fried rice") for n in made.negatives)


def test_deterministic_from_seed_and_record():
    tax = taxonomy()
    caption = "A small white beagle sitting on green grass"
    attributes = extract_attributes(caption, VOCABULARY, tax.domain, find_name(caption, "beagle"))

    def draw(seed, key):
        return make_negatives(caption, "beagle", attributes, tax, VOCABULARY, 4, record_rng(seed, key)).negatives

    assert draw(0, "a") == draw(0, "a")
    assert len({str(draw(s, k)) for s in range(5) for k in "abcde"}) > 5


def test_kept_negatives_count_toward_the_category_view():
    tax = taxonomy()
    caption = "A small white beagle sitting on green grass"
    attributes = extract_attributes(caption, VOCABULARY, tax.domain, find_name(caption, "beagle"))
    kept = [{"text": "A small white pug sitting on green grass", "kind": "category", "category": "pug"}]
    made = make_negatives(caption, "beagle", attributes, tax, VOCABULARY, 4, record_rng(0, "k"), keep=kept)
    assert made.negatives[0] == kept[0]
    assert [n["kind"] for n in made.negatives] == ["category", "category", "attribute", "attribute"]
    assert sum(n["category"] == "pug" for n in made.negatives) == 1


# --- attribute swaps stay in their slot and grammatical role -------------------------------------

# Each caption tempts a swap that crosses slots or roles; the forbidden texts are what the released
# generator and a type-only swap wrote ("flying in the soil", "the yellow center is jumping",
# "the flower's bell-shaped are fully open", "two flower").
TEMPTING = [
    ("fgvc_aircraft", "A white 737-300 is flying in the sky.", "737-300",
     {"flying": {"taking off", "landing", "parked", "taxiing"},
      "sky": {"runway", "tarmac", "airport", "hangar", "cloudy sky"}}),  # no soil; "clouds" is plural
    ("oxford_flowers", "This is a rose. The flower's petals are fully open and the yellow center is blooming.", "rose",
     {"blooming": {"wilting", "drooping", "hanging"},  # never an animal's pose
      "petals": {"stamens", "leaves"},  # plural nouns only, never "bell-shaped"
      "center": {"petal", "stamen", "stem", "pistil"}}),
    ("oxford_flowers", "This is a rose. One flower with a bell-shaped cup and a green stem.", "rose",
     {"one": set(),  # "a single" means the same and "two" would need "flowers"
      "bell-shaped": {"star-shaped", "cup-shaped", "trumpet-shaped"},
      "stem": {"petal", "stamen", "center", "pistil"}}),
]


def _swapped(caption: str, negative: str) -> tuple[str, str]:
    """(old words, new words) of a one-span swap: the differing region widened to whole words, an
    article in front ("a green" -> "an orange") left out."""
    start = 0
    while start < min(len(caption), len(negative)) and caption[start] == negative[start]:
        start += 1
    end = 0
    while end < min(len(caption), len(negative)) - start and caption[-1 - end] == negative[-1 - end]:
        end += 1
    def inword(ch):
        return ch.isalnum() or ch == "-"
    while start > 0 and inword(caption[start - 1]):
        start -= 1
    old, new = caption[start : len(caption) - end], negative[start : len(negative) - end]
    grow = 0
    while len(caption) - end + grow < len(caption) and inword(caption[len(caption) - end + grow]):
        grow += 1
    old, new = old + caption[len(caption) - end : len(caption) - end + grow], new + caption[len(caption) - end : len(caption) - end + grow]
    def strip(text):
        return " ".join(w for i, w in enumerate(text.split()) if not (i == 0 and w.lower() in ("a", "an")))
    return strip(old).lower(), strip(new).lower()


@pytest.mark.parametrize(("domain", "caption", "category", "allowed"), TEMPTING)
def test_attribute_swaps_stay_in_slot_and_role(domain, caption, category, allowed):
    tax = Taxonomy(domain, (category, "other one"), {category: "x", "other one": "x"})
    spans = extract_attributes(caption, VOCABULARY, domain, find_name(caption, category))
    assert {s["value"].lower() for s in spans} >= set(allowed)  # the caption holds the tempting spans
    values = {s["value"].lower() for s in spans}
    swaps = 0
    for seed in range(30):
        made = make_negatives(caption, category, spans, tax, VOCABULARY, 8, record_rng(seed, caption))
        for negative in (n["text"] for n in made.negatives if n["kind"] == "attribute"):
            old, new = _swapped(caption, negative)
            assert old in values, (old, negative)
            if old in allowed:
                swaps += 1
                assert new in allowed[old], (old, new, negative)
    assert swaps > 0
