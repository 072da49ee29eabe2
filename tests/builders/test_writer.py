"""Shards and the dataset card: names, row groups, page index, atomic writes, and the real
`datasets.load_dataset` reading them back (by directory + config, and by data_files)."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from builders.card import card_text, write_card
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
    shards = []
    for domain, splits in counts.items():
        for split, count in splits.items():
            rows = make_rows(domain, split, count)
            # Two shards for pets/train, to check that configs gather every shard.
            cuts = [(0, 3), (3, 7)] if (domain, split) == ("pets", "train") else [(0, count)]
            for k, (start, stop) in enumerate(cuts):
                path = out / domain / shard_name(split, k, len(cuts))
                arrow_bytes = write_shard(path, rows[start:stop])
                shards.append({"path": f"{domain}/{path.name}", "domain": domain, "split": split,
                               "rows": stop - start, "bytes": path.stat().st_size, "num_bytes": arrow_bytes})
    manifest = {"content_hash": "cafe", "rows": 21, "shards": shards, "failures": [],
                "domains": {"pets": {"licenses": ["CC BY-SA 4.0 (Oxford-IIIT Pet)"]}, "cars": {"licenses": []}}}
    write_card(out, counts, manifest)
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


def test_card_says_which_rule_made_each_domains_groups():
    manifest = {"domains": {
        "oxford_pets": {"meta_categories": {"rule": "dataset hierarchy", "source": "Oxford-IIIT Pet species"}},
        "shoes": {"meta_categories": {"rule": "spelling similarity", "source": "text similarity"}},
        "old": {},
    }}
    text = card_text({"oxford_pets": {"test": 1}, "shoes": {"test": 1}}, manifest)
    assert "## Meta-categories" in text
    assert "- oxford_pets: dataset hierarchy (Oxford-IIIT Pet species)\n" in text
    assert "- shoes: spelling similarity (text similarity); these groups follow spelling, not meaning" in text
    assert "- old" not in text
    assert "## Meta-categories" not in card_text({"x": {"test": 1}}, {"domains": {"x": {}}})


def test_card_leaves_out_domains_without_rows():
    text = card_text({"pets": {"train": 2}, "empty": {}, "none": {"test": 0}}, {"content_hash": "x"})
    assert "config_name: pets" in text and "config_name: empty" not in text and "empty/" not in text
    assert "none/" not in text
    empty = card_text({}, {})
    assert "configs" not in empty.split("---")[1] and "made no rows" in empty


def hub_card_problems(text: str, directory) -> list[str]:
    """What the Hub and `datasets` check in a dataset card's metadata, offline: the YAML parses into
    DatasetCardData and survives a round trip; the licence `other` comes with a slug `license_name`
    and a `license_link` to a file in the folder; task, size and language ids are known ones (the
    lists `datasets` ships); configs are valid with one default; every dataset_info parses."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs, known_task_ids
    from huggingface_hub import DatasetCard, DatasetCardData

    resources = Path(datasets.__file__).parent / "utils" / "resources"
    card = DatasetCard(text)
    data = card.data.to_dict()
    problems = []
    if DatasetCardData(**data).to_dict() != data or DatasetCard(str(card)).data.to_dict() != data:
        problems.append("metadata does not survive a round trip")
    if data.get("license") == "other":
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(data.get("license_name", ""))):
            problems.append(f"license other without a slug license_name: {data.get('license_name')!r}")
        link = str(data.get("license_link", ""))
        if not (link.startswith("https://") or (link and (Path(directory) / link).is_file())):
            problems.append(f"license_link {link!r} is neither a URL nor a file of the folder")
    unknown_tasks = set(data.get("task_categories", [])) - set(known_task_ids)
    sizes = set(json.loads((resources / "size_categories.json").read_text()))
    languages = set(json.loads((resources / "languages.json").read_text()))
    problems += [f"unknown task {t}" for t in unknown_tasks]
    problems += [f"unknown size category {c}" for c in set(data.get("size_categories", [])) - sizes]
    problems += [f"unknown language {c}" for c in set(data.get("language", [])) - languages]
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    if configs and configs.get_default_config_name() is None:
        problems.append("no default config")
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    if set(infos) != set(configs):
        problems.append(f"dataset_info configs {sorted(infos)} differ from configs {sorted(configs)}")
    return problems


def test_card_passes_the_hubs_metadata_checks(written, tmp_path):
    out, _ = written
    text = (out / "README.md").read_text()
    assert hub_card_problems(text, out) == []
    assert "CC BY-SA 4.0 (Oxford-IIIT Pet)" in (out / "LICENSE.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    write_card(empty, {}, {"rows": 0, "domains": {}})
    assert hub_card_problems((empty / "README.md").read_text(), empty) == []
    # The checks do fail: a licence `other` without its name and link is refused.
    bare = text.replace("license_name: fdrd-source-licenses\n", "").replace("license_link: LICENSE.md\n", "")
    assert len(hub_card_problems(bare, out)) == 2


def test_load_dataset_without_a_config_name_loads_every_domain(written, tmp_path):
    out, counts = written
    whole = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {split: len(whole[split]) for split in whole} == {"train": 11, "val": 3, "test": 7}


def test_card_sizes_are_the_real_ones(written, tmp_path):
    out, counts = written
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    infos = {info["config_name"]: info for info in header["dataset_info"]}
    for config in ("pets", "all"):
        loaded = datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "c"))
        splits = {s["name"]: s for s in infos[config]["splits"]}
        for split in loaded:
            # The Arrow size of the split's rows, as `datasets` holds them once loaded.
            assert splits[split]["num_bytes"] == loaded[split].data.nbytes > 0
        assert infos[config]["dataset_size"] == sum(s["num_bytes"] for s in splits.values())
    files = [p for p in out.glob("pets/*.parquet")]
    assert infos["pets"]["download_size"] == sum(p.stat().st_size for p in files)


def test_shard_metadata_reads_as_fdrd_features_without_the_list_type(tmp_path):
    """datasets 3.x knows no `List` feature type: the shards spell lists the older way, which reads
    back as the same features in today's `datasets`."""
    from fdrd.schema import FEATURES

    path = tmp_path / "d" / shard_name("train", 0, 1)
    write_shard(path, make_rows("d", "train", 2))
    schema = pq.read_schema(path)
    assert b'"List"' not in schema.metadata[b"huggingface"]
    assert datasets.Features.from_arrow_schema(schema) == FEATURES
