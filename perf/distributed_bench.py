"""`fdrd bench --procs 2` against `--procs 1`: seconds per training epoch on CPU (gloo), for CoOp uncached
(`augment=true`: every step decodes and crops its images and runs both towers) and DCAR, in one run with the
two process counts alternating so that machine noise hits both alike (best epoch time of each compared).

It also measures the machine's own ceiling for two CPU-bound processes: the same fixed matrix-product work
done by one process with every core as threads, and split over two single-threaded processes. On a 2-core
machine `--procs 2` can at best match that ratio (both ranks share the cores a single process already uses
as threads), and less on a machine other jobs share.

    .venv/bin/python perf/distributed_bench.py --data DIR [--model DIR] [--domain D] [--shots 4] [--epochs 3]

Every run goes through the real command line (`python -m fdrd.cli bench ... --procs P --workers 0`; loader
workers are perf/loader_bench.py's subject) and the epoch time is the results file's
`timings.seconds_per_epoch` (training only). The default model is an untrained tiny CLIP built here with
ViT-B/32-like proportions scaled down (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perf_models import vit_b32_shaped_clip

METHODS = {
    "coop (uncached)": ["coop", "--set", "augment=true", "--set", "batch_size=32"],
    "dcar": ["dcar", "--set", "batch_size=32"],
}


def tiny_model(data: Path, domain: str) -> str:
    from benchmark.data import load_split

    return vit_b32_shaped_clip(load_split(data, domain, "train")["caption"])


def epoch_seconds(arguments: list[str], procs: int, args, model: str, domain: str) -> float:
    out = Path(tempfile.mkdtemp(prefix="fdrd-perf-dist-"))
    command = [
        sys.executable,
        "-m",
        "fdrd.cli",
        "bench",
        *arguments,
        "--data",
        str(args.data),
        "--model",
        model,
        "--domains",
        domain,
        "--shots",
        str(args.shots),
        "--allow-fewer-shots",
        "--seeds",
        "1",
        "--set",
        f"epochs={args.epochs}",
        "--set",
        "warmup_epochs=0",
        "--procs",
        str(procs),
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    (result,) = out.rglob("seed-1.json")
    return json.loads(result.read_text())["timings"]["seconds_per_epoch"]


def products(count: int, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(512, 512)
    began = time.perf_counter()
    for _ in range(count):
        a = torch.tanh(a @ a)
    return time.perf_counter() - began


def warm() -> None:
    import torch  # noqa: F401  (imported before the clock starts)


def ceiling(count: int, cpus: int) -> tuple[float, float]:
    """(one process with `cpus` threads, two single-threaded processes with half the work each): wall seconds."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=warm) as pool:
        pool.apply(products, (2, cpus))
        threads = pool.apply(products, (count, cpus))
    with context.Pool(2, initializer=warm) as pool:
        pool.starmap(products, [(2, 1), (2, 1)])
        began = time.perf_counter()
        pool.starmap(products, [(count // 2, 1), (count // 2, 1)], chunksize=1)
        processes = time.perf_counter() - began
    return threads, processes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a built FDRD directory")
    parser.add_argument("--model", default=None, help="CLIP folder; default: a tiny CLIP built here")
    parser.add_argument("--domain", default=None)
    parser.add_argument(
        "--shots", type=int, default=4, help="shots per category (fewer where a category has fewer)"
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per run (seconds_per_epoch is their mean)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per (method, process count)")
    parser.add_argument(
        "--products", type=int, default=400, help="512x512 products of the ceiling measurement"
    )
    args = parser.parse_args()

    from benchmark.data import available_domains
    from benchmark.distributed import available_cpus

    domain = args.domain or available_domains(args.data)[0]
    model = args.model or tiny_model(args.data, domain)
    cpus = available_cpus()
    with open("/proc/loadavg") if Path("/proc/loadavg").exists() else open(os.devnull) as handle:
        load = handle.read().split()[:3]
    print(
        f"cpus={cpus} load={' '.join(load) or 'n/a'} model={model} domain={domain} shots={args.shots} "
        f"epochs={args.epochs} repeats={args.repeats}"
    )
    threads, processes = ceiling(args.products, cpus)
    print(
        f"ceiling: {args.products} products in 1 process x {cpus} threads {threads:.2f} s, in 2 processes x 1 "
        f"thread {processes:.2f} s -> 2 processes {threads / processes:.2f}x"
    )
    print(f"{'method':<18} {'procs 1 s/epoch':>16} {'procs 2 s/epoch':>16} {'speed-up':>9}")
    for label, arguments in METHODS.items():
        best = {1: float("inf"), 2: float("inf")}
        for repeat in range(args.repeats):
            for procs in (1, 2) if repeat % 2 == 0 else (2, 1):
                best[procs] = min(best[procs], epoch_seconds(arguments, procs, args, model, domain))
        print(f"{label:<18} {best[1]:>16.2f} {best[2]:>16.2f} {best[1] / best[2]:>8.2f}x")


if __name__ == "__main__":
    main()
