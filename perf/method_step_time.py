"""Training-step and evaluation time of every method on one model, in one process, and what each method's
`quick` preset then costs per domain (the figures that size the presets of the offline demo).

Each method trains through the real trainer and batches (`SplitBatches(..., training=True)`: augmentation,
DCAR's negatives and teacher features; the feature cache where `uses_feature_cache` allows it) for a few
steps at its own batch size; methods are timed in turn and the whole round is repeated, best round kept,
so machine noise hits all alike. Ratios are to CoOp's step (the cached baseline).

    .venv/bin/python perf/method_step_time.py --data DIR [--model DIR] [--domain D] [--shots 16] [--steps 8]

The default model is an untrained tiny CLIP of `fdrd pretrain`'s default size (64 px, patch 8, width 64,
2 + 2 layers, projection 64); speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch

from benchmark.backbone import ClipBackbone
from benchmark.data import SplitBatches, available_domains, load_split, sample_few_shot
from benchmark.evaluation import encode_split
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import available_methods, resolve_run
from benchmark.train import seed_everything, train

CPU = torch.device("cpu")


def step_seconds(name: str, backbone, split, steps: int, cache: FeatureCache) -> tuple[float, int]:
    """(seconds per optimizer step, batch size) of `name` on the first steps x batch records of `split`."""
    spec = resolve_run(name)
    config = dataclasses.replace(spec.config.for_shots(16), epochs=1, warmup_epochs=0)
    seed_everything(0)
    method = spec.method_cls(backbone, config)
    subset = split.select(range(min(len(split), steps * config.batch_size)))
    features = cache.features(method, subset, device=CPU, batch_size=64, precision="fp32") \
        if method.uses_feature_cache else None
    batches = SplitBatches(subset, method, features, training=True)
    began = time.perf_counter()
    report = train(method, batches, seed=0, device=CPU)
    return (time.perf_counter() - began) / max(report.steps, 1), config.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a built FDRD directory")
    parser.add_argument("--model", default=None, help="CLIP folder or Hub id; default: a tiny CLIP built here")
    parser.add_argument("--domain", default=None)
    parser.add_argument("--shots", type=int, default=16, help="shots per category of the run being sized")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps timed per method and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    domain = args.domain or available_domains(args.data)[0]
    train_split = load_split(args.data, domain, "train")
    test_split = load_split(args.data, domain, "test")
    model = args.model
    if model is None:
        from benchmark.tiny import TinyClipSpec, save_tiny_clip

        model = str(save_tiny_clip(tempfile.mkdtemp(prefix="fdrd-perf-clip-"), TinyClipSpec(), train_split["caption"]))
    backbone = ClipBackbone.from_pretrained(model)
    shots = sample_few_shot(train_split, args.shots, seed=1, allow_fewer=True)
    trained = [name for name in available_methods() if name != "zeroshot"]
    cache = FeatureCache()

    best: dict[str, float] = {}
    batch_sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for name in trained:
            seconds, batch_sizes[name] = step_seconds(name, backbone, shots, args.steps, cache)
            best[name] = min(best.get(name, math.inf), seconds)
    evaluation: dict[str, float] = {}
    for name in ["zeroshot", *trained]:
        spec = resolve_run(name)
        seed_everything(0)
        method = spec.method_cls(backbone, spec.config)
        began = time.perf_counter()
        encode_split(method, SplitBatches(test_split, method), device=CPU, batch_size=256)
        evaluation[name] = time.perf_counter() - began

    print(f"domain {domain}: {len(shots)} training records ({args.shots} shots), {len(test_split)} test records, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'method':14} {'batch':>5} {'s/step':>8} {'x coop':>7} {'steps/ep':>8} {'s/epoch':>8} "
          f"{'quick ep':>8} {'quick train s':>13} {'eval s':>7} {'quick total s':>13}")
    for name in ["zeroshot", *trained]:
        quick = resolve_run(name, preset="quick").config.for_shots(args.shots)
        if name in best:
            steps = math.ceil(len(shots) / batch_sizes[name])
            epoch = best[name] * steps
            train_seconds = epoch * quick.epochs
            print(f"{name:14} {batch_sizes[name]:5d} {best[name]:8.3f} {best[name] / best['coop']:7.2f} {steps:8d} "
                  f"{epoch:8.1f} {quick.epochs:8d} {train_seconds:13.1f} {evaluation[name]:7.1f} "
                  f"{train_seconds + evaluation[name]:13.1f}")
        else:
            print(f"{name:14} {'-':>5} {'-':>8} {'-':>7} {'-':>8} {'-':>8} {'-':>8} {0.0:13.1f} "
                  f"{evaluation[name]:7.1f} {evaluation[name]:13.1f}")


if __name__ == "__main__":
    main()
