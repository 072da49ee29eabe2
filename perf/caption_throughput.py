"""Captioning throughput of the tiny offline VLM on CPU, batch 1 vs batch 16, measured in one run.

The model (builders/tiny_vlm.py: a LLaVA with 2-layer CLIP and Llama towers) is loaded once; each
setting captions the same drawn images into a fresh cache through `caption_batches`, the loop that
`caption_images` runs, so decode + preprocessing + generate + cache writes are all timed and model
loading is not. The tiny model's per-call overhead dominates, which is exactly what batching
amortises; a real VLM is compute-bound and gains less. The machine may be shared: the load
average is printed alongside.

    .venv/bin/python perf/caption_throughput.py [--images 64] [--max-new-tokens 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image
from rich.console import Console

from builders.captions.cache import CaptionCache
from builders.captions.vlm import Captioner, VLMOptions, caption_batches
from builders.tiny_vlm import build_tiny_vlm


def drawn(seed: int) -> tuple[str, bytes]:
    rng = random.Random(seed)
    image = Image.new("RGB", (96, 72), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return hashlib.sha256(buffer.getvalue()).hexdigest(), buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight loading bars would bury the figures
    console = Console()
    images = [drawn(i) for i in range(args.images)]
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        model = str(build_tiny_vlm(Path(scratch) / "tiny"))
        base = VLMOptions(model=model, prompt="describe the main object and the scene", device="cpu",
                          max_new_tokens=args.max_new_tokens)
        captioner = Captioner(base, "cpu")
        for batch_size in (1, 16):
            captioner.options = replace(base, batch_size=batch_size)
            best = 0.0
            for repeat in range(args.repeats):
                with CaptionCache(Path(scratch) / f"cache-{batch_size}-{repeat}.sqlite", "m", "k") as cache:
                    start = time.perf_counter()
                    caption_batches(captioner, images, cache, lambda n: None)
                    seconds = time.perf_counter() - start
                    assert len(cache) == args.images
                best = max(best, args.images / seconds)
            rates[batch_size] = best
            console.print(f"batch {batch_size:>2}: {best:8.1f} images/s (best of {args.repeats})")
    console.print(f"speedup batch 16 vs 1: {rates[16] / rates[1]:.1f}x  ({args.images} images, "
                  f"{args.max_new_tokens} new tokens, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
