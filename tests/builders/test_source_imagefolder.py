"""The image-folder source: flat and split layouts, meta.json, hash splits, rejections, errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from builders.sources.base import Rejection, SourceItem
from builders.sources.imagefolder import HASH_SPLIT_BOUNDS, ImageFolderSource, hash_split
from builders.taxonomy import SpellingGroupsWarning
from fdrd.errors import FdrdError

ALL = ["train", "val", "test"]


def _touch(path, data=b"\x89PNG fake bytes: the source never decodes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def flat_root(tmp_path):
    root = tmp_path / "garden_birds"
    for category in ("song_thrush", "blackbird", "house_sparrow"):
        for k in range(12):
            _touch(root / category / f"{k:03d}.jpg")
    _touch(root / "blackbird" / "notes.txt", b"not an image")
    _touch(root / "blackbird" / ".DS_Store", b"finder junk")
    (root / "meta.json").write_text(
        json.dumps({"song_thrush": "thrush", "blackbird": "thrush", "house_sparrow": "sparrow"})
    )
    return root


def test_flat_layout_categories_meta_and_hash_splits(flat_root):
    source = ImageFolderSource(flat_root)
    assert source.domains() == ["garden_birds"]
    taxonomy = source.taxonomy("garden_birds")
    assert taxonomy.categories == ("blackbird", "house sparrow", "song thrush")
    assert taxonomy.siblings("blackbird") == ["song thrush"]
    assert taxonomy.meta_source == "meta.json"
    yielded = list(source.iter_items("garden_birds", ALL))
    items = [x for x in yielded if isinstance(x, SourceItem)]
    rejections = [x for x in yielded if isinstance(x, Rejection)]
    assert len(items) == 36 and len(yielded) == source.count_items("garden_birds", ALL)
    assert [r.original for r in rejections] == ["garden_birds/blackbird/notes.txt"]
    assert "not an image file type (.txt)" in rejections[0].reason
    for item in items:
        relative = item.original.split("/", 1)[1]
        assert item.split == hash_split(relative)
        assert taxonomy.categories[item.category_id] == item.category
    assert not any(".DS_Store" in x.original for x in yielded)


def test_split_filter_and_determinism(flat_root):
    source = ImageFolderSource(flat_root)
    test_only = [x.original for x in source.iter_items("garden_birds", ["test"])]
    assert test_only == [x.original for x in ImageFolderSource(flat_root).iter_items("garden_birds", ["test"])]
    assert all(hash_split(o.split("/", 1)[1]) == "test" for o in test_only)
    assert list(source.iter_items("garden_birds", ["pretrain"])) == []
    with pytest.raises(FdrdError, match="unknown split 'dev'"):
        source.count_items("garden_birds", ["dev"])


def test_hash_split_ratios_and_stability():
    counts = Counter(hash_split(f"cat_{i}/{i}.jpg") for i in range(20000))
    previous = 0.0
    for split, bound in HASH_SPLIT_BOUNDS:
        assert abs(counts[split] / 20000 - (bound - previous)) < 0.015
        previous = bound
    assert hash_split("a/b.jpg") == hash_split("a/b.jpg")


def test_split_folder_layout(tmp_path):
    root = tmp_path / "leaves"
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for category in ("oak", "maple"):
            for k in range(n):
                _touch(root / split / category / f"{category}{k}.png")
    _touch(root / "test" / "birch" / "b0.webp")  # a category only seen at test time still gets an id
    with pytest.warns(SpellingGroupsWarning, match="leaf_shapes: no meta-category map"):
        source = ImageFolderSource(root, domain="leaf_shapes")  # no meta.json, no encoder: spelling, said
    assert source.domains() == ["leaf_shapes"]
    assert source.taxonomy("leaf_shapes").categories == ("birch", "maple", "oak")
    assert source.taxonomy("leaf_shapes").meta_rule == "spelling similarity"
    splits = Counter(x.split for x in source.iter_items("leaf_shapes", ALL))
    assert splits == {"train": 6, "val": 2, "test": 5}
    item = next(x for x in source.iter_items("leaf_shapes", ["test"]) if x.category == "birch")
    assert item.original == "leaf_shapes/test/birch/b0.webp"
    assert item.meta_category == source.taxonomy("leaf_shapes").meta_category("birch") != ""


def test_symlink_out_of_the_folder_is_refused(flat_root, tmp_path):
    outside = tmp_path / "elsewhere.jpg"
    _touch(outside)
    (flat_root / "blackbird" / "zz_link.jpg").symlink_to(outside)
    rejections = [x for x in ImageFolderSource(flat_root).iter_items("garden_birds", ALL) if isinstance(x, Rejection)]
    assert any("links outside the image folder; refusing" in r.reason for r in rejections)


def test_meta_json_must_cover_every_category(flat_root):
    (flat_root / "meta.json").write_text(json.dumps({"blackbird": "thrush"}))
    with pytest.raises(FdrdError, match=r"meta.json: no meta-category for house_sparrow, song_thrush"):
        ImageFolderSource(flat_root)
    (flat_root / "meta.json").write_text("{broken")
    with pytest.raises(FdrdError, match="not valid JSON"):
        ImageFolderSource(flat_root)


def test_errors_name_the_folder_and_domain(tmp_path, flat_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FdrdError, match="no category folders"):
        ImageFolderSource(empty)
    with pytest.raises(FdrdError, match="not a folder"):
        ImageFolderSource(tmp_path / "missing")
    with pytest.raises(FdrdError, match=r"unknown domain 'pets'.*known domains: garden_birds"):
        ImageFolderSource(flat_root, domains=["pets"])
    with pytest.raises(FdrdError, match="unknown domain 'pets'"):
        ImageFolderSource(flat_root).taxonomy("pets")
