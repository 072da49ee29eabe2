"""The synthetic source: determinism, design guarantees, caption spans, negatives, visible traits."""

from __future__ import annotations

import hashlib
import io
import random
import re

import numpy as np
import pytest
from PIL import Image

from builders.sources import resolve_source
from builders.sources.base import SourceItem
from builders.sources.synthetic import DEFAULT_PER_CATEGORY, SyntheticSource, split_size
from builders.sources.synthetic_captions import (
    Article,
    Slot,
    attribute_records,
    negatives,
    render,
)
from builders.sources.synthetic_specimens import ATTRIBUTE_VALUES, DOMAINS, draw_attributes, draw_specimen
from fdrd.errors import FdrdError
from fdrd.schema import ATTRIBUTE_TYPES, SPLITS, record_id, validate_record

EVAL_SPLITS = ["train", "val", "test"]


@pytest.fixture(scope="module")
def small_build() -> dict[str, list[SourceItem]]:
    source = SyntheticSource(per_category=4, seed=3)
    return {d: list(source.iter_items(d, list(SPLITS))) for d in source.domains()}


def _digest(items) -> list[tuple[str, str, str]]:
    return [(x.original, hashlib.sha256(x.image_bytes).hexdigest(), x.caption) for x in items]


def test_same_seed_same_bytes_and_captions_other_seed_differs():
    first = list(SyntheticSource(per_category=2, seed=7).iter_items("synthetic_beetles", ["train", "pretrain"]))
    again = list(SyntheticSource(per_category=2, seed=7).iter_items("synthetic_beetles", ["train", "pretrain"]))
    other = list(SyntheticSource(per_category=2, seed=8).iter_items("synthetic_beetles", ["train", "pretrain"]))
    assert _digest(first) == _digest(again)
    assert [x.negatives for x in first] == [x.negatives for x in again]
    changed = sum(a[1] != b[1] for a, b in zip(_digest(first), _digest(other), strict=True))
    assert changed == len(first)


def test_an_item_does_not_depend_on_which_splits_are_built():
    alone = list(SyntheticSource(per_category=2).iter_items("synthetic_crystals", ["test"]))
    together = [x for x in SyntheticSource(per_category=2).iter_items("synthetic_crystals", SPLITS) if x.split == "test"]
    assert _digest(alone) == _digest(together)


def test_design_three_domains_two_metas_six_subcategories():
    source = SyntheticSource()
    assert len(source.domains()) >= 3
    for domain in source.domains():
        taxonomy = source.taxonomy(domain)
        metas = set(taxonomy.meta_categories.values())
        assert len(metas) >= 2
        for meta in metas:
            assert sum(m == meta for m in taxonomy.meta_categories.values()) >= 6
        assert len(set(taxonomy.categories)) == len(taxonomy.categories)


def test_counts_and_split_sizes(small_build):
    source = SyntheticSource(per_category=4, seed=3)
    for domain, items in small_build.items():
        assert len(items) == source.count_items(domain, list(SPLITS))
        categories = len(source.taxonomy(domain).categories)
        for split in SPLITS:
            assert sum(x.split == split for x in items) == categories * split_size(split, 4)
    assert [split_size(split, 4) for split in ("train", "val", "test", "pretrain")] == [4, 1, 16, 16]
    assert split_size("val", 1) == 1  # every split keeps at least one image per category


def test_default_build_lets_bench_rank_methods():
    # 16 training images per category: `fdrd bench`'s default --shots 16 works without a flag. 64 test
    # pairs per category (768 per domain): the size chosen from the measured noise (docs/benchmark.md).
    source = SyntheticSource()
    assert source.per_category == DEFAULT_PER_CATEGORY == 16
    sizes = {split: split_size(split, source.per_category) for split in ("train", "val", "test", "pretrain")}
    assert sizes == {"train": 16, "val": 4, "test": 64, "pretrain": 64}
    assert sum(source.count_items(domain, list(SPLITS)) for domain in source.domains()) == 3 * 12 * (16 + 4 + 64 + 64)


def test_items_are_well_formed_rows(small_build):
    seen_ids = set()
    for domain, items in small_build.items():
        taxonomy = SyntheticSource().taxonomy(domain)
        for item in items:
            assert item.original == f"synthetic/{domain}/{item.split}/{item.original.rsplit('/', 1)[1]}"
            assert taxonomy.categories[item.category_id] == item.category
            assert taxonomy.meta_category(item.category) == item.meta_category
            image = Image.open(io.BytesIO(item.image_bytes))
            assert image.format == "PNG" and image.mode == "RGB"
            row = {
                "id": record_id(domain, item.original),
                "domain": domain,
                "split": item.split,
                "category": item.category,
                "category_id": item.category_id,
                "meta_category": item.meta_category,
                "image": {"bytes": item.image_bytes, "path": None},
                "width": image.width,
                "height": image.height,
                "caption": item.caption,
                "attributes": item.attributes,
                "negatives": item.negatives,
                "source": {"dataset": item.dataset, "original": item.original, "license": item.license},
                "sha256": "",
                "phash": "",
            }
            assert validate_record(row) == [], (item.original, validate_record(row))
            seen_ids.add(row["id"])
    assert len(seen_ids) == sum(len(items) for items in small_build.values())


def test_captions_name_the_category_and_two_to_four_true_attributes(small_build):
    for items in small_build.values():
        for item in items:
            assert re.search(rf"(?<![\w-]){re.escape(item.category)}(?![\w-])", item.caption)
            names = [a["name"] for a in item.attributes]
            assert len(set(names)) == len(names)
            assert set(names) <= set(ATTRIBUTE_TYPES)
            low, high = (0, 2) if item.split == "pretrain" else (2, 4)
            assert low <= len(names) <= high
            truth = item.extra["attributes"]
            assert set(truth) == set(ATTRIBUTE_VALUES)
            for attribute in item.attributes:
                start, end = attribute["char_start"], attribute["char_end"]
                assert item.caption[start:end] == attribute["value"] == truth[attribute["name"]]


def test_pretrain_captions_are_shorter_and_images_disjoint(small_build):
    for items in small_build.values():
        pretrain = [x for x in items if x.split == "pretrain"]
        rest = [x for x in items if x.split != "pretrain"]
        assert np.mean([len(x.caption) for x in pretrain]) < np.mean([len(x.caption) for x in rest])
        rest_hashes = {hashlib.sha256(x.image_bytes).digest() for x in rest}
        assert not any(hashlib.sha256(x.image_bytes).digest() in rest_hashes for x in pretrain)
        assert len(set(map(str, [x.caption for x in rest]))) > len(rest) // 2  # varied sentence forms


def _normalise_articles(text: str) -> str:
    return re.sub(r"\b([Aa])n\b", r"\1", text)


def _is_whole_word_swap(caption: str, negative: str, start: int, end: int, new: str) -> bool:
    """negative == caption with [start:end] replaced by `new` (a/an may change), on word boundaries."""
    before = caption[start - 1] if start > 0 else " "
    after = caption[end] if end < len(caption) else " "
    if before.isalnum() or after.isalnum():
        return False
    expected = caption[:start] + new + caption[end:]
    return _normalise_articles(expected) == _normalise_articles(negative)


def test_negatives_guarantees(small_build):
    source = SyntheticSource()
    for domain, items in small_build.items():
        taxonomy = source.taxonomy(domain)
        for item in items:
            texts = [n["text"] for n in item.negatives]
            assert item.caption not in texts
            assert len(set(texts)) == len(texts)
            category_swaps = [n for n in item.negatives if n["kind"] == "category"]
            attribute_swaps = [n for n in item.negatives if n["kind"] == "attribute"]
            assert len(category_swaps) >= 2
            if item.split != "pretrain":
                assert len(attribute_swaps) >= 2
            swapped_in = [n["category"] for n in category_swaps]
            assert len(set(swapped_in)) == len(swapped_in)  # drawn without replacement
            siblings = taxonomy.siblings(item.category)
            start, end = re.search(rf"(?<![\w-]){re.escape(item.category)}(?![\w-])", item.caption).span()
            for negative in category_swaps:
                assert negative["category"] in siblings
                assert taxonomy.meta_category(negative["category"]) == item.meta_category
                assert _is_whole_word_swap(item.caption, negative["text"], start, end, negative["category"])
            for negative in attribute_swaps:
                assert negative["category"] == item.category
                assert any(
                    _is_whole_word_swap(item.caption, negative["text"], a["char_start"], a["char_end"], value)
                    for a in item.attributes
                    for value in ATTRIBUTE_VALUES[a["name"]]
                    if value != a["value"]
                ), (item.caption, negative["text"])


def test_negatives_from_a_single_attribute_caption_use_two_values():
    pieces = [Article(True), " ", Slot("colour", "red"), " ", Slot("category", "prism"), "."]
    result = negatives(pieces, "prism", ["cube", "pyramid", "cone"], random.Random(0))
    assert [n["kind"] for n in result] == ["category", "category", "attribute", "attribute"]
    texts = [n["text"] for n in result]
    assert len(set(texts)) == 4 and "A red prism." not in texts


def test_render_articles_and_spans():
    pieces = [Article(True), " ", Slot("colour", "orange"), " ", Slot("category", "one-spot beetle"), "."]
    rendered = render(pieces)
    assert rendered.text == "An orange one-spot beetle."
    assert render([Article(True), " ", Slot("category", "one-spot beetle")]).text == "A one-spot beetle"
    text, records = attribute_records(pieces)
    assert records == [{"name": "colour", "value": "orange", "char_start": 3, "char_end": 9}]
    assert text[3:9] == "orange"


def _downscaled(meta, trait, attributes, seed) -> np.ndarray:
    image = draw_specimen(meta, trait, attributes, 128, random.Random(seed))
    return np.asarray(image.resize((64, 64), Image.BILINEAR)).astype(int)


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a - b).max(axis=2) > 40).sum())


@pytest.mark.parametrize("meta", [m for d in DOMAINS for m in d.metas], ids=lambda m: m.name)
def test_sibling_traits_stay_visible_at_64_px(meta):
    for seed in range(12):
        attributes = draw_attributes(random.Random(seed))
        images = [_downscaled(meta, value, attributes, seed) for value in meta.values]
        for i in range(len(images)):
            for j in range(i + 1, len(images)):
                assert _changed_pixels(images[i], images[j]) >= 2, (meta.name, meta.values[i], meta.values[j])


@pytest.mark.parametrize("attribute", list(ATTRIBUTE_VALUES))
def test_every_attribute_is_visibly_drawn(attribute):
    meta = DOMAINS[0].metas[0]
    for seed in range(6):
        attributes = draw_attributes(random.Random(seed))
        base = _downscaled(meta, meta.values[0], attributes, seed)
        for value in ATTRIBUTE_VALUES[attribute]:
            if value != attributes[attribute]:
                changed = _downscaled(meta, meta.values[0], {**attributes, attribute: value}, seed)
                assert _changed_pixels(base, changed) >= 10, (attribute, attributes[attribute], value)


def test_bad_options_are_clear_errors():
    with pytest.raises(FdrdError, match="unknown domain 'synthetic_fish'"):
        SyntheticSource(domains=["synthetic_fish"])
    with pytest.raises(FdrdError, match="at least 1"):
        SyntheticSource(per_category=0)
    with pytest.raises(FdrdError, match="unknown split 'dev'"):
        SyntheticSource().count_items("synthetic_flowers", ["dev"])
    with pytest.raises(FdrdError, match="unknown domain"):
        SyntheticSource(domains=["synthetic_flowers"]).taxonomy("synthetic_beetles")


def test_resolve_source_passes_seed_and_scale():
    source = resolve_source(domains=["synthetic_crystals"], seed=5, per_category=2, image_size=96)
    assert source.domains() == ["synthetic_crystals"]
    item = next(iter(source.iter_items("synthetic_crystals", ["val"])))
    assert Image.open(io.BytesIO(item.image_bytes)).size == (96, 96)
    assert item.extra["seed"] == 5
