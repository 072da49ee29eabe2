"""The caption stage (`annotate`): captioner choice, filling only what is missing, the template and
VLM captioners (a stand-in VLM for exact text, and the tiny LLaVA for the real path), rejections,
and rows that pass fdrd.schema.validate_record."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from PIL import Image

from builders.captions import stage
from builders.captions.insert import contains_name
from builders.captions.stage import CaptionOptions, annotate, resolve_captioner
from builders.sources.base import SourceItem
from builders.taxonomy import build_taxonomy
from fdrd.errors import FdrdError
from fdrd.schema import COLUMNS, validate_record

PETS = build_taxonomy("oxford_pets", ["abyssinian", "bengal", "sphynx", "beagle", "pug", "great_pyrenees"])


def item(category: str, name: str, **fields) -> SourceItem:
    return SourceItem("oxford_pets", "train", category, PETS.category_id(category), PETS.meta_category(category),
                      f"oxford_pets/images/{name}.jpg", "oxford_pets", image_bytes=b"", **fields)


def png(seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (24, 24), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def run(items, tmp_path, **options):
    images = [png(i) for i in range(len(items))]
    shas = [hashlib.sha256(b).hexdigest() for b in images]
    return annotate(items, images, shas, PETS, CaptionOptions(**options), tmp_path)


def as_row(it: SourceItem) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(id="x", split=it.split, caption=it.caption, attributes=it.attributes, negatives=it.negatives)
    return row


def test_resolve_captioner():
    labelled = [item("pug", "a", extra={"attributes": {"colour": "black"}})]
    plain = [item("pug", "b")]
    assert resolve_captioner(labelled, CaptionOptions()) == "template"
    assert resolve_captioner(plain, CaptionOptions(captions_path="x.json")) == "fdrd-json"
    assert resolve_captioner(plain, CaptionOptions()) == "vlm"
    assert resolve_captioner(labelled, CaptionOptions(captioner="none")) == "none"
    with pytest.raises(FdrdError, match="unknown captioner 'blip'"):
        resolve_captioner(plain, CaptionOptions(captioner="blip"))


def test_bad_calls_are_named_errors(tmp_path):
    with pytest.raises(FdrdError, match="differ in length"):
        annotate([item("pug", "a")], [], [], PETS, CaptionOptions(), tmp_path)
    with pytest.raises(FdrdError, match="--negatives must be at least 0"):
        run([item("pug", "a", caption="A pug.")], tmp_path, negatives=-1)
    other = SourceItem("dtd", "train", "striped", 0, "", "dtd/images/a.jpg", "dtd", image_bytes=b"")
    with pytest.raises(FdrdError, match="is in dtd, not oxford_pets"):
        run([other], tmp_path)
    with pytest.raises(FdrdError, match="needs --captions"):
        run([item("pug", "a")], tmp_path, captioner="fdrd-json")


def test_only_missing_fields_are_filled(tmp_path):
    given_negatives = [{"text": "A beagle on a red rug.", "kind": "category", "category": "beagle"}]
    given_attributes = [{"name": "colour", "value": "red", "char_start": 9, "char_end": 12}]
    items = [
        item("pug", "a", caption="A pug on a red rug."),
        item("pug", "b", caption="A pug on a red rug.", attributes=given_attributes, negatives=given_negatives),
    ]
    result = run(items, tmp_path, captioner="none")
    assert items[0].caption == "A pug on a red rug." and len(items[0].negatives) == 4
    assert [a["value"] for a in items[0].attributes] == ["red", "rug"]
    assert items[1].attributes == given_attributes and items[1].negatives == given_negatives
    assert result.report["captions_from_source"] == 2 and result.report["attributes_extracted"] == 1
    assert not result.rejected


def test_none_captioner_rejects_items_without_captions(tmp_path):
    items = [item("pug", "a"), item("pug", "b", caption="A pug.")]
    result = run(items, tmp_path, captioner="none")
    assert list(result.rejected) == [0] and "made none" in result.rejected[0]
    assert items[0].negatives is None


def test_template_captions_are_deterministic_and_valid(tmp_path):
    def labelled():
        return [item(c, f"{c}_{i}", extra={"attributes": {"colour": "black", "size": "small", "pose": "sitting",
                                                          "background": "grass"}})
                for i, c in enumerate(["pug", "sphynx", "abyssinian", "great_pyrenees"])]

    first, second = labelled(), labelled()
    report = run(first, tmp_path).report
    run(second, tmp_path)
    assert [i.caption for i in first] == [i.caption for i in second]
    assert [i.negatives for i in first] == [i.negatives for i in second]
    assert report["captioned_template"] == 4
    for it in first:
        assert contains_name(it.caption, it.category)
        assert {a["name"] for a in it.attributes} == {"colour", "size", "pose", "background"}
        assert validate_record(as_row(it)) == []


def test_items_that_yield_no_negative_are_rejected(tmp_path):
    lonely = build_taxonomy("oxford_pets", ["pug"])
    it = SourceItem("oxford_pets", "train", "pug", 0, "dog", "oxford_pets/images/x.jpg", "oxford_pets",
                    image_bytes=b"", caption="zzz qqq")
    result = annotate([it], [b""], ["s"], lonely, CaptionOptions(captioner="none"), tmp_path)
    assert "no negative could be made" in result.rejected[0]


def test_vlm_captions_get_the_category_inserted(tmp_path, monkeypatch):
    """A stand-in for caption_images gives exact raw captions; the stage inserts the category."""
    from builders.captions import vlm

    raw = ["a small dog sitting on green grass", "scattered toys on a red rug", "", "A cat. The cat sleeps."]
    calls = []

    def fake_caption_images(images, options, cache_path, progress=True):
        calls.append((options, cache_path, [sha for sha, _ in images]))
        return {sha: text for (sha, _), text in zip(images, raw, strict=True)}

    monkeypatch.setattr(vlm, "caption_images", fake_caption_images)
    monkeypatch.setattr(vlm, "model_provenance", lambda options: {"model": options.model})
    items = [item("pug", "a"), item("beagle", "b"), item("pug", "c"), item("sphynx", "d")]
    result = run(items, tmp_path, captioner="vlm", batch_size=3, gpus=0, model="some/model")
    assert [i.caption for i in items] == [
        "A small pug sitting on green grass",
        "This is a beagle. Scattered toys on a red rug",
        None,
        "A sphynx. The cat sleeps.",
    ]
    assert list(result.rejected) == [2]
    assert result.captioner == {"name": "vlm", "model_provenance": {"model": "some/model"}}
    assert result.report["captioned_vlm"] == 3
    assert result.report["category_replaced"] == 2 and result.report["category_prefixed"] == 1
    options, cache_path, _ = calls[0]
    assert (options.model, options.batch_size, options.procs) == ("some/model", 3, 1)
    assert cache_path == tmp_path / stage.CAPTION_CACHE_FILE
    for it in (items[0], items[1], items[3]):
        assert validate_record(as_row(it)) == []


def test_vlm_with_the_tiny_model_and_the_cache(tmp_path):
    from builders.tiny_vlm import build_tiny_vlm

    model = str(build_tiny_vlm(tmp_path / "tiny"))
    items = [item("pug", "a"), item("sphynx", "b"), item("beagle", "c")]
    first = run(items, tmp_path / "cache", captioner="vlm", model=model, max_new_tokens=6)
    assert first.report["cache_hits"] == 0 and first.report["captioned_vlm"] == 3
    again = [item("pug", "a"), item("sphynx", "b"), item("beagle", "c")]
    second = run(again, tmp_path / "cache", captioner="vlm", model=model, max_new_tokens=6)
    assert second.report["cache_hits"] == 3
    assert [i.caption for i in again] == [i.caption for i in items]
    for it in items:
        assert contains_name(it.caption, it.category)
