"""Training augmentation: torchvision's random resized crop (checked against properties and hand-computed
boxes), flips, the checkpoint's own normalisation, and when batches are augmented (stable across processes)."""

from __future__ import annotations

import hashlib
import math
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.augment import augment_image, normalized_pixels, random_resized_crop_box
from benchmark.data import SplitBatches
from benchmark.methods.base import resolve_run

METAS = {"bellflower": ["ring bellflower", "dot bellflower"], "prism": ["three prism", "four prism"]}


class Scripted(random.Random):
    """A generator whose uniform/randint/random return scripted values (and counts the calls)."""

    def __init__(self, uniforms=(), randint_at="low", coin=0.9):
        super().__init__(0)
        self.uniforms, self.randint_at, self.coin, self.uniform_calls = list(uniforms), randint_at, coin, 0

    def uniform(self, a, b):
        self.uniform_calls += 1
        return self.uniforms.pop(0) if self.uniforms else b

    def randint(self, a, b):
        return a if self.randint_at == "low" else b

    def random(self):
        return self.coin


# ------------------------------------------------------------------ the crop box
@pytest.mark.parametrize("size", [(64, 64), (200, 90), (37, 120), (500, 333)])
def test_boxes_stay_inside_and_respect_scale_and_ratio(size):
    width, height = size
    fractions, ratios = [], []
    for seed in range(400):
        top, left, crop_h, crop_w = random_resized_crop_box(width, height, random.Random(seed))
        assert 0 <= top and 0 <= left and top + crop_h <= height and left + crop_w <= width and crop_h > 0 < crop_w
        fractions.append(crop_w * crop_h / (width * height))
        ratios.append(crop_w / crop_h)
        # Rounding each side by at most 1/2 pixel bounds how far area and ratio can leave their ranges.
        slack_area = (crop_w + crop_h + 1) / (2 * width * height)
        assert 0.08 - slack_area <= fractions[-1] <= 1
        assert (crop_w - 0.5) / (crop_h + 0.5) <= 4 / 3 + 1e-9 and (crop_w + 0.5) / (crop_h - 0.5) >= 3 / 4 - 1e-9
    # The range is used, not one corner of it: up to the largest box whose ratio fits inside this image.
    aspect = width / height
    largest = 1.0 if 3 / 4 <= aspect <= 4 / 3 else (4 / 3) / aspect if aspect > 4 / 3 else aspect / (3 / 4)
    assert min(fractions) < 0.15 and max(fractions) > 0.75 * largest
    assert min(ratios) < 0.85 and max(ratios) > 1.2


@pytest.mark.parametrize(
    ("size", "box"),
    [((200, 100), (0, 33, 100, 133)),   # too wide: height kept, width = round(100 * 4/3), centred
     ((100, 300), (83, 0, 133, 100)),   # too tall: width kept, height = round(100 / (3/4)), centred
     ((50, 60), (0, 0, 60, 50))],       # ratio inside the range: the whole image
)
def test_after_ten_failed_tries_the_centre_crop(size, box):
    rng = Scripted(uniforms=[5.0, 0.0] * 10)  # an area 5x the image never fits
    assert random_resized_crop_box(*size, rng) == box
    assert rng.uniform_calls == 20  # 10 tries, each drawing a scale and a log-ratio


def test_a_fitting_try_is_taken_as_torchvision_computes_it():
    # scale 0.25 and log-ratio log(4/3) on 120 x 90: w = round(sqrt(2700 * 4/3)) = 60, h = round(sqrt(2700 * 3/4)) = 45.
    rng = Scripted(uniforms=[0.25, math.log(4 / 3)], randint_at="high")
    assert random_resized_crop_box(120, 90, rng) == (90 - 45, 120 - 60, 45, 60)


# ------------------------------------------------------------------ pixels
def quadrants(size):
    colours = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 0)}
    array = np.zeros((size, size, 3), dtype=np.uint8)
    half = size // 2
    for (row, col), colour in colours.items():
        array[row * half : (row + 1) * half, col * half : (col + 1) * half] = colour
    return Image.fromarray(array), colours


def test_the_view_is_the_cropped_region_resized_and_maybe_flipped():
    image, colours = quadrants(64)
    # A quarter of the area, square, at the top-left corner: the red quadrant, resized to 32 px.
    view = np.asarray(augment_image(image, 32, Scripted(uniforms=[0.25, 0.0], randint_at="low", coin=0.9)))
    assert view.shape == (32, 32, 3) and (view == colours[(0, 0)]).all()
    # The whole image, flipped (the coin is under 1/2): left and right swap, top and bottom do not.
    flipped = np.asarray(augment_image(image, 64, Scripted(uniforms=[1.0, 0.0], coin=0.1)))
    assert (flipped[:32, :32] == colours[(0, 1)]).all() and (flipped[32:, 32:] == colours[(1, 0)]).all()
    assert np.array_equal(np.asarray(augment_image(image, 64, Scripted(uniforms=[1.0, 0.0], coin=0.9))),
                          np.asarray(image))


def test_flips_half_the_time():
    image, _ = quadrants(16)
    flips = sum(np.asarray(augment_image(image, 16, Scripted(uniforms=[1.0, 0.0], coin=random.Random(s).random())))
                [0, 0, 1] == 255 for s in range(2000))  # green top-left: flipped
    assert 900 < flips < 1100


def test_normalisation_is_the_checkpoints_own(tiny_backbone):
    size = tiny_backbone.image_size
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(3)]
    # An image already at the input size, cropped whole and not flipped, must come out as the processor makes it.
    views = [augment_image(image, size, Scripted(uniforms=[1.0, 0.0], coin=0.9)) for image in images]
    torch.testing.assert_close(normalized_pixels(views, tiny_backbone.image_processor), tiny_backbone.preprocess(images),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------ which batches are augmented
def method(backbone, name, **overrides):
    spec = resolve_run(name, overrides)
    torch.manual_seed(0)
    return spec.method_cls(backbone, spec.config)


def test_only_training_batches_of_augmenting_methods_are_augmented(tiny_backbone, make_toy_split):
    split = make_toy_split(METAS, per_category=2)
    rows = [0, 3, 5]
    plain = tiny_backbone.preprocess([split[i]["image"] for i in rows])
    maple = method(tiny_backbone, "maple")
    torch.manual_seed(0)
    augmented = SplitBatches(split, maple, training=True).batch(rows)["pixel_values"]
    assert augmented.shape == plain.shape and not torch.allclose(augmented, plain)
    assert torch.equal(SplitBatches(split, maple).batch(rows)["pixel_values"], plain)  # evaluation: never
    # CoOp departs from its recipe (no augmentation, so the cache applies) unless told otherwise.
    coop = method(tiny_backbone, "coop")
    assert coop.config.augment is False and coop.uses_feature_cache
    assert torch.equal(SplitBatches(split, coop, training=True).batch(rows)["pixel_values"], plain)
    recipe = method(tiny_backbone, "coop", augment="true")
    assert not recipe.uses_feature_cache
    assert not torch.allclose(SplitBatches(split, recipe, training=True).batch(rows)["pixel_values"], plain)
    with pytest.raises(ValueError, match="cached features of the unaugmented images would be wrong"):
        SplitBatches(split, recipe, torch.zeros(len(split), tiny_backbone.embed_dim), training=True)


@pytest.mark.slow
def test_a_training_batch_is_the_same_in_another_process(tiny_clip_dir, tiny_backbone, make_toy_split, tmp_path):
    """Crops, flips and negatives come from torch's seeded generator through string-seeded streams, which
    Python's hash randomisation does not touch: a new process draws the same batch."""
    split = make_toy_split(METAS, per_category=2)
    split.save_to_disk(str(tmp_path / "split"))
    script = textwrap.dedent(f"""
        import hashlib, sys, datasets, torch
        from benchmark.backbone import ClipBackbone
        from benchmark.data import SplitBatches
        from benchmark.methods.base import resolve_run
        spec = resolve_run("dcar")
        torch.manual_seed(0)
        method = spec.method_cls(ClipBackbone.from_pretrained({str(tiny_clip_dir)!r}), spec.config)
        batches = SplitBatches(datasets.load_from_disk({str(tmp_path / "split")!r}), method, training=True)
        torch.manual_seed(7)
        batch = batches.batch([0, 3, 5, 6])
        digest = hashlib.sha256(batch["pixel_values"].numpy().tobytes())
        digest.update(repr(batch["negative_texts"]).encode())
        print(digest.hexdigest())
    """)
    # Another process with its own hash seed (this one's is random unless PYTHONHASHSEED was set).
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout.split()[-1]
    spec = resolve_run("dcar")
    torch.manual_seed(0)
    here = SplitBatches(split, spec.method_cls(tiny_backbone, spec.config), training=True)
    torch.manual_seed(7)
    batch = here.batch([0, 3, 5, 6])
    digest = hashlib.sha256(batch["pixel_values"].numpy().tobytes())
    digest.update(repr(batch["negative_texts"]).encode())
    assert digest.hexdigest() == other
