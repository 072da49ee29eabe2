"""End to end through the build pipeline: a CoOp data root captioned from a released-format JSON
file with the released defects planted in it, or by the tiny VLM, builds into a dataset that
audits to zero."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from builders.audit import AUDIT_KEYS, audit_path
from builders.captions.insert import contains_name, find_name
from fdrd.schema import validate_record

AUTHORS_ROOT = "/root/autodl-tmp/wyf/CoOp-main/DATA"
CATS = {"Abyssinian", "Bengal"}  # the fixture's cat breeds; the other two are dogs


def pets_records(images: Path) -> dict:
    """One record per image file, as the released generator made them: the class put in by plain
    substring replacement of "cat"/"dog" (so "scattered" breaks), negatives drawn with replacement
    from the whole domain."""
    breeds = ["Abyssinian", "Bengal", "american bulldog", "yorkshire terrier"]
    records = {}
    for n, path in enumerate(sorted(images.glob("*.jpg"))):
        key = path.stem
        breed = next(b for b in breeds if key.lower().startswith(b.lower().replace(" ", "_")))
        noun = "cat" if breed in CATS else "dog"
        raw = f"A small {noun} sits near some scattered toys on a red rug."
        positive = raw.replace(noun, breed)
        others = [b for b in breeds if b != breed]
        negatives = [
            positive,  # identical to the positive
            positive.replace(breed, others[n % 3]),  # inside "scattered" too when noun == "cat"
            positive.replace(breed, others[(n + 1) % 3]),
            positive.replace(breed, others[(n + 1) % 3]),  # duplicate
        ]
        if n == 1:
            # "cat" -> "Bengal" where the VLM wrote "Bengal cat": the name twice, back to back.
            positive = positive.replace(breed, f"{breed} {breed}", 1)
        if n == 0:
            # The positive also names another breed, and every swap replaced that one instead
            # (the import refuses this record: it cannot tell which breed is shown).
            positive += f" A {others[0]} poster hangs behind."
            negatives = [positive.replace(others[0], b) for b in breeds if b not in (breed, others[0])]
        records[key] = {"file_name": key, "file_path": f"{AUTHORS_ROOT}/oxford_pets/images/{path.name}",
                        "positive": positive, "negative": negatives}
    records["escape"] = {"file_name": "escape", "file_path": f"{AUTHORS_ROOT}/oxford_pets/../../../../etc/passwd",
                         "positive": "A cat.", "negative": []}
    return records


def flower_records(split_file: Path) -> dict:
    """Flowers records carry class_name and paths without the domain folder (matched by file name)."""
    splits = json.loads(split_file.read_text())
    records = {}
    names = sorted({name for entries in splits.values() for _, _, name in entries})
    for entries in splits.values():
        for n, (image, _, name) in enumerate(entries):
            key = f"{name.replace(' ', '_')}_{Path(image).stem}"
            positive = f"This is a {name}.The image shows a pink flower with green leaves."
            other = names[(names.index(name) + 1 + n % 2) % len(names)]
            records[key] = {"file_name": key, "class_name": name, "number": Path(image).stem[-5:],
                            "file_path": f"/root/InternLM-XComposer-main/flower/test/{key}.jpg",
                            "positive": positive, "negative": [positive, positive.replace(name, other)]}
    return records


def test_fdrd_json_build_over_coop_data_audits_to_zero(tmp_path, coop_root):
    from builders.pipeline import BuildOptions, CaptionSettings, build

    captions = tmp_path / "released"
    captions.mkdir()
    root = coop_root.root
    (captions / "pets_test.json").write_text(json.dumps(pets_records(root / "oxford_pets" / "images")))
    (captions / "flower_test.json").write_text(json.dumps(flower_records(root / "oxford_flowers" /
                                                                        "split_zhou_OxfordFlowers.json")))
    # The released files themselves carry every defect planted above (pets has cats and dogs).
    [flowers_before, pets_before] = audit_path(captions)
    planted = ("identical_to_positive", "duplicate_negative_records", "in_word_replacements", "true_class_survives",
               "cross_meta_category")
    assert all(pets_before[k] > 0 for k in planted), {k: pets_before[k] for k in planted}
    assert flowers_before["identical_to_positive"] > 0

    out = tmp_path / "fdrd"
    manifest = build(
        BuildOptions(out=out, source="coop", data_root=root,
                     captions=CaptionSettings(captioner="fdrd-json", captions_path=str(captions))),
        console=Console(quiet=True),
    )
    results = audit_path(out)
    assert {Path(r["file"]).name for r in results} == {"oxford_pets", "oxford_flowers"}
    for result in results:
        assert result["records"] > 0
        assert {k: result[k] for k in AUDIT_KEYS[2:] if result[k] is not None} == {
            k: 0 for k in AUDIT_KEYS[2:] if result[k] is not None
        }, result["examples"]

    assert manifest["domains"]["oxford_pets"]["captioner"] == {"name": "fdrd-json"}
    pets = manifest["domains"]["oxford_pets"]["captions"]
    assert pets["imported"] > 0 and pets["repaired_records"] == pets["imported"]
    assert manifest["domains"]["oxford_flowers"]["captions"]["imported"] == sum(
        len(v) for v in coop_root.facts["good"]["oxford_flowers"].values()
    )
    rejected = (out / "rejected.jsonl").read_text()
    assert "points outside the data root" in rejected

    for shard in sorted(out.glob("*/*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            assert validate_record(row) == [], row["id"]
            assert contains_name(row["caption"], row["category"])
            if row["domain"] == "oxford_pets":  # "sAbyssiniantered" repaired back to "scattered"
                assert "scattered" in row["caption"], row["caption"]
            assert len(row["negatives"]) == 4


@pytest.mark.slow  # about 17 s on the shared 2-core machine: builds and runs the tiny LLaVA
def test_vlm_build_with_the_tiny_model_names_every_category_and_audits_to_zero(tmp_path, coop_root):
    from builders.pipeline import BuildOptions, CaptionSettings, build
    from builders.tiny_vlm import build_tiny_vlm

    model = str(build_tiny_vlm(tmp_path / "tiny-vlm"))
    out = tmp_path / "fdrd"
    manifest = build(
        BuildOptions(out=out, source="coop", data_root=coop_root.root, domains=("oxford_flowers",),
                     captions=CaptionSettings(captioner="vlm", model=model)),
        console=Console(quiet=True),
    )
    report = manifest["domains"]["oxford_flowers"]["captions"]
    images = sum(len(v) for v in coop_root.facts["good"]["oxford_flowers"].values())
    assert report["captioned_vlm"] == images
    assert report["category_replaced"] + report["category_prefixed"] + report.get("category_present", 0) == images
    captioner = manifest["domains"]["oxford_flowers"]["captioner"]
    assert captioner["name"] == "vlm"
    assert captioner["model_provenance"]["model"] == model
    assert captioner["model_provenance"]["trust_remote_code"] is False
    assert captioner["model_provenance"]["architectures"] == ["LlavaForConditionalGeneration"]
    [result] = audit_path(out)
    assert {k: result[k] for k in AUDIT_KEYS[2:]} == {k: 0 for k in AUDIT_KEYS[2:]}, result["examples"]
    for shard in sorted(out.glob("*/*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            assert validate_record(row) == []
            assert contains_name(row["caption"], row["category"])


# The fixture's breeds and what a category swap must turn each named breed into (same species,
# article made right): written out by hand, not derived from the code under test.
PET_SWAPS = {
    "Abyssinian": ("an Abyssinian", "a Bengal"),
    "Bengal": ("a Bengal", "an Abyssinian"),
    "American Bulldog": ("an American Bulldog", "a Yorkshire Terrier"),
    "Yorkshire Terrier": ("a Yorkshire Terrier", "an American Bulldog"),
}
PET_SPECIES = {"Abyssinian": "cat", "Bengal": "cat", "American Bulldog": "dog", "Yorkshire Terrier": "dog"}


def built_rows(out: Path) -> list[dict]:
    return [row for shard in sorted(out.glob("*/*.parquet")) for row in pq.read_table(shard).to_pylist()]


def test_template_captioner_on_coop_writes_category_captions_that_audit_to_zero(tmp_path, coop_root):
    import re

    from builders.captions.attributes import extract_attributes, load_vocabulary
    from builders.pipeline import BuildOptions, CaptionSettings, build

    out = tmp_path / "fdrd"
    manifest = build(
        BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template")),
        console=Console(quiet=True),
    )
    rows = built_rows(out)
    assert len(rows) == manifest["rows"] > 0
    vocabulary = load_vocabulary(None)
    skeletons = set()
    for row in rows:
        caption, category = row["caption"], row["category"]
        assert validate_record(row) == []
        assert caption.lower().count(category.lower()) == 1, caption
        protected = find_name(caption, category)  # "pink primrose" names no colour
        assert row["attributes"] == [] and extract_attributes(caption, vocabulary, row["domain"], protected) == [], caption
        assert {n["kind"] for n in row["negatives"]} == {"category"}
        if row["domain"] == "oxford_pets":
            species = PET_SPECIES[category]
            # The meta-category is named; the one sibling of the same species is the one negative.
            assert re.search(rf"\b{species}\b", caption), caption
            assert not re.search(rf"\b{'dog' if species == 'cat' else 'cat'}\b", caption)
            named, swapped = PET_SWAPS[category]
            expected = caption.replace(named, swapped).replace(named[0].upper() + named[1:], swapped[0].upper() + swapped[1:])
            assert [n["text"] for n in row["negatives"]] == [expected]
        else:
            # The fixture's three flowers form one group named after a member ("like ..."): a
            # caption naming it would name another class, so it is left out; both others are swapped in.
            assert "like" not in caption
            others = {"pink primrose", "hard-leaved pocket orchid", "canterbury bells"} - {category}
            assert {n["category"] for n in row["negatives"]} == others
            assert all(n["text"].lower().count(n["category"]) == 1 for n in row["negatives"])
        skeletons.add(caption.replace(category, "X").replace(row["meta_category"], "M").lower())
    assert len(skeletons) >= 3  # varied sentence forms, not one template for all

    for domain in ("oxford_pets", "oxford_flowers"):
        info = manifest["domains"][domain]
        assert info["attribute_annotations"] == "none"
        # Captioned before dedup: the fixture's exact duplicate got a caption too, then was dropped.
        kept = sum(c["images"] for c in info["splits"].values())
        assert info["captions"]["captioned_category_template"] == kept + info["exact_duplicates"]
    results = audit_path(out)
    assert {Path(r["file"]).name for r in results} == {"oxford_pets", "oxford_flowers"}
    for result in results:
        assert {k: result[k] for k in AUDIT_KEYS[2:] if result[k] is not None} == {
            k: 0 for k in AUDIT_KEYS[2:] if result[k] is not None
        }, result["examples"]
