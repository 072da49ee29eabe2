"""Shards and the dataset card: names, row groups, page index, atomic writes, and the real
`datasets.load_dataset` reading them back (by directory + config, and by data_files)."""

from __future__ import annotations

import io
import random

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from builders.card import write_card
from builders.writer import ROW_GROUP_SIZE, plan_shards, shard_name, write_shard
from fdrd.schema import record_id


def plan_reference(sizes: list[int], target: int) -> list[tuple[int, int]]:
    """Greedy cut: start a new shard when adding the next row would pass the target."""
    shards, current, total = [], [], 0
    for position, size in enumerate(sizes):
        if current and total + size > target:
            shards.append((current[0], current[-1] + 1))
            current, total = [], 0
        current.append(position)
        total += size
    if current:
        shards.append((current[0], current[-1] + 1))
    return shards or [(0, 0)]


def test_plan_shards_against_reference_including_edge_cases():
    rng = random.Random(7)
    cases = [[], [5], [100, 100], [150], [1] * 10] + [[rng.randrange(1, 120) for _ in range(rng.randrange(0, 60))] for _ in range(200)]
    for sizes in cases:
        plans = plan_shards("train", sizes, target_bytes=100)
        assert [(p.start, p.stop) for p in plans] == plan_reference(sizes, 100)
        assert all(p.count == len(plans) and p.index == k for k, p in enumerate(plans))
    assert shard_name("test", 2, 13) == "test-00002-of-00013.parquet"


def make_rows(domain: str, split: str, count: int) -> list[dict]:
    rows = []
    for k in range(count):
        image = Image.new("RGB", (8 + k % 3, 6), (k * 7 % 256, 10, 200))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG")
        caption = f"picture number {k}"
        rows.append(
            {
                "id": record_id(domain, f"{split}/{k}.jpg"),
                "domain": domain,
                "split": split,
                "category": f"class {k % 4}",
                "category_id": k % 4,
                "meta_category": "",
                "image": {"bytes": buffer.getvalue(), "path": None},
                "width": image.width,
                "height": image.height,
                "caption": caption,
                "attributes": [{"name": "count", "value": str(k), "char_start": 15, "char_end": 15 + len(str(k))}],
                "negatives": [],
                "source": {"dataset": "drawn", "original": f"{split}/{k}.jpg", "license": ""},
                "sha256": "",
                "phash": "",
            }
        )
    return rows


def test_shard_layout_row_groups_page_index_and_no_temp_files(tmp_path):
    path = tmp_path / "d" / shard_name("train", 0, 1)
    write_shard(path, make_rows("d", "train", 250))
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_rows == 250
    assert [parquet.metadata.row_group(k).num_rows for k in range(parquet.num_row_groups)] == [100, 100, 50]
    assert ROW_GROUP_SIZE == 100
    assert parquet.metadata.row_group(0).column(0).has_offset_index  # the page index
    assert b"huggingface" in parquet.schema_arrow.metadata
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_write_leaves_neither_shard_nor_temp_file(tmp_path, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    target = tmp_path / "d" / "train-00000-of-00001.parquet"
    with pytest.raises(OSError, match="No space"):
        write_shard(target, make_rows("d", "train", 3))
    assert list((tmp_path / "d").iterdir()) == []
    bad = make_rows("d", "train", 3)
    bad[1]["category_id"] = "not a number"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_shard(target, bad)
    assert not target.exists()


@pytest.fixture
def written(tmp_path):
    out = tmp_path / "out"
    counts = {"pets": {"train": 7, "test": 5}, "cars": {"train": 4, "val": 3, "test": 2}}
    for domain, splits in counts.items():
        for split, count in splits.items():
            rows = make_rows(domain, split, count)
            # Two shards for pets/train, to check that configs gather every shard.
            cuts = [(0, 3), (3, 7)] if (domain, split) == ("pets", "train") else [(0, count)]
            for k, (start, stop) in enumerate(cuts):
                write_shard(out / domain / shard_name(split, k, len(cuts)), rows[start:stop])
    write_card(out, counts, {"content_hash": "cafe"})
    return out, counts


def test_load_dataset_by_directory_config_and_split(written, tmp_path):
    out, counts = written
    cache = tmp_path / "hf-cache"
    test = datasets.load_dataset(str(out), "pets", split="test", cache_dir=str(cache))
    assert len(test) == 5
    first = test[0]
    assert isinstance(first["image"], Image.Image) and first["image"].size == (first["width"], first["height"])
    assert first["attributes"][0]["name"] == "count" and isinstance(first["category_id"], int)
    assert test.features["category_id"] == datasets.Value("int32")
    whole = datasets.load_dataset(str(out), "all", cache_dir=str(cache))
    assert {split: len(whole[split]) for split in whole} == {"train": 11, "val": 3, "test": 7}
    cars = datasets.load_dataset(str(out), "cars", cache_dir=str(cache))
    assert {split: len(cars[split]) for split in cars} == counts["cars"]
    assert len(datasets.load_dataset(str(out), "pets", split="train", cache_dir=str(cache))) == 7


def test_load_dataset_by_data_files_decodes_images(written, tmp_path):
    out, _ = written
    files = sorted(str(p) for p in (out / "pets").glob("train-*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "c"))
    assert len(loaded) == 7
    assert isinstance(loaded[0]["image"], Image.Image)
    assert isinstance(loaded.features["image"], datasets.Image)


def test_card_declares_configs_and_features(written):
    out, _ = written
    text = (out / "README.md").read_text()
    header = text.split("---")[1]
    for expected in ("config_name: pets", "config_name: all", "pets/train-*.parquet", "dtype: image", "num_examples: 7"):
        assert expected in header
    assert "cafe" in text


def test_card_leaves_out_domains_without_rows():
    from builders.card import card_text

    text = card_text({"pets": {"train": 2}, "empty": {}}, {"content_hash": "x"})
    assert "config_name: pets" in text and "config_name: empty" not in text and "empty/" not in text
    assert "configs" not in card_text({}, {}).split("---")[1]
