"""Released FDRD caption files: reading, path mapping onto the data root, refusal of paths that
leave it, matching records to items, and keeping only the released negatives that are sound."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builders.audit import AUDIT_KEYS, AuditInput, AuditRecord, audit_records
from builders.captions.fdrd_json import (
    ReleasedRecord,
    leaves_root,
    load_released,
    match_records,
    read_released,
    record_level_report,
    relative_to_domain,
    released_files,
    sound_released_negatives,
)
from builders.captions.insert import contains_name, inside_word, loose_name_pattern
from builders.captions.negatives import category_negative, swap_candidates
from builders.captions.stage import CaptionOptions, annotate
from builders.sources.base import SourceItem
from builders.taxonomy import build_taxonomy, name_key
from fdrd.errors import FdrdError

REPO = Path(__file__).resolve().parents[2]
RELEASED = REPO.parent / "shared" / "reference" / "released-fdrd"
PETS = build_taxonomy("oxford_pets", ["abyssinian", "bengal", "sphynx", "beagle", "pug", "great_pyrenees"])


def record(key="Sphynx_43", path="/root/x/DATA/oxford_pets/images/Sphynx_43.jpg", positive="A sphynx.",
           negatives=(), class_name=None) -> ReleasedRecord:
    return ReleasedRecord("f.json", key, key, path, positive, tuple(negatives), class_name)


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_read_released_keeps_order_and_fields(tmp_path):
    path = write(tmp_path / "pets_test.json", {
        "Sphynx_43": {"file_name": "Sphynx_43", "file_path": "/a/oxford_pets/images/Sphynx_43.jpg",
                      "positive": "A Sphynx.", "negative": ["A Bengal.", "A pug."]},
        "monkshood_image_06422": {"file_name": "monkshood_image_06422", "class_name": "monkshood",
                                  "number": "06422", "file_path": "/a/flower/test/monkshood_image_06422.jpg",
                                  "positive": "This is a monkshood.", "negative": []},
    })
    records = read_released(path)
    assert [r.key for r in records] == ["Sphynx_43", "monkshood_image_06422"]
    assert records[0].negatives == ("A Bengal.", "A pug.") and records[0].class_name is None
    assert records[1].class_name == "monkshood"
    assert load_released(tmp_path) == records  # a folder of files reads the same


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "not valid JSON"),
        (json.dumps([1, 2]), "top level must be an object"),
        (json.dumps({"k": 3}), "record 'k': should be an object"),
        (json.dumps({"k": {"file_path": "/x", "negative": []}}), "record 'k': missing field 'positive'"),
        (json.dumps({"k": {"file_path": "/x", "positive": "p", "negative": "n"}}), "field 'negative' should be list"),
        (json.dumps({"k": {"file_path": "/x", "positive": "p", "negative": [1]}}), "every entry of 'negative'"),
        (json.dumps({"k": {"file_path": 5, "positive": "p", "negative": []}}), "field 'file_path' should be str"),
    ],
)
def test_malformed_files_are_named_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FdrdError, match=str(path)) as error:
        read_released(path)
    assert message in str(error.value)


def test_missing_or_empty_caption_paths_are_named_errors(tmp_path):
    with pytest.raises(FdrdError, match="no such caption file"):
        released_files(tmp_path / "absent.json")
    with pytest.raises(FdrdError, match="holds no .json"):
        released_files(tmp_path)


@pytest.mark.parametrize(
    ("file_path", "expected"),
    [
        ("/root/autodl-tmp/wyf/CoOp-main/DATA/oxford_pets/images/Sphynx_43.jpg", "oxford_pets/images/Sphynx_43.jpg"),
        ("C:\\data\\oxford_pets\\images\\Sphynx_43.jpg", "oxford_pets/images/Sphynx_43.jpg"),
        ("/root/DATA/fgvc_aircraft/images/1514522.jpg", "fgvc_aircraft/images/1514522.jpg"),
        ("/root/InternLM-XComposer-main/flower/test/monkshood_image_06422.jpg", None),
        ("/x/oxford_pets/oxford_pets/images/a.jpg", "oxford_pets/images/a.jpg"),
    ],
)
def test_relative_to_domain(file_path, expected):
    assert relative_to_domain(file_path, ["oxford_pets", "fgvc_aircraft"]) == expected


def test_leaves_root():
    assert leaves_root("oxford_pets/../../etc/passwd")
    assert leaves_root("../x.jpg") and leaves_root("/etc/passwd")
    assert not leaves_root("oxford_pets/images/../images/a.jpg")


def test_matching_by_path_by_file_name_and_refusals(tmp_path):
    (tmp_path / "oxford_pets" / "images").mkdir(parents=True)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "oxford_pets" / "images" / "escape")
    originals = ["oxford_pets/images/Sphynx_43.jpg", "oxford_pets/jpg/image_06422.jpg",
                 "oxford_pets/a/dup.jpg", "oxford_pets/b/dup.jpg"]
    records = [
        record("Sphynx_43"),
        record("monkshood_image_06422", "/r/flower/test/monkshood_image_06422.jpg", class_name="monkshood"),
        record("dup_1", "/r/flower/test/dup.jpg"),
        record("evil", "/r/DATA/oxford_pets/../../etc/passwd"),
        record("link", "/r/DATA/oxford_pets/images/escape/x.jpg"),
        record("again", "/q/oxford_pets/images/Sphynx_43.jpg"),
        record("plane", "/r/DATA/fgvc_aircraft/images/Sphynx_43.jpg"),
        record("gone", "/r/DATA/oxford_pets/images/absent.jpg"),
    ]
    match = match_records(records, originals, ["oxford_pets"], tmp_path)
    assert {i: r.key for i, r in match.matches.items()} == {0: "Sphynx_43", 1: "monkshood_image_06422"}
    assert [r.key for r in match.ambiguous] == ["dup_1"]
    assert [r.key for r, _ in match.refused] == ["evil", "link"]
    assert all("outside the data root" in reason for _, reason in match.refused)
    assert [r.key for r in match.duplicates] == ["again"]
    assert [r.key for r in match.unmatched] == ["gone"]
    report, refused = record_level_report(records, "oxford_pets", tmp_path)
    assert [r.key for r, _ in refused] == ["evil", "link"]
    assert report == {"released_records": 8, "released_records_by_path": 5, "released_records_by_file_name": 2,
                      "released_records_other_domain": 1, "refused_records": 2,
                      "released_records_without_image": 3}


def reference_sound(positive, category, released, candidates):
    """Keep a released negative iff it is exactly one of our own category swaps, first copy only."""
    ours = {category_negative(positive, category, c).lower(): c for c in candidates}
    kept, seen = [], {positive.lower()}
    for text in released:
        if text.lower() in ours and text.lower() not in seen:
            seen.add(text.lower())
            kept.append({"text": text, "kind": "category", "category": ours[text.lower()]})
    return kept


def test_sound_released_negatives_drop_every_planted_defect():
    positive = "An abyssinian sits among scattered toys; the abyssinian looks up."
    candidates = swap_candidates("abyssinian", PETS)
    released = (
        positive,  # identical to the positive
        "A bengal sits among scattered toys; the bengal looks up.",  # sound
        "A bengal sits among scattered toys; the bengal looks up.",  # duplicate
        "A sphynx sits among scattered toys; the abyssinian looks up.",  # true class survives
        "A beagle sits among scattered toys; the beagle looks up.",  # another meta-category
        "An abyssinian sits among sbengaltered toys; the abyssinian looks up.",  # in-word, class survives
        "A Sphynx sits among scattered toys; the Sphynx looks up.",  # sound, other case
    )
    kept, defective = sound_released_negatives(positive, "abyssinian", released, candidates)
    assert [k["category"] for k in kept] == ["bengal", "sphynx"]
    assert defective == 5
    assert kept == reference_sound(positive, "abyssinian", released, candidates)


def test_sound_released_negatives_match_reference_on_random_swaps():
    import random

    rng = random.Random(11)
    words = ["a", "an", "the", "cat", "scattered", "abyssinian", "Abyssinian", "sphynx", "on", "rug", "."]
    names = list(PETS.categories)
    for _ in range(400):
        category = rng.choice(names)
        positive = " ".join(rng.choice(words + [category]) for _ in range(rng.randrange(1, 9)))
        released = []
        for _ in range(4):
            other = rng.choice(names)
            # The released generator: plain substring replacement of one name by another.
            old = rng.choice([category, rng.choice(names), "cat"])
            released.append(positive.replace(old.replace("_", " "), other.replace("_", " ")))
        candidates = swap_candidates(category, PETS)
        kept, defective = sound_released_negatives(positive, category, tuple(released), candidates)
        # A positive that does not name its class has no sound class swap at all.
        named = contains_name(positive, category)
        expected = reference_sound(positive, category, released, candidates) if named else []
        assert kept == expected, (positive, category, released)
        assert defective == len(released) - len(kept)


def items_for(originals_and_categories, taxonomy):
    return [
        SourceItem(taxonomy.domain, "test", c, taxonomy.category_id(c), taxonomy.meta_category(c), o, taxonomy.domain,
                   image_bytes=b"")
        for o, c in originals_and_categories
    ]


def test_import_through_the_caption_stage(tmp_path):
    captions = write(tmp_path / "pets_test.json", {
        "Abyssinian_1": {"file_name": "Abyssinian_1", "file_path": "/r/DATA/oxford_pets/images/Abyssinian_1.jpg",
                         "positive": "A Abyssinian cat sits on a red rug.",
                         "negative": ["A Abyssinian cat sits on a red rug.", "A bengal cat sits on a red rug.",
                                      "A beagle cat sits on a red rug.", "A bengal cat sits on a red rug."]},
        "pug_2": {"file_name": "pug_2", "file_path": "/r/DATA/oxford_pets/images/pug_2.jpg",
                  "positive": "A small dog lying on green grass.", "negative": []},
        "evil": {"file_name": "evil", "file_path": "/r/DATA/oxford_pets/../../../etc/passwd",
                 "positive": "x", "negative": []},
    })
    items = items_for([("oxford_pets/images/Abyssinian_1.jpg", "abyssinian"), ("oxford_pets/images/pug_2.jpg", "pug"),
                       ("oxford_pets/images/sphynx_9.jpg", "sphynx")], PETS)
    options = CaptionOptions(captions_path=str(captions), data_root=str(tmp_path))
    result = annotate(items, [b""] * 3, ["a", "b", "c"], PETS, options, tmp_path / "cache")
    assert items[0].caption == "An Abyssinian cat sits on a red rug."
    assert items[1].caption == "A small pug lying on green grass."
    assert items[2].caption is None and "no caption record" in result.rejected[2]
    kinds = [n["kind"] for n in items[0].negatives]
    assert kinds == ["category", "category", "attribute", "attribute"]
    assert items[0].negatives[0]["text"] == "A bengal cat sits on a red rug."  # the sound released one is kept
    assert result.report["imported"] == 2 and result.report["repaired_records"] == 1
    assert result.report["released_negatives_kept"] == 1 and result.report["released_negatives_replaced"] == 3
    assert result.report["category_replaced"] == 1 and result.report["category_present"] == 1
    assert result.report["items_without_caption_record"] == 1
    assert result.record_report["refused_records"] == 1
    assert [r.original for r in result.record_rejections] == ["/r/DATA/oxford_pets/../../../etc/passwd"]


@pytest.mark.skipif(not RELEASED.is_dir(), reason="needs ../shared/reference/released-fdrd (not in a public clone)")
@pytest.mark.parametrize("file_name", ["pets_test.json", "plane_test.json", "flower_test.json"])
def test_importing_the_real_released_files_leaves_no_defect(tmp_path, file_name):
    from builders.audit import class_from_key, released_audit_input

    path = RELEASED / file_name
    audit_input = released_audit_input(path)
    domain = audit_input.domain
    taxonomy = build_taxonomy(domain, audit_input.classes)
    records = read_released(path)
    pairs = []
    for r, audited in zip(records, audit_input.records, strict=True):
        folder = "jpg" if domain == "oxford_flowers" else "images"
        stem = r.file_name.removeprefix((r.class_name or "").replace(" ", "_") + "_") if r.class_name else r.file_name
        category = next(c for c in taxonomy.categories if name_key(c) == name_key(audited.true_class))
        pairs.append((f"{domain}/{folder}/{stem}.jpg", category))
    assert class_from_key(records[0].key)
    items = items_for(pairs, taxonomy)
    result = annotate(items, [b""] * len(items), [str(i) for i in range(len(items))], taxonomy,
                      CaptionOptions(captions_path=str(path)), tmp_path)
    # Three aircraft records cannot be repaired (two quote only a glued name, one names a second class):
    # they are refused with their reason, never kept as garbage.
    refused = {"pets_test.json": 0, "flower_test.json": 0, "plane_test.json": 3}[file_name]
    assert result.report["imported"] == len(records) - refused and len(result.rejected) == refused
    assert all(reason for reason in result.rejected.values())
    kept = [i for i in range(len(items)) if i not in result.rejected]
    released_words = [set(records[i].positive.split()) for i in kept]
    items = [items[i] for i in kept]
    built = AuditInput("imported", domain, [AuditRecord(str(i), it.caption, [n["text"] for n in it.negatives],
                                                        it.category) for i, it in enumerate(items)],
                       taxonomy.categories, {name_key(c): taxonomy.meta_category(c) for c in taxonomy.categories})
    counts = audit_records(built)
    assert {k: counts[k] for k in AUDIT_KEYS[2:]} == {k: 0 for k in AUDIT_KEYS[2:]}, counts["examples"]
    # The positives lose the released in-word substitutions too ("sgreat pyreneestered").
    if domain != "oxford_flowers":
        assert result.report["in_word_classes_repaired"] > 0
        for it, original in zip(items, released_words, strict=True):
            for match in loose_name_pattern(it.category).finditer(it.caption):
                if inside_word(it.caption, *match.span()):
                    # Only a word the authors' caption already had may hold the name ("tail number 767-300ER").
                    start = it.caption.rfind(" ", 0, match.start()) + 1
                    end = it.caption.find(" ", match.end())
                    word = it.caption[start : None if end < 0 else end]
                    assert word in original, (it.category, it.caption)
