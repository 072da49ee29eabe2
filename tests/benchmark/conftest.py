"""Fixtures for benchmark tests: a tiny untrained CLIP folder, and a tiny CLIP pretrained on synthetic FDRD."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
SHAPES = ("star", "flower", "leaf", "shell", "crystal", "kite")
PATTERNS = ("striped", "dotted", "plain", "checked")


def tiny_captions() -> list[str]:
    """Captions in the synthetic data's style, enough for a tokenizer to learn words and pieces."""
    return [
        f"a {size} {colour} {pattern} {shape} with {count} points on a {background} background"
        for (colour, shape, pattern), size, count, background in zip(
            itertools.product(COLOURS, SHAPES, PATTERNS),
            itertools.cycle(("small", "large", "medium")),
            itertools.cycle(("five", "six", "seven", "eight")),
            itertools.cycle(("grey", "dark", "light", "sandy", "blue")),
        )
    ]


@pytest.fixture(scope="session")
def caption_corpus() -> list[str]:
    return tiny_captions()


# Text, vision and projection widths all differ, so a crossed width (a text-width tensor where the vision
# width belongs) fails loudly instead of passing by coincidence.
TINY_SPEC = {"text_width": 32, "vision_width": 48, "embed_dim": 24}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """An untrained tiny CLIP (64 px, text width 32, vision width 48, projection 24, 2+2 layers) saved with
    save_pretrained; built in seconds."""
    from benchmark.tiny import TinyClipSpec, save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), TinyClipSpec(**TINY_SPEC), tiny_captions(), seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_clip_dir):
    from benchmark.backbone import ClipBackbone

    return ClipBackbone.from_pretrained(tiny_clip_dir)


# The test budget of pretraining: 100 AdamW steps on synthetic_fdrd's 288 pretrain pairs at 32 px (a quarter
# of the 64 px image tokens), text, vision and projection widths all different; cached in $FDRD_CACHE
# (default ~/.cache/fdrd) so later sessions reuse it.
TEST_PRETRAIN = {"steps": 100, "batch_size": 64, "lr": 2e-3, "warmup_steps": 10}
TEST_PRETRAIN_SPEC = {"image_size": 32, "text_width": 64, "vision_width": 96, "embed_dim": 80}


@pytest.fixture(scope="session")
def pretrained_tiny_clip(synthetic_fdrd) -> Path:
    """A tiny CLIP pretrained on synthetic_fdrd's pretrain split: zero-shot above chance, far from perfect.
    Its folder holds pretrain_report.json with the zero-shot test recall per domain."""
    from benchmark.pretrain import PretrainConfig, pretrained_tiny_clip
    from benchmark.tiny import TinyClipSpec

    return pretrained_tiny_clip(synthetic_fdrd, TinyClipSpec(**TEST_PRETRAIN_SPEC), PretrainConfig(**TEST_PRETRAIN), progress=False)


# Tiny configs shaped like the CLIP backbones prompt learners meet: ViT-B/32 and ViT-B/16 (equal depths,
# coarse or fine patches) and ViT-L/14 (more vision than text layers, patch 14). Text, vision and projection
# widths all differ in each.
SHAPED_SPECS = {
    "vit-b32-like": {"image_size": 64, "patch_size": 16, "text_width": 32, "vision_width": 48, "embed_dim": 24,
                     "text_layers": 3, "vision_layers": 3},
    "vit-b16-like": {"image_size": 64, "patch_size": 8, "text_width": 32, "vision_width": 48, "embed_dim": 24,
                     "text_layers": 3, "vision_layers": 3},
    "vit-l14-like": {"image_size": 56, "patch_size": 14, "text_width": 48, "vision_width": 64, "embed_dim": 40,
                     "text_layers": 2, "vision_layers": 4},
}


@pytest.fixture(scope="session", params=sorted(SHAPED_SPECS))
def shaped_backbone(request, tmp_path_factory):
    """A frozen tiny CLIP of each shape, saved with save_pretrained and loaded through the real path."""
    from benchmark.backbone import ClipBackbone
    from benchmark.tiny import TinyClipSpec, save_tiny_clip

    folder = tmp_path_factory.mktemp(request.param)
    save_tiny_clip(folder, TinyClipSpec(**SHAPED_SPECS[request.param]), tiny_captions(), seed=3)
    return ClipBackbone.from_pretrained(folder)


TOY_SIZES = ("small", "large", "medium")
TOY_COLOURS = ("red", "blue", "green", "orange", "purple")
TOY_BACKGROUNDS = ("dark", "sandy", "grey", "light")


def toy_record(index: int, category: str, category_id: int, meta: str, domain: str = "toy") -> dict:
    """One FDRD row: a drawn image and the caption "a <size> <colour> <category> on a <background> background"
    with its three attribute spans located in the caption."""
    from PIL import Image, ImageDraw

    size, colour = TOY_SIZES[index % 3], TOY_COLOURS[index % 5]
    background = TOY_BACKGROUNDS[index % 4]
    caption = f"a {size} {colour} {category} on a {background} background"
    attributes = []
    for name, value in (("size", size), ("colour", colour), ("background", background)):
        start = caption.index(f" {value} ") + 1
        attributes.append({"name": name, "value": value, "char_start": start, "char_end": start + len(value)})
    image = Image.new("RGB", (48, 40), (index * 37 % 256, index * 91 % 256, 120))
    ImageDraw.Draw(image).ellipse((4 + index % 9, 5, 30 + index % 13, 33), fill=(250, 240 - index, 10))
    return {
        "id": f"{domain}-{category_id:02d}-{index:03d}", "domain": domain, "split": "train", "category": category,
        "category_id": category_id, "meta_category": meta, "image": image, "width": 48, "height": 40,
        "caption": caption, "attributes": attributes, "negatives": [],
        "source": {"dataset": "test", "original": f"{index}.png", "license": "CC0"},
        "sha256": f"{index:064x}", "phash": "0" * 16,
    }


@pytest.fixture(scope="session")
def make_toy_split():
    """make_toy_split({meta: [categories]}, per_category) -> a datasets.Dataset with FDRD's features, the
    `negatives` column empty (`edit(rows)` may change the rows before the Dataset is made)."""
    import datasets

    from fdrd.schema import FEATURES

    def make(metas: dict[str, list[str]], per_category: int = 2, edit=None) -> datasets.Dataset:
        rows = []
        categories = sorted((category, meta) for meta, members in metas.items() for category in members)
        for category_id, (category, meta) in enumerate(categories):
            for _ in range(per_category):
                rows.append(toy_record(len(rows), category, category_id, meta))
        if edit is not None:
            edit(rows)
        return datasets.Dataset.from_list(rows, features=FEATURES)

    return make
