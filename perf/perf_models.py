"""Models the perf scripts share (run them as `python perf/<script>.py`, which puts perf/ on the path)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable


def vit_b32_shaped_clip(captions: Iterable[str]) -> str:
    """An untrained CLIP with ViT-B/32's input geometry (224 px, 32 px patches) at a quarter of its width
    and half its depth: big enough that an uncached epoch's image side costs what it costs on real data
    (decoding 224 px crops, a vision tower of real sequence length), small enough for a 2-core CPU.
    Returns the folder it was written to."""
    from benchmark.tiny import TinyClipSpec, save_tiny_clip

    spec = TinyClipSpec(image_size=224, patch_size=32, vision_width=256, vision_layers=6, text_width=256,
                        text_layers=6, heads=4, embed_dim=256)
    return str(save_tiny_clip(tempfile.mkdtemp(prefix="fdrd-perf-clip-"), spec, captions, seed=0))
