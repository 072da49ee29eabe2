"""The CoOp source over the drawn coop_root fixture: counts, names, rejections, refusals, errors;
plus resolve_source's choice of source."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from builders.class_names import readable_class_name
from builders.sources import resolve_source
from builders.sources.base import Rejection, SourceItem
from builders.sources.coop import CoopSource
from builders.sources.coop_layout import LAYOUTS
from builders.sources.imagefolder import ImageFolderSource
from builders.sources.protocol import Source
from builders.sources.synthetic import SyntheticSource
from fdrd.errors import FdrdError
from fdrd.schema import COOP_DOMAINS

SPLITS = ["train", "val", "test"]


def test_layouts_cover_the_nine_domains():
    assert set(LAYOUTS) == set(COOP_DOMAINS)
    assert LAYOUTS["fgvc_aircraft"].split_file is None
    assert LAYOUTS["oxford_pets"].split_file == "split_zhou_OxfordPets.json"


def test_counts_match_the_split_files(coop_root):
    root, facts = coop_root
    source = CoopSource(root)
    assert isinstance(source, Source)
    assert source.domains() == ["oxford_pets", "oxford_flowers"]  # CoOp table order
    for domain in facts["domains"]:
        for split in SPLITS:
            yielded = list(source.iter_items(domain, [split]))
            assert len(yielded) == facts["entries"][domain][split] == source.count_items(domain, [split])
        all_items = list(source.iter_items(domain, SPLITS))
        assert sum(isinstance(x, Rejection) for x in all_items) == facts["source_rejections"][domain]


def test_items_carry_label_readable_name_meta_and_path(coop_root):
    root, facts = coop_root
    source = CoopSource(root)
    items = [x for x in source.iter_items("oxford_pets", SPLITS) if isinstance(x, SourceItem)]
    by_original = {x.original: x for x in items}
    split_file = json.loads((root / "oxford_pets" / "split_zhou_OxfordPets.json").read_text())
    for split in SPLITS:
        for path, label, class_name in split_file[split]:
            item = by_original.get(f"oxford_pets/images/{path}")
            if item is None:
                continue
            assert item.split == split and item.category_id == label
            assert item.category == readable_class_name("oxford_pets", class_name)
            assert item.image_path and os.path.isfile(item.image_path)
            assert item.image_bytes is None and item.dataset == "oxford_pets" and item.license
    assert {x.category for x in items} == {"Abyssinian", "Bengal", "American Bulldog", "Yorkshire Terrier"}
    assert {x.category: x.meta_category for x in items}["Yorkshire Terrier"] == "dog"
    taxonomy = source.taxonomy("oxford_pets")
    assert taxonomy.meta_source == "annotations/list.txt"
    assert taxonomy.siblings("Abyssinian") == ["Bengal"]
    # Decoding is normalization's job: the corrupt, empty and non-image files are still yielded.
    for kind in ("corrupt", "zero_byte", "not_image", "exif_rotated", "exact_duplicate", "near_duplicate"):
        assert facts["defects"][kind]["original"] in by_original, kind


def test_traversal_is_refused_even_though_the_target_exists(coop_root):
    root, facts = coop_root
    traversal = facts["defects"]["traversal"]
    assert (root / "etc" / "passwd").is_file()
    rejections = [x for x in CoopSource(root).iter_items("oxford_pets", ["test"]) if isinstance(x, Rejection)]
    assert len(rejections) == 1
    reason = rejections[0].reason
    assert reason == (
        f"split_zhou_OxfordPets.json: test entry {traversal['index']} points outside the data root "
        "(oxford_pets/): ../../etc/passwd; refusing"
    )
    assert rejections[0].original == traversal["original"]


def test_missing_file_is_a_named_rejection(coop_root):
    root, facts = coop_root
    missing = facts["defects"]["missing"]
    rejections = [x for x in CoopSource(root).iter_items("oxford_pets", ["train"]) if isinstance(x, Rejection)]
    assert [(r.original, r.split) for r in rejections] == [(missing["original"], "train")]
    assert rejections[0].reason.startswith("missing file (split_zhou_OxfordPets.json: train entry")


def test_a_link_placed_in_the_data_root_is_the_users_and_named_as_written(coop_root, tmp_path):
    root, _ = coop_root
    elsewhere = tmp_path / "elsewhere" / "photo.jpg"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    (root / "oxford_flowers" / "jpg" / "link.jpg").symlink_to(elsewhere)
    split_path = root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    data = json.loads(split_path.read_text())
    data["val"].append(["link.jpg", 0, "pink primrose"])
    split_path.write_text(json.dumps(data))
    yielded = list(CoopSource(root).iter_items("oxford_flowers", ["val"]))
    assert not [x for x in yielded if isinstance(x, Rejection)]
    (item,) = [x for x in yielded if x.original == "oxford_flowers/jpg/link.jpg"]
    assert open(item.image_path, "rb").read() == b"x"


@pytest.mark.parametrize(
    "path",
    ["../split_zhou_OxfordFlowers.json", "a/../../x.jpg", "/etc/hostname", "..\\..\\x.jpg", "C:/x.jpg", "jpg/.."],
)
def test_a_split_file_path_that_leaves_its_folder_is_refused(coop_root, path):
    root, _ = coop_root
    split_path = root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    data = json.loads(split_path.read_text())
    data["test"].append([path, 0, "pink primrose"])
    split_path.write_text(json.dumps(data))
    rejections = [x for x in CoopSource(root).iter_items("oxford_flowers", ["test"]) if isinstance(x, Rejection)]
    assert len(rejections) == 1 and "points outside the data root (oxford_flowers/)" in rejections[0].reason
    assert rejections[0].original == f"oxford_flowers/jpg/{path}"


def test_symlinked_domain_and_image_folders_yield_what_the_plain_layout_does(coop_root, linked_coop_root):
    plain, linked = CoopSource(coop_root.root), CoopSource(linked_coop_root.root)
    assert linked.domains() == plain.domains()
    for domain in plain.domains():
        expected = list(plain.iter_items(domain, SPLITS))
        got = list(linked.iter_items(domain, SPLITS))
        assert [type(x) for x in got] == [type(x) for x in expected]
        assert [(x.split, x.original) for x in got] == [(x.split, x.original) for x in expected]
        assert [x.reason for x in got if isinstance(x, Rejection)] == [x.reason for x in expected if isinstance(x, Rejection)]
        items = [x for x in got if isinstance(x, SourceItem)]
        # The image is read through the link, from the file the plain layout names.
        assert all(x.image_path.startswith(str(linked_coop_root.root)) for x in items)
        for x, y in zip(items, [y for y in expected if isinstance(y, SourceItem)], strict=True):
            assert os.path.samefile(x.image_path, y.image_path)
            assert (x.category, x.category_id, x.meta_category) == (y.category, y.category_id, y.meta_category)


def test_malformed_entries_are_rejections_and_label_conflicts_are_errors(coop_root):
    root, _ = coop_root
    split_path = root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    data = json.loads(split_path.read_text())
    data["test"].append(["image_00001.jpg", "zero", "pink primrose"])
    split_path.write_text(json.dumps(data))
    rejections = [x for x in CoopSource(root).iter_items("oxford_flowers", ["test"]) if isinstance(x, Rejection)]
    assert len(rejections) == 1 and "is not [relative_path, label, class_name]" in rejections[0].reason
    data["test"][-1] = ["image_00001.jpg", 0, "canterbury bells"]
    split_path.write_text(json.dumps(data))
    with pytest.raises(FdrdError, match="a label must have one class name"):
        CoopSource(root).taxonomy("oxford_flowers")


def test_split_filter_and_order_are_deterministic(coop_root):
    root, _ = coop_root
    source = CoopSource(root, domains=["oxford_flowers"])
    first = [x.original for x in source.iter_items("oxford_flowers", ["test", "train"])]
    again = [x.original for x in CoopSource(root).iter_items("oxford_flowers", ["test", "train"])]
    assert first == again
    splits = [x.split for x in source.iter_items("oxford_flowers", ["test", "train"])]
    assert splits == sorted(splits, key=["test", "train"].index)
    assert list(source.iter_items("oxford_flowers", ["pretrain"])) == []
    with pytest.raises(FdrdError, match="unknown split 'dev'"):
        list(source.iter_items("oxford_flowers", ["dev"]))


def test_missing_split_file_names_file_and_layout(coop_root):
    root, _ = coop_root
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").unlink()
    with pytest.raises(FdrdError) as error:
        CoopSource(root).count_items("oxford_pets", SPLITS)
    message = str(error.value)
    assert "split_zhou_OxfordPets.json not found" in message and "oxford_pets/images/" in message


def test_broken_split_json_is_a_clear_error(coop_root):
    root, _ = coop_root
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").write_text("{not json")
    with pytest.raises(FdrdError, match="not valid JSON"):
        list(CoopSource(root).iter_items("oxford_pets", ["train"]))


def test_unknown_and_absent_domains(coop_root):
    root, _ = coop_root
    with pytest.raises(FdrdError, match=r"unknown CoOp domain 'pets'; known domains: caltech-101, oxford_pets"):
        CoopSource(root, domains=["pets"])
    with pytest.raises(FdrdError, match=r"no folder for dtd; expected dtd/images/ and dtd/split_zhou_Describable"):
        CoopSource(root, domains=["dtd"])
    with pytest.raises(FdrdError, match="is not in this build"):
        CoopSource(root, domains=["oxford_flowers"]).taxonomy("oxford_pets")


def _write_aircraft(root):
    domain = root / "fgvc_aircraft"
    (domain / "images").mkdir(parents=True)
    (domain / "variants.txt").write_text("707-320\n737-300\nA310\n")
    for split, rows in {
        "train": [("0001", "707-320"), ("0002", "737-300")],
        "val": [("0003", "A310")],
        "test": [("0004", "737-300"), ("0005", "Concorde")],
    }.items():
        (domain / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
        (domain / f"images_family_{split}.txt").write_text(
            "".join(f"{i} {'Boeing ' + v[:3] if v[0] == '7' else v}\n" for i, v in rows)
        )
        for image_id, _ in rows:
            (domain / "images" / f"{image_id}.jpg").write_bytes(b"jpeg")


def test_aircraft_reads_variant_lists(tmp_path):
    _write_aircraft(tmp_path)
    source = CoopSource(tmp_path)
    assert source.domains() == ["fgvc_aircraft"]
    taxonomy = source.taxonomy("fgvc_aircraft")
    assert taxonomy.categories == ("707-320", "737-300", "A310")
    assert taxonomy.meta_category("737-300") == "Boeing 737"
    items = list(source.iter_items("fgvc_aircraft", SPLITS))
    assert [(x.split, x.category_id) for x in items if isinstance(x, SourceItem)] == [
        ("train", 0),
        ("train", 1),
        ("val", 2),
        ("test", 1),
    ]
    rejected = [x for x in items if isinstance(x, Rejection)]
    assert len(rejected) == 1 and "names variant 'Concorde', not in variants.txt" in rejected[0].reason
    assert source.count_items("fgvc_aircraft", SPLITS) == len(items)


def test_aircraft_missing_variant_list_is_an_error(tmp_path):
    _write_aircraft(tmp_path)
    (tmp_path / "fgvc_aircraft" / "images_variant_val.txt").unlink()
    with pytest.raises(FdrdError, match="images_variant_val.txt not found"):
        CoopSource(tmp_path).count_items("fgvc_aircraft", ["train"])


@pytest.mark.parametrize(
    ("domain", "coop_name", "readable"),
    [
        ("oxford_pets", "yorkshire_terrier", "Yorkshire Terrier"),
        ("food-101", "apple_pie", "apple pie"),
        ("sun397", "outdoor apartment_building", "outdoor apartment building"),
        ("ucf101", "Apply_Eye_Makeup", "apply eye makeup"),
        ("caltech-101", "face", "face"),
        ("stanford_cars", "2012 BMW M3 Coupe", "2012 BMW M3 Coupe"),
        ("fgvc_aircraft", "F-16A/B", "F-16A/B"),
        ("oxford_flowers", "hard-leaved  pocket orchid", "hard-leaved pocket orchid"),
    ],
)
def test_readable_class_names(domain, coop_name, readable):
    assert readable_class_name(domain, coop_name) == readable


def test_resolve_source_picks_by_data_root(coop_root, tmp_path):
    root, _ = coop_root
    assert isinstance(resolve_source(), SyntheticSource)
    assert isinstance(resolve_source("auto", root), CoopSource)
    folder = tmp_path / "birds"
    (folder / "sparrow").mkdir(parents=True)
    assert isinstance(resolve_source("auto", folder), ImageFolderSource)
    assert resolve_source("coop", root, domains=["oxford_flowers"]).domains() == ["oxford_flowers"]


def test_resolve_source_errors(tmp_path):
    with pytest.raises(FdrdError, match=r"unknown source 'web'; known sources: auto, synthetic"):
        resolve_source("web")
    with pytest.raises(FdrdError, match="does not exist"):
        resolve_source("auto", tmp_path / "nowhere")
    with pytest.raises(FdrdError, match="needs a data root"):
        resolve_source("coop")
    with pytest.raises(FdrdError, match="unknown domain 'nope'"):
        resolve_source(domains=["nope"])


def test_resolve_source_urls_is_imported_lazily(monkeypatch, tmp_path):
    fake = types.ModuleType("builders.sources.urls")

    class UrlSource:
        def __init__(self, data_root, **options):
            self.data_root, self.options = data_root, options

    fake.UrlSource = UrlSource
    monkeypatch.setitem(sys.modules, "builders.sources.urls", fake)
    source = resolve_source("urls", tmp_path, domains=["shoes"], concurrency=4)
    assert isinstance(source, UrlSource) and source.data_root == tmp_path
    assert source.options == {"domains": ["shoes"], "concurrency": 4}
