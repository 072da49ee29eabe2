"""Imported and generated captions are made to read as English: every defect of the released text
(shared/docs/fdrd-data.md) is either repaired to the expected sentence or refused with its reason,
and what is imported audits to zero on every count, the English ones included."""

from __future__ import annotations

import json

import pytest

from builders.audit import AUDIT_KEYS, AuditInput, AuditRecord, audit_records
from builders.captions.attributes import load_vocabulary
from builders.captions.english import CaptionChecker
from builders.captions.repair import Unrepairable, clean_caption, domain_checker
from builders.captions.stage import CaptionOptions, annotate
from builders.sources.base import SourceItem
from builders.taxonomy import build_taxonomy, name_key

VOCABULARY = load_vocabulary()
PETS = build_taxonomy("oxford_pets", ["Abyssinian", "Bengal", "Great Pyrenees", "Scottish Terrier", "Basset Hound",
                                      "Beagle", "Shiba Inu", "Saint Bernard", "Maine Coon", "Siamese", "Birman"])
AIRCRAFT = build_taxonomy("fgvc_aircraft", ["707-320", "737-200", "737-400", "767-300", "A320", "A340-500",
                                            "A380", "DH-82", "Boeing 717", "737-800", "Il-76"])
FLOWERS = build_taxonomy("oxford_flowers", ["lotus", "water lily", "gazania", "sunflower", "sword lily",
                                            "yellow iris", "passion flower", "rose", "pink primrose"])


def clean(text: str, category: str, taxonomy) -> str:
    checker = domain_checker(taxonomy.domain, taxonomy.categories, VOCABULARY)
    return clean_caption(text, category, taxonomy, checker, VOCABULARY.nouns_for(taxonomy.domain),
                         VOCABULARY.compounds_for(taxonomy.domain), released=True).caption


@pytest.mark.parametrize(
    ("taxonomy", "category", "released", "expected"),
    [
        # "cat" was replaced by the breed inside words, for dog breeds too: "cat" goes back.
        (PETS, "Great Pyrenees", "A white great pyrenees near some sgreat pyreneestered toys.",
         "A white great pyrenees near some scattered toys."),
        (PETS, "Shiba Inu", "A shiba inu on a rock, indishiba inuing sunset.", "A shiba inu on a rock, indicating sunset."),
        (PETS, "Saint Bernard", "A saint bernard jumps to saint bernardch a ball.", "A saint bernard jumps to catch a ball."),
        # A compound: the breed stands where "cat" modified "tree".
        (PETS, "Bengal", "A Bengal is perched on a Bengal tree.", "A Bengal is perched on a cat tree."),
        # "terrier dog" became "terrier scottish terrier": the stray copy goes.
        (PETS, "Scottish Terrier", "A black terrier scottish terrier sits.", "A black scottish terrier sits."),
        (PETS, "Maine Coon", "A fluffy Maine Coon Maine Coon sits.", "A fluffy Maine Coon sits."),
        # Another class named: next to the true one it goes, as the object it becomes the true one.
        (PETS, "Basset Hound", "A beagle basset hound sits in the grass.", "A basset hound sits in the grass."),
        (PETS, "Basset Hound", "A brown beagle stands on a field; the beagle looks up.",
         "A brown Basset Hound stands on a field; the Basset Hound looks up."),
        (PETS, "Birman", "A Siamese Birman with blue eyes.", "A Birman with blue eyes."),
        # Aircraft: "plane"/"jet" became "<variant> airplane", inside words too.
        (AIRCRAFT, "707-320", "An Air Zimbabwe 707-320 airplane with other 707-320 air707-320 airplanes.",
         "An Air Zimbabwe 707-320 airplane with other 707-320 airplanes."),
        (AIRCRAFT, "737-400", 'A 737-400 airplane with the word "West737-400 airplane" on its tail.',
         'A 737-400 airplane with the word "Westjet" on its tail.'),
        (AIRCRAFT, "DH-82", "A yellow biDH-82 airplane on a field.", "A yellow DH-82 biplane on a field."),
        (AIRCRAFT, "737-400", "A blue Sky737-400 airplane 737-400 airplane is flying.",
         "A blue 737-400 airplane is flying."),  # "Skyplane" and "Skyjet" are no words: the fragment goes
        # A correct caption is left alone: "767-300ER" was written by the VLM, not substituted.
        (AIRCRAFT, "767-300", "A TACA 767-300 airplane with the tail number 767-300ER is flying.",
         "A TACA 767-300 airplane with the tail number 767-300ER is flying."),
        (AIRCRAFT, "A340-500", "An Emirates Airbus A380-800 is flying.", "An Emirates Airbus A340-500 is flying."),
        (AIRCRAFT, "737-200", "A Shaheen Airbus A320-214 is on the runway.", "A Shaheen Boeing 737-200 is on the runway."),
        (AIRCRAFT, "Boeing 717", "A Dragon Air Boeing 737-800 is flying.", "A Dragon Air Boeing 717 is flying."),
        (AIRCRAFT, "A320", "A large airplaneliner near theairplane.", "A large A320 near the airplane."),
        # Flowers: the prefix keeps the class; a repeated name and a name glued to the period are fixed.
        (FLOWERS, "lotus", "This is a lotus.A pink lotus lotus flower.", "This is a lotus. A pink lotus flower."),
        (FLOWERS, "passion flower", "This is a passion flower. A pink passion flower flower.",
         "This is a passion flower. A pink passion flower."),
        (FLOWERS, "gazania", "This is a gazania. Two sunflowers in bloom; the sunflowers are orange.",
         "This is a gazania. Two gazanias in bloom; the gazanias are orange."),
        (FLOWERS, "sword lily", "This is a sword lily. Three purple and yellow irises.",
         "This is a sword lily. Three purple and yellow sword lilies."),
        # A word in no dictionary is dropped, or quoted where it was read off the image.
        (FLOWERS, "rose", "This is a rose. The petals are curled inwar", "This is a rose. The petals are curled"),
        (AIRCRAFT, "Il-76", "An Il-76 airplane with the word interliner on its side.",
         'An Il-76 airplane with the word "interliner" on its side.'),
    ],
)
def test_released_defects_are_repaired_to_english(taxonomy, category, released, expected):
    assert clean(released, category, taxonomy) == expected
    checker = CaptionChecker(taxonomy.categories, VOCABULARY.nouns_for(taxonomy.domain))
    assert checker.problems(expected, own=category) == []  # the expectation itself is clean English


@pytest.mark.parametrize(
    ("taxonomy", "category", "released", "reason"),
    [
        (AIRCRAFT, "Il-76", 'An Il-76 airplane with the word "DobroIl-76 airplane" written on it.',
         "was all of a quoted text"),
        (AIRCRAFT, "A380", "An A380 airplane with the code A320 on its tail.", "names another class (A320)"),
        (PETS, "Beagle", "A beagle and a bengal on a sofa.", "names another class (Bengal)"),
    ],
)
def test_unrepairable_captions_are_refused_with_the_reason(taxonomy, category, released, reason):
    with pytest.raises(Unrepairable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        clean(released, category, taxonomy)


def test_checker_counts_what_repairs_break():
    checker = CaptionChecker(PETS.categories, ("cat", "dog", "plane", "airplane"))
    assert [f.words for f in checker.non_words("some sdogtered items, dogch, indidoging")] == \
        ["sdogtered", "dogch", "indidoging"]
    assert [f.words for f in checker.non_words("a Westplane and the tail number planeER")] == ["Westplane", "planeER"]
    # Names, codes, quoted text and plurals of class names are not non-words.
    assert checker.non_words('KLM Cityhopper G-BHUM "Abysinnian" bengals 737-300ER www.x.com') == []
    assert [f.words for f in checker.repeated_names("a lotus lotus; plane airplane; airplane airplanes")] == \
        ["plane airplane", "airplane airplanes"]  # lotus is no class of PETS
    assert [f.words for f in checker.repeated_names("a black terrier scottish terrier")] == ["terrier scottish terrier"]
    assert checker.other_classes("A beagle basset hound", "Basset Hound") == ["beagle"]
    assert checker.other_classes("A pink primrose", "Bengal") == []  # no pets class


def released_file(tmp_path, records: dict) -> str:
    path = tmp_path / "pets_test.json"
    path.write_text(json.dumps({
        key: {"file_name": key, "file_path": f"/root/DATA/oxford_pets/images/{key}.jpg", "positive": positive,
              "negative": negatives}
        for key, (positive, negatives) in records.items()
    }))
    return str(path)


def test_importing_defective_records_gives_english_or_named_rejections(tmp_path):
    records = {
        "great_pyrenees_1": ("A white great pyrenees near sgreat pyreneestered toys.",
                             ["A pug near spugtered toys.", "A white beagle near scattered toys."]),
        "Bengal_2": ("A Bengal is perched on a Bengal tree.", ["A Bengal is perched on a Bengal tree."]),
        "scottish_terrier_3": ("A black terrier scottish terrier sits on a red rug.", []),
        "basset_hound_4": ("A brown beagle stands on green grass.", ["A brown Persian stands on green grass."]),
        "Siamese_5": ("A Siamese cat and a Bengal cat on a sofa.", []),  # two breeds: refused
        "Maine_Coon_6": ("A fluffy Maine Coon Maine Coon on a blue blanket.", []),
    }
    classes = {"great_pyrenees_1": "Great Pyrenees", "Bengal_2": "Bengal", "scottish_terrier_3": "Scottish Terrier",
               "basset_hound_4": "Basset Hound", "Siamese_5": "Siamese", "Maine_Coon_6": "Maine Coon"}
    items = [SourceItem("oxford_pets", "test", c, PETS.category_id(c), PETS.meta_category(c),
                        f"oxford_pets/images/{k}.jpg", "oxford_pets", image_bytes=b"") for k, c in classes.items()]
    result = annotate(items, [b""] * len(items), [str(i) for i in range(len(items))], PETS,
                      CaptionOptions(captions_path=released_file(tmp_path, records)), tmp_path / "cache")
    assert set(result.rejected) == {4}
    assert "names another class (Bengal)" in result.rejected[4] and "Siamese_5" in result.rejected[4]
    assert [it.caption for it in items[:4]] + [items[5].caption] == [
        "A white great pyrenees near scattered toys.",
        "A Bengal is perched on a cat tree.",
        "A black scottish terrier sits on a red rug.",
        "A brown Basset Hound stands on green grass.",  # the class as the taxonomy writes it
        "A fluffy Maine Coon on a blue blanket.",
    ]
    kept = [it for i, it in enumerate(items) if i not in result.rejected]
    built = AuditInput("imported", "oxford_pets",
                       [AuditRecord(str(i), it.caption, [n["text"] for n in it.negatives], it.category)
                        for i, it in enumerate(kept)],
                       PETS.categories, {name_key(c): PETS.meta_category(c) for c in PETS.categories})
    counts = audit_records(built)
    assert {k: counts[k] for k in AUDIT_KEYS[2:]} == {k: 0 for k in AUDIT_KEYS[2:]}, counts["examples"]
    assert result.report["in_word_classes_repaired"] == 1 and result.report["compounds_restored"] == 1
    assert result.report["captions_not_english"] == 1
