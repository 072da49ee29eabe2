"""Loading FDRD splits, few-shot sampling, batches, and the frozen image feature cache."""

from __future__ import annotations

import random
from collections import Counter

import datasets
import pytest
import torch
from PIL import Image, ImageDraw

from benchmark.data import SplitBatches, available_domains, few_shot_indices, load_split, sample_few_shot
from benchmark.feature_cache import FeatureCache, cache_key
from benchmark.methods.base import Method, MethodConfig, get_method, resolve_config
from fdrd.errors import FdrdError
from fdrd.schema import FEATURES


def drawn_image(index: int) -> Image.Image:
    image = Image.new("RGB", (48, 40), (index * 37 % 256, index * 91 % 256, 120))
    ImageDraw.Draw(image).ellipse((4 + index % 9, 5, 30 + index % 13, 33), fill=(250, 240 - index, 10))
    return image


def in_memory_split(counts: dict[str, int], domain: str = "toy") -> datasets.Dataset:
    """A `datasets.Dataset` with FDRD's features: `counts[category]` records per category."""
    rows = []
    for category_id, (category, count) in enumerate(sorted(counts.items())):
        for n in range(count):
            index = len(rows)
            rows.append(
                {
                    "id": f"{domain}-{category_id:02d}-{n:03d}", "domain": domain, "split": "train",
                    "category": category, "category_id": category_id, "meta_category": "things",
                    "image": drawn_image(index), "width": 48, "height": 40,
                    "caption": f"a picture of a {category} number {n}" + " with many words" * (n % 3),
                    "attributes": [], "negatives": [],
                    "source": {"dataset": "test", "original": f"{index}.png", "license": "CC0"},
                    "sha256": f"{index:064x}", "phash": "0" * 16,
                }
            )
    return datasets.Dataset.from_list(rows, features=FEATURES)


# ---------------------------------------------------------------- few-shot sampling
def test_few_shot_takes_k_per_category_sorted_and_seeded():
    categories = [f"c{i % 5}" for i in range(60)]
    ids = [f"r{i:03d}" for i in range(60)]
    picked = few_shot_indices(categories, ids, shots=4, seed=1)
    assert picked == sorted(picked)
    assert Counter(categories[i] for i in picked) == {f"c{k}": 4 for k in range(5)}
    assert picked == few_shot_indices(categories, ids, shots=4, seed=1)
    assert picked != few_shot_indices(categories, ids, shots=4, seed=2)


def test_few_shot_draw_does_not_depend_on_row_order():
    categories = [f"c{i % 3}" for i in range(30)]
    ids = [f"r{i:03d}" for i in range(30)]
    order = list(range(30))
    random.Random(0).shuffle(order)
    first = {ids[i] for i in few_shot_indices(categories, ids, shots=3, seed=5)}
    shuffled = few_shot_indices([categories[i] for i in order], [ids[i] for i in order], shots=3, seed=5)
    assert {ids[order[i]] for i in shuffled} == first


def test_too_few_shots_names_the_category_unless_allowed():
    categories = ["wren"] * 5 + ["kite"] * 2 + ["gull"] * 6
    ids = [f"r{i}" for i in range(len(categories))]
    with pytest.raises(FdrdError, match=r"1 category has fewer than 4 records \('kite' has 2\).*--allow-fewer-shots"):
        few_shot_indices(categories, ids, shots=4, seed=0)
    picked = few_shot_indices(categories, ids, shots=4, seed=0, allow_fewer=True)
    assert Counter(categories[i] for i in picked) == {"wren": 4, "kite": 2, "gull": 4}


def test_shots_none_takes_everything_and_zero_is_an_error():
    assert few_shot_indices(["a", "b", "a"], ["x", "y", "z"], shots=None, seed=0) == [0, 1, 2]
    with pytest.raises(FdrdError, match="at least 1"):
        few_shot_indices(["a"], ["x"], shots=0, seed=0)


def test_sample_few_shot_on_a_dataset():
    split = in_memory_split({"heron": 5, "ibis": 3})
    subset = sample_few_shot(split, shots=2, seed=3)
    assert Counter(subset["category"]) == {"heron": 2, "ibis": 2}


# ---------------------------------------------------------------- loading built directories
def test_load_split_and_clear_errors(synthetic_fdrd, tmp_path):
    domains = available_domains(synthetic_fdrd)
    assert domains and "all" not in domains
    test = load_split(synthetic_fdrd, domains[0], "test")
    assert len(test) > 0 and set(test["domain"]) == {domains[0]}
    with pytest.raises(FdrdError, match=r"no domain 'moon'; available domains: " + domains[0]):
        load_split(synthetic_fdrd, "moon", "test")
    with pytest.raises(FdrdError, match=r"has no split 'holdout'"):
        load_split(synthetic_fdrd, domains[0], "holdout")
    with pytest.raises(FdrdError, match="no such dataset directory"):
        load_split(tmp_path / "missing", domains[0], "test")
    with pytest.raises(FdrdError, match="no manifest.json"):
        load_split(tmp_path, domains[0], "test")


# ---------------------------------------------------------------- batches
@pytest.fixture(scope="module")
def coop(tiny_backbone):
    torch.manual_seed(0)
    method_cls = get_method("coop")
    return method_cls(tiny_backbone, resolve_config(method_cls, {"n_ctx": 60}))


def test_batches_tokenize_like_the_method_and_preprocess_like_the_backbone(coop):
    split = in_memory_split({"heron": 4, "ibis": 3})
    batches = SplitBatches(split, coop)
    indices = [5, 0, 3]
    batch = batches.batch(indices)
    # Reference: the method's tokenizer on just these captions, the backbone's preprocessing on just these images.
    expected = coop.tokenize([split[i]["caption"] for i in indices])
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    assert torch.equal(batch["pixel_values"], coop.backbone.preprocess([split[i]["image"] for i in indices]))
    assert batch["category_id"].tolist() == [split[i]["category_id"] for i in indices]
    assert batch["ids"] == [split[i]["id"] for i in indices]
    # 60 context tokens leave 17 for the caption: the long captions are cut and counted.
    assert batches.truncated_count == int(expected_truncated(coop, split["caption"]))
    assert batches.truncated_count > 0


def expected_truncated(method, captions):
    return method.tokenize(list(captions))["truncated"].sum()


# ---------------------------------------------------------------- feature cache
def test_cached_features_give_identical_embeddings(coop):
    split = in_memory_split({"heron": 3, "ibis": 4})
    cache = FeatureCache()
    features = cache.features(coop, split, device=torch.device("cpu"), batch_size=4, precision="fp32")
    cached = SplitBatches(split, coop, features)
    plain = SplitBatches(split, coop)
    with torch.inference_mode():
        for indices in ([0, 1, 2, 3], [4, 5, 6]):
            from_cache = coop.image_embeddings(cached.batch(indices))
            from_pixels = coop.image_embeddings(plain.batch(indices))
            assert torch.equal(from_cache, from_pixels)


def test_cache_encodes_each_image_once_and_round_trips_on_disk(coop, tmp_path):
    split = in_memory_split({"heron": 3, "ibis": 2})
    cache = FeatureCache(tmp_path / "cache")
    first = cache.features(coop, split, device=torch.device("cpu"), batch_size=2, precision="fp32")
    again = cache.features(coop, split.select([4, 1]), device=torch.device("cpu"), batch_size=2, precision="fp32")
    assert cache.encoded == 5
    assert torch.equal(again, first[[4, 1]])
    fresh = FeatureCache(tmp_path / "cache")
    from_disk = fresh.features(coop, split, device=torch.device("cpu"), batch_size=2, precision="fp32")
    assert fresh.encoded == 0 and torch.equal(from_disk, first)
    (file,) = (tmp_path / "cache").glob("*.safetensors")
    file.write_bytes(b"not a safetensors file")
    with pytest.raises(FdrdError, match="unreadable feature cache file"):
        FeatureCache(tmp_path / "cache").features(
            coop, split, device=torch.device("cpu"), batch_size=2, precision="fp32"
        )


def test_cache_key_names_model_revision_code_path_and_precision(coop, tiny_backbone):
    zeroshot_cls = get_method("zeroshot")
    zeroshot = zeroshot_cls(tiny_backbone, resolve_config(zeroshot_cls))
    # Both use the Method's own frozen image path: they share cached features.
    assert cache_key(coop, "fp32") == cache_key(zeroshot, "fp32")
    assert tiny_backbone.revision in cache_key(coop, "fp32")
    assert cache_key(coop, "fp32") != cache_key(coop, "bf16")


def test_cache_refuses_methods_with_a_prompted_image_side(tiny_backbone):
    class PromptedImages(Method):
        name = "prompted-images"
        frozen_prompt_free_images = False

    method = PromptedImages(tiny_backbone, MethodConfig())
    with pytest.raises(ValueError, match="cannot be cached"):
        FeatureCache().features(
            method, in_memory_split({"a": 1}), device=torch.device("cpu"), batch_size=1, precision="fp32"
        )
