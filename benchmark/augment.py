"""Training-time image augmentation as CoOp and MaPLe train (Dassl): random resized crop + horizontal flip,
then the checkpoint's own normalisation.

torchvision cannot be installed beside the local CPU torch wheel, so `random_resized_crop_box` follows
torchvision's `RandomResizedCrop.get_params` step by step (area scale (0.08, 1), aspect ratio (3/4, 4/3)
drawn log-uniformly, 10 tries, then a centre crop clamped to the ratio range), and the crop is resized
with PIL's bicubic filter (Dassl's `INPUT.INTERPOLATION: bicubic` in both recipes). Every draw comes
from a `random.Random` the caller passes, one per image, so a view depends on its image's stream alone
(benchmark/data.py keys it by seed, epoch and record), not on the batch or the process that makes it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

# Dassl's defaults for `random_resized_crop` (INPUT.RRCROP_SCALE) and torchvision's ratio range.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
FLIP_PROBABILITY = 0.5


def random_resized_crop_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    tries: int = CROP_TRIES,
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a random crop, torchvision's algorithm."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = rng.randint(0, height - crop_h)
            left = rng.randint(0, width - crop_w)
            return top, left, crop_h, crop_w
    # No try fitted: the largest centred crop whose aspect ratio stays inside the range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w = width
        crop_h = int(round(crop_w / min(ratio)))
    elif in_ratio > max(ratio):
        crop_h = height
        crop_w = int(round(crop_h * max(ratio)))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def augment_image(image: Image.Image, size: int, rng: random.Random) -> Image.Image:
    """One training view: a random resized crop to size x size (bicubic), flipped with probability 1/2."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    top, left, crop_h, crop_w = random_resized_crop_box(image.width, image.height, rng)
    view = image.crop((left, top, left + crop_w, top + crop_h)).resize((size, size), Image.BICUBIC)
    if rng.random() < FLIP_PROBABILITY:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    return view


def normalized_pixels(views: Sequence[Image.Image], image_processor) -> torch.Tensor:
    """(B, 3, H, W) float pixels: rescaled and normalised with the checkpoint processor's own constants."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    rescale = float(getattr(image_processor, "rescale_factor", 1 / 255))
    arrays = np.stack([np.asarray(view, dtype=np.float32) for view in views])  # (B, H, W, 3)
    pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2) * rescale
    return (pixels - mean) / std


def augmented_pixels(images: Sequence[Image.Image], backbone, rngs: Sequence[random.Random]) -> torch.Tensor:
    """Training views of `images` (image k drawn from rngs[k]) at the model's input size, as the backbone's
    tower expects them."""
    size = backbone.image_size
    views = [augment_image(image, size, rng) for image, rng in zip(images, rngs, strict=True)]
    return normalized_pixels(views, backbone.image_processor)
