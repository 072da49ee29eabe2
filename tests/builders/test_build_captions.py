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
from builders.captions.insert import contains_name
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
    # The released files themselves carry every defect the audit knows (pets has cats and dogs).
    [flowers_before, pets_before] = audit_path(captions)
    assert all(pets_before[k] > 0 for k in AUDIT_KEYS[2:]), pets_before
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
