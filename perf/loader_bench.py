"""Uncached training epochs with 0 and N loader workers, in one process: CoOp with `augment=true` (every step
decodes, crops and preprocesses its images) and DCAR (the same, plus negatives drawn and tokenized). The
epochs alternate (0 workers, N workers, 0, ...) so that machine noise hits both alike; the best epoch time
of each is compared. The batch-building work alone (`SplitBatches.cpu_batch` over one epoch, in the main
process) is also timed: it is what the workers take off the main process, so with enough cores an epoch
can fall towards `epoch - batch building` (and on a GPU, where the model's share is small, to the GPU's time).

    .venv/bin/python perf/loader_bench.py --data DIR [--model DIR] [--domain D] [--workers 2] [--epochs 3]

On a 2-core CPU machine the workers compete with the model for the same cores (the main process's torch
threads included), so the ratio there is bounded by the cores, not by the pipeline. Both variants train to
bit-identical parameters (tested in tests/benchmark/test_loader.py); the script checks that too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from perf_models import vit_b32_shaped_clip

from benchmark.backbone import ClipBackbone
from benchmark.data import SplitBatches, available_domains, load_split, sample_few_shot
from benchmark.methods.base import resolve_run
from benchmark.train import epoch_order, seed_everything, train

METHODS = {"coop (uncached)": ("coop", {"augment": True}), "dcar": ("dcar", {})}


def one_epoch(name: str, overrides: dict, backbone, split, batch_size: int, workers: int):
    spec = resolve_run(name, {**overrides, "epochs": 1, "warmup_epochs": 0, "batch_size": batch_size})
    seed_everything(1)
    method = spec.method_cls(backbone, spec.config)
    batches = SplitBatches(split, method, training=True)
    batches.prepare(torch.device("cpu"))  # the teacher's features: once per run, not part of an epoch
    began = time.perf_counter()
    train(method, batches, seed=1, device=torch.device("cpu"), workers=workers)
    seconds = time.perf_counter() - began
    return seconds, [p.detach().clone() for p in method.trainable_parameters()], batches


def building_seconds(batches: SplitBatches, batch_size: int) -> float:
    order = epoch_order(1, 0, len(batches)).tolist()
    began = time.perf_counter()
    for start in range(0, len(order), batch_size):
        batches.cpu_batch(order[start : start + batch_size], "1:0")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a built FDRD directory")
    parser.add_argument("--model", default=None, help="CLIP folder; default: a tiny CLIP built here")
    parser.add_argument("--domain", default=None)
    parser.add_argument("--shots", type=int, default=0, help="0: every training record")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per variant")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    domain = args.domain or available_domains(args.data)[0]
    split = load_split(args.data, domain, "train")
    model = args.model
    if model is None:
        model = vit_b32_shaped_clip(split["caption"])
    backbone = ClipBackbone.from_pretrained(model)
    shots = sample_few_shot(split, args.shots or None, seed=1, allow_fewer=True)
    print(
        f"threads={torch.get_num_threads()} model={model} domain={domain} records={len(shots)} "
        f"batch={args.batch_size} image_size={backbone.image_size} workers={args.workers}"
    )
    print(
        f"{'method':<18} {'0 workers s':>12} {f'{args.workers} workers s':>12} {'speed-up':>9} {'building s':>11}"
    )
    for label, (name, overrides) in METHODS.items():
        best = {0: float("inf"), args.workers: float("inf")}
        parameters = {}
        for _ in range(args.epochs):
            for workers in (0, args.workers):
                seconds, parameters[workers], batches = one_epoch(
                    name, overrides, backbone, shots, args.batch_size, workers
                )
                best[workers] = min(best[workers], seconds)
        same = all(torch.equal(a, b) for a, b in zip(parameters[0], parameters[args.workers], strict=True))
        building = building_seconds(batches, args.batch_size)
        print(
            f"{label:<18} {best[0]:>12.2f} {best[args.workers]:>12.2f} {best[0] / best[args.workers]:>8.2f}x "
            f"{building:>11.2f}   bit-identical parameters: {same}"
        )


if __name__ == "__main__":
    main()
