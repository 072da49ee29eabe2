"""CoOp and CLIP-Adapter epoch time with and without the frozen image feature cache, in one process.

Without the cache every step decodes its images, preprocesses them and runs the frozen image tower;
with it, the features are computed once (timed separately, it is paid once per image and run) and
steps only run the text side (CoOp: forward and backward through the text tower, which no cache can
remove; CLIP-Adapter: the frozen text forward). The image side alone is also timed, to show what the
cache removes. Both trainings use the same seed, few-shot set and config, and the
epochs alternate (uncached, cached, uncached, ...) so that machine noise hits both alike; the best
epoch time of each is compared.

    .venv/bin/python perf/feature_cache_bench.py --data DIR [--model DIR] [--domain D] [--epochs 3]

The default model builds an untrained tiny CLIP with ViT-B/32-like proportions scaled down (speed
does not depend on the weights); pass --model to time a real checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmark.backbone import ClipBackbone
from benchmark.data import SplitBatches, available_domains, load_split, sample_few_shot
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import get_method, resolve_config
from benchmark.train import seed_everything, train


def epoch_seconds(method, batches, seed: int, device: torch.device) -> float:
    began = time.perf_counter()
    train(method, batches, seed=seed, device=device)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a built FDRD directory")
    parser.add_argument("--model", default=None, help="CLIP folder or Hub id; default: a tiny CLIP built here")
    parser.add_argument("--domain", default=None)
    parser.add_argument("--shots", type=int, default=0, help="0: every training record")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    domain = args.domain or available_domains(args.data)[0]
    split = load_split(args.data, domain, "train")
    model = args.model
    if model is None:
        from benchmark.tiny import TinyClipSpec, save_tiny_clip

        spec = TinyClipSpec(image_size=224, patch_size=32, vision_width=256, vision_layers=6, text_width=256,
                            text_layers=6, heads=4, embed_dim=256)
        model = str(save_tiny_clip(tempfile.mkdtemp(prefix="fdrd-perf-clip-"), spec, split["caption"], seed=0))
    backbone = ClipBackbone.from_pretrained(model, device=device)
    shots = sample_few_shot(split, args.shots or None, seed=1, allow_fewer=True)
    print(
        f"device={device} threads={torch.get_num_threads()} model={model} domain={domain} "
        f"records={len(shots)} batch={args.batch_size} image_size={backbone.image_size}"
    )
    for name in ("coop", "clip_adapter"):
        method_cls = get_method(name)
        # One epoch per train() call, no warm-up: every timed epoch does the same work.
        config = resolve_config(method_cls, {"epochs": 1, "warmup_epochs": 0, "batch_size": args.batch_size})
        seed_everything(1)
        method = method_cls(backbone, config).to(device)
        began = time.perf_counter()
        features = FeatureCache().features(method, shots, device=device, batch_size=64, precision="fp32")
        cache_fill = time.perf_counter() - began
        cached = SplitBatches(shots, method, features)
        uncached = SplitBatches(shots, method)

        uncached_times, cached_times, pixel_side, cached_side = [], [], [], []
        for _ in range(args.epochs):
            uncached_times.append(epoch_seconds(method, uncached, 1, device))
            cached_times.append(epoch_seconds(method, cached, 1, device))
            pixel_side.append(image_side_seconds(method, uncached, args.batch_size, device))
            cached_side.append(image_side_seconds(method, cached, args.batch_size, device))
        best_uncached, best_cached = min(uncached_times), min(cached_times)
        print(f"[{name}] epoch without cache: best {best_uncached:.3f}s  (all: {_list(uncached_times)})")
        print(f"[{name}] epoch with cache:    best {best_cached:.3f}s  (all: {_list(cached_times)})")
        print(f"[{name}] one-off cache fill:  {cache_fill:.3f}s")
        print(f"[{name}] speed-up per epoch:  {best_uncached / best_cached:.2f}x")
        print(
            f"[{name}] image side per epoch (decode + preprocess + frozen tower vs cached rows): "
            f"{min(pixel_side):.3f}s vs {min(cached_side):.4f}s = {min(pixel_side) / min(cached_side):.0f}x; "
            f"share of the uncached epoch: {100 * min(pixel_side) / best_uncached:.0f}%"
        )


def image_side_seconds(method, batches: SplitBatches, batch_size: int, device: torch.device) -> float:
    """What one epoch spends producing image embeddings alone (no text side, no backward)."""
    began = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(batches), batch_size):
            indices = torch.arange(start, min(start + batch_size, len(batches)))
            batch = batches.batch(indices, device)
            method.image_embeddings(batch)
    return time.perf_counter() - began


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    main()
