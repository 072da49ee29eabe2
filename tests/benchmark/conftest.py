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


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """An untrained tiny CLIP (64 px, width 64, 2+2 layers) saved with save_pretrained; built in seconds."""
    from benchmark.tiny import TinyClipSpec, save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), TinyClipSpec(), tiny_captions(), seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_clip_dir):
    from benchmark.backbone import ClipBackbone

    return ClipBackbone.from_pretrained(tiny_clip_dir)


# The test budget of pretraining: 100 AdamW steps on synthetic_fdrd's 288 pretrain pairs at 32 px (a quarter
# of the 64 px image tokens), cached in $FDRD_CACHE (default ~/.cache/fdrd) so later sessions reuse it.
TEST_PRETRAIN = {"steps": 100, "batch_size": 64, "lr": 2e-3, "warmup_steps": 10}
TEST_PRETRAIN_SPEC = {"image_size": 32}


@pytest.fixture(scope="session")
def pretrained_tiny_clip(synthetic_fdrd) -> Path:
    """A tiny CLIP pretrained on synthetic_fdrd's pretrain split: zero-shot above chance, far from perfect.
    Its folder holds pretrain_report.json with the zero-shot test recall per domain."""
    from benchmark.pretrain import PretrainConfig, pretrained_tiny_clip
    from benchmark.tiny import TinyClipSpec

    return pretrained_tiny_clip(synthetic_fdrd, TinyClipSpec(**TEST_PRETRAIN_SPEC), PretrainConfig(**TEST_PRETRAIN), progress=False)
