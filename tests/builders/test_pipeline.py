"""The build end to end: the CoOp fixture with its defects (exact counts), the synthetic source
(determinism), workers, the caption-stage hook, and what the output directory accepts."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
from rich.console import Console

import builders.pipeline as pipeline
from builders.pipeline import BuildOptions, CaptionSettings, build
from builders.report import read_rejected
from builders.sources.base import Rejection
from builders.validate import validate_build
from fdrd.errors import FdrdError
from fdrd.schema import record_id

QUIET = Console(quiet=True)


def coop_build(coop_root, out, **overrides):
    options = BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template"), **overrides)
    return build(options, console=QUIET)


def rows_of(out, domain):
    rows = []
    for path in sorted((out / domain).glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return {row["id"]: row for row in rows}


def test_coop_fixture_builds_with_every_defect_accounted_for(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    manifest = coop_build(coop_root, out)
    facts, defects = coop_root.facts, coop_root.facts["defects"]
    pets = manifest["domains"]["oxford_pets"]["splits"]
    good = facts["good"]["oxford_pets"]
    # train keeps the good images and the EXIF-rotated one; corrupt, missing and the exact copy go.
    assert pets["train"]["images"] == len(good["train"]) + 1
    assert pets["val"]["images"] == len(good["val"])
    assert pets["test"]["images"] == len(good["test"]) + 1  # the near duplicate is kept and reported
    assert (pets["train"]["rejected"], pets["val"]["rejected"], pets["test"]["rejected"]) == (3, 1, 2)
    flowers = manifest["domains"]["oxford_flowers"]["splits"]
    assert {s: c["images"] for s, c in flowers.items()} == {s: len(v) for s, v in facts["good"]["oxford_flowers"].items()}
    assert manifest["rows"] == sum(c["images"] for d in manifest["domains"].values() for c in d["splits"].values())

    rejected = {r["original"]: r for r in read_rejected(out)}
    assert manifest["rejected"]["count"] == len(rejected) == 6
    assert "truncated" in rejected[defects["corrupt"]["original"]]["reason"]
    assert "zero-byte" in rejected[defects["zero_byte"]["original"]]["reason"]
    assert "not an image" in rejected[defects["not_image"]["original"]]["reason"]
    assert "missing file" in rejected[defects["missing"]["original"]]["reason"]
    traversal = [r for r in rejected.values() if "passwd" in r["original"]]
    assert len(traversal) == 1 and "outside the data root" in traversal[0]["reason"]
    duplicate = rejected[defects["exact_duplicate"]["original"]]
    assert duplicate["stage"] == "dedup"
    assert duplicate["reason"] == f"exact duplicate of {record_id('oxford_pets', defects['exact_duplicate']['of'])} (train)"

    leaks = manifest["domains"]["oxford_pets"]["leaks"]
    assert [(leak["test_id"], leak["other_id"]) for leak in leaks] == [
        (record_id("oxford_pets", defects["near_duplicate"]["original"]), record_id("oxford_pets", defects["near_duplicate"]["of"]))
    ]
    assert pets["test"]["leaks"] == 1 and manifest["domains"]["oxford_flowers"]["leaks"] == []

    rows = rows_of(out, "oxford_pets")
    rotated = rows[record_id("oxford_pets", defects["exif_rotated"]["original"])]
    assert (rotated["width"], rotated["height"]) == tuple(defects["exif_rotated"]["upright_size"])
    # CoOp items carry no attribute labels: category captions, no attribute spans, category swaps only.
    assert all(r["category"] in r["caption"] and r["attributes"] == [] for r in rows.values())
    assert all(r["negatives"] and {n["kind"] for n in r["negatives"]} == {"category"} for r in rows.values())
    assert manifest["domains"]["oxford_pets"]["attribute_annotations"] == "none"
    # Pets from the fixture's annotations/list.txt; flowers have no hierarchy file: the shipped map.
    meta = {d: info["meta_categories"] for d, info in manifest["domains"].items()}
    assert meta["oxford_pets"] == {"rule": "dataset hierarchy", "source": "annotations/list.txt"}
    assert meta["oxford_flowers"]["rule"] == "semantic grouping"
    assert meta["oxford_flowers"]["source"].startswith("builders/taxonomies/oxford_flowers.json v1")
    assert {r["category"] for r in rows.values()} == {"Abyssinian", "Bengal", "American Bulldog", "Yorkshire Terrier"}
    assert not (out / ".fdrd-build").exists()
    assert manifest["build"]["data_root"] == str(coop_root.root.resolve())
    assert set(manifest["versions"]) >= {"fdrd", "datasets", "pyarrow", "pillow", "python"}
    for shard in manifest["shards"]:
        assert (out / shard["path"]).stat().st_size == shard["bytes"]


def test_a_coop_root_reached_through_symlinks_builds_the_same_rows(coop_root, linked_coop_root, tmp_path):
    plain = coop_build(coop_root, tmp_path / "plain")
    linked = coop_build(linked_coop_root, tmp_path / "linked")
    assert linked["rows"] == plain["rows"] > 0
    assert linked["content_hash"] == plain["content_hash"]
    for domain in coop_root.facts["domains"]:
        assert rows_of(tmp_path / "linked", domain) == rows_of(tmp_path / "plain", domain)  # ids, originals, bytes
    assert read_rejected(tmp_path / "linked") == read_rejected(tmp_path / "plain")
    assert validate_build(tmp_path / "linked", allow_leaks=True).problems == []


def test_two_workers_build_the_same_content_as_one(coop_root, tmp_path):
    one = coop_build(coop_root, tmp_path / "one", workers=1)
    two = coop_build(coop_root, tmp_path / "two", workers=2)
    assert one["content_hash"] == two["content_hash"]
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]


def test_split_and_domain_selection(coop_root, tmp_path):
    manifest = coop_build(coop_root, tmp_path / "t", split="test", domains=("oxford_flowers",))
    assert list(manifest["domains"]) == ["oxford_flowers"]
    assert [s["path"] for s in manifest["shards"]] == ["oxford_flowers/test-00000-of-00001.parquet"]
    with pytest.raises(FdrdError, match="unknown .*domain 'oxford_cats'.*known domains"):
        coop_build(coop_root, tmp_path / "u", domains=("oxford_cats",))
    with pytest.raises(FdrdError, match="unknown split"):
        coop_build(coop_root, tmp_path / "v", split="holdout")
    with pytest.raises(FdrdError, match="unknown split 'pretrain'; choose one of all, train, val, test"):
        coop_build(coop_root, tmp_path / "w", split="pretrain")  # built only as part of `all`


def test_small_shard_target_splits_into_several_files(coop_root, tmp_path):
    manifest = coop_build(coop_root, tmp_path / "s", shard_bytes=4000, domains=("oxford_flowers",))
    train = [s for s in manifest["shards"] if s["split"] == "train"]
    assert len(train) > 1 and all(s["path"].endswith(f"-of-{len(train):05d}.parquet") for s in train)
    assert sum(s["rows"] for s in train) == manifest["domains"]["oxford_flowers"]["splits"]["train"]["images"]
    baseline = coop_build(coop_root, tmp_path / "b", domains=("oxford_flowers",))
    assert baseline["content_hash"] == manifest["content_hash"]  # shard boundaries do not enter the hash


def test_synthetic_build_is_deterministic_and_valid(synthetic_fdrd, synthetic_build, tmp_path):
    manifest = json.loads((synthetic_fdrd / "manifest.json").read_text())
    assert set(manifest["build"]["splits"]) == {"train", "val", "test", "pretrain"}
    for domain in manifest["domains"].values():
        assert set(domain["splits"]) == {"train", "val", "test", "pretrain"}
        # The source draws each category from its meta-category's design: the data's own hierarchy.
        assert domain["meta_categories"]["rule"] == "dataset hierarchy"
    report = validate_build(synthetic_fdrd)
    assert report.problems == []
    again = synthetic_build(tmp_path / "again")
    assert again["content_hash"] == manifest["content_hash"]
    other = synthetic_build(tmp_path / "other", seed=1, per_category=1, domains=("synthetic_beetles",))
    same_small = synthetic_build(tmp_path / "small", seed=0, per_category=1, domains=("synthetic_beetles",))
    assert other["content_hash"] != same_small["content_hash"]


def test_a_different_build_in_out_is_refused_unless_overwrite(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    first = coop_build(coop_root, out)
    assert coop_build(coop_root, out) == first  # same build: nothing to do
    with pytest.raises(FdrdError, match="holds a different build.*phash_threshold.*--overwrite"):
        coop_build(coop_root, out, phash_threshold=0)
    assert json.loads((out / "manifest.json").read_text()) == first  # untouched
    replaced = coop_build(coop_root, out, phash_threshold=0, overwrite=True)
    assert replaced["build"]["phash_threshold"] == 0
    strangers = tmp_path / "mine"
    strangers.mkdir()
    (strangers / "thesis.tex").write_text("precious")
    with pytest.raises(FdrdError, match="thesis.tex"):
        coop_build(coop_root, strangers, overwrite=True)
    assert (strangers / "thesis.tex").read_text() == "precious"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("precious")
    with pytest.raises(FdrdError, match="notes.txt is a file, not a directory"):
        coop_build(coop_root, a_file, overwrite=True)
    assert a_file.read_text() == "precious"


@dataclass
class FakeResult:
    report: dict
    rejected: dict
    record_rejections: list
    record_report: dict
    captioner: dict


def test_caption_stage_hook_fills_captions_and_rejections(coop_root, tmp_path, monkeypatch):
    stage = pytest.importorskip("builders.captions.stage")
    calls = []

    def fake_annotate(items, image_bytes, image_sha256, taxonomy, options, cache_dir):
        calls.append(len(items))
        assert len(items) == len(image_bytes) == len(image_sha256)
        # The lazy view of staged images hands over each item's own stored bytes.
        assert [hashlib.sha256(b).hexdigest() for b in image_bytes] == list(image_sha256)
        assert image_bytes[1:3] == [image_bytes[1], image_bytes[2]] and image_bytes[-1] == image_bytes[len(items) - 1]
        assert options.captioner == "template" and options.negatives == 2 and cache_dir.is_dir()
        for item in items:
            item.caption = f"a photo of a {item.category}"
            item.attributes = []
            item.negatives = [{"text": "a photo of something else", "kind": "category", "category": "other"}]
        refused = Rejection("oxford_flowers", "", "/elsewhere/x.jpg", "captions.json: record 'x': outside the data root")
        return FakeResult({"captioned_template": len(items)}, {0: "no caption: fake says so"}, [refused], {"released_records": 9},
                          {"name": "template"})

    monkeypatch.setattr(stage, "annotate", fake_annotate)
    out = tmp_path / "fdrd"
    options = BuildOptions(
        out=out,
        data_root=coop_root.root,
        domains=("oxford_flowers",),
        captions=CaptionSettings(captioner="template", negatives=2),
    )
    real_write = pipeline.DomainBuilder._write
    monkeypatch.setattr(pipeline.DomainBuilder, "_write", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build(options, console=QUIET)  # interrupted after the caption stage
    monkeypatch.setattr(pipeline.DomainBuilder, "_write", real_write)
    manifest = build(options, console=QUIET)
    total = sum(len(v) for v in coop_root.facts["good"]["oxford_flowers"].values())
    assert calls == [total]  # once per domain, not again on resume
    assert manifest["domains"]["oxford_flowers"]["captions"] == {"captioned_template": total, "released_records": 9}
    assert manifest["domains"]["oxford_flowers"]["captioner"] == {"name": "template"}
    assert manifest["rows"] == total - 1
    rejected = read_rejected(out)
    assert sorted((r["stage"], r["reason"]) for r in rejected) == [
        ("captions", "captions.json: record 'x': outside the data root"),
        ("captions", "no caption: fake says so"),
    ]
    rows = rows_of(out, "oxford_flowers")
    assert all(r["caption"] == f"a photo of a {r['category']}" for r in rows.values())
    assert all(len(r["negatives"]) == 1 for r in rows.values())


def test_copying_a_build_keeps_it_valid(synthetic_fdrd, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    assert validate_build(copy).problems == []


def test_the_real_caption_stage_keeps_what_the_synthetic_source_gave(synthetic_build, tmp_path):
    pytest.importorskip("builders.captions.stage")
    kept = synthetic_build(tmp_path / "none", per_category=1, domains=("synthetic_crystals",))
    options = BuildOptions(
        out=tmp_path / "auto", source="synthetic", per_category=1, domains=("synthetic_crystals",),
        captions=CaptionSettings(captioner="auto"),
    )
    staged = build(options, console=QUIET)
    assert staged["content_hash"] == kept["content_hash"]
    assert staged["domains"]["synthetic_crystals"]["captions"]["captions_from_source"] == staged["rows"]


def photo(seed: int, size=(160, 120)):
    """A distinct drawn picture per seed (shapes of random colours on a random background)."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        draw.ellipse((x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 50)), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def test_duplicate_policy_across_and_within_splits(tmp_path):
    """Exact copies: the copy in the later split (train, val, pretrain, test order) is rejected.
    Near copies: counted within a split, a leak from test to a training split, never dropped."""
    from PIL import Image

    root = tmp_path / "birds"
    originals = {k: photo(k) for k in range(8)}
    layout = {
        ("train", "finch", "a.jpg"): originals[0],
        ("train", "finch", "b.jpg"): originals[1],
        ("train", "finch", "b_small.jpg"): originals[1].resize((144, 108), Image.BILINEAR),  # near, same split
        ("train", "wren", "c.jpg"): originals[2],
        ("val", "wren", "d.jpg"): originals[3],
        ("test", "finch", "a_copy.png"): ("train", "finch", "a.jpg"),  # the same file: exact copy
        ("test", "wren", "d_copy.png"): ("val", "wren", "d.jpg"),  # a JPEG named .png still decodes
        ("test", "wren", "c_near.jpg"): originals[2].resize((150, 112), Image.BILINEAR),  # leak
        ("test", "wren", "e.jpg"): originals[4],
    }
    for (split, category, name), image in layout.items():
        path = root / split / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, tuple):
            path.write_bytes(root.joinpath(*image).read_bytes())
        else:
            image.save(path, "JPEG", quality=90)
    out = tmp_path / "fdrd"
    manifest = build(
        BuildOptions(out=out, source="imagefolder", data_root=root, captions=CaptionSettings(captioner="template")),
        console=QUIET,
    )
    splits = manifest["domains"]["birds"]["splits"]
    assert {s: c["images"] for s, c in splits.items()} == {"train": 4, "val": 1, "test": 2}
    assert (splits["train"]["near_duplicates"], splits["test"]["leaks"]) == (1, 1)
    rejected = {r["original"]: r["reason"] for r in read_rejected(out)}
    assert rejected == {
        "birds/test/finch/a_copy.png": f"exact duplicate of {record_id('birds', 'birds/train/finch/a.jpg')} (train)",
        "birds/test/wren/d_copy.png": f"exact duplicate of {record_id('birds', 'birds/val/wren/d.jpg')} (val)",
    }
    (leak,) = manifest["domains"]["birds"]["leaks"]
    assert (leak["test_id"], leak["other_id"]) == (
        record_id("birds", "birds/test/wren/c_near.jpg"), record_id("birds", "birds/train/wren/c.jpg")
    )
