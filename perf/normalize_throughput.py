"""Normalize+write throughput of `fdrd build` against a bare PIL loop, measured in one run.

The bare loop is the least any builder must do: open -> exif_transpose -> resize -> JPEG encode,
one process, nothing written. The build does that plus decode checks, hashes (sha256, pixels,
phash), staging, template category captions, dedup, Parquet shards, card and manifest. Both read the same photo-sized JPEGs
drawn here. Prints images/s, the overhead of the build with 1 worker over the bare loop, the
speedup of 2 workers over 1 next to the speedup the bare loop itself gets from 2 processes (the
ceiling the machine offers at that moment), peak memory, and the load average.

    .venv/bin/python perf/normalize_throughput.py [--images 240] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console

from builders.normalize import NormalizeOptions, target_size
from builders.pipeline import BuildOptions, CaptionSettings, build


def draw_photos(root: Path, count: int, size: tuple[int, int] = (1024, 768)) -> list[Path]:
    """Photo-like JPEGs (smooth gradients plus sensor-like noise, so they compress like photos),
    every fifth one stored sideways with an EXIF orientation, in image-folder layout."""
    rng = np.random.default_rng(0)
    paths = []
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    for k in range(count):
        base = np.stack([(xs * (k % 7 + 1) + ys * (k % 5 + 1)) % 256 for _ in range(3)], axis=-1)
        noise = rng.normal(0, 12, base.shape)
        pixels = np.clip(base * rng.uniform(0.5, 1.0, 3) + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        folder = root / f"class_{k % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"photo_{k:05d}.jpg"
        if k % 5 == 0:
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=90, exif=exif.tobytes())
        else:
            image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers are joined at the end
    of a build): unlike wall time, it barely moves when other programs share the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare_loop(paths: list[Path], short_side: int, quality: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), cpu_seconds()
    for path in paths:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image = image.resize(target_size(image.width, image.height, short_side), Image.Resampling.LANCZOS)
        image.save(io.BytesIO(), "JPEG", quality=quality)
    return time.perf_counter() - start, cpu_seconds() - cpu


def _bare_half(paths: list[Path], short_side: int, quality: int) -> None:
    bare_loop(paths, short_side, quality)


def bare_loop_two_processes(paths: list[Path], short_side: int, quality: int) -> tuple[float, float]:
    """The bare loop split over two processes: what this machine gives two CPU-bound processes
    at this moment (a VM's two vCPUs, shared, may give much less than 2x)."""
    context = multiprocessing.get_context("fork")
    start, cpu = time.perf_counter(), cpu_seconds()
    processes = [context.Process(target=_bare_half, args=(paths[k::2], short_side, quality)) for k in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.perf_counter() - start, cpu_seconds() - cpu


def timed_build(root: Path, out: Path, workers: int, normalize: NormalizeOptions) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    options = BuildOptions(
        out=out, source="imagefolder", data_root=root, workers=workers, normalize=normalize,
        # Template category captions: rows need caption text, and this captioner costs little next to images.
        captions=CaptionSettings(captioner="template"),
    )
    start, cpu = time.perf_counter(), cpu_seconds()
    build(options, console=Console(quiet=True))
    return time.perf_counter() - start, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for every measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fdrd-perf-"))
    try:
        root = work / "photos"
        paths = draw_photos(root, args.images)
        options = NormalizeOptions()
        no_draft = NormalizeOptions(jpeg_draft=False)
        load_before = os.getloadavg()
        times: dict[str, list[tuple[float, float]]] = {
            "bare": [], "bare2": [], "build1": [], "build1_nodraft": [], "build2": []
        }
        for _ in range(args.repeats):  # interleaved, so that load changes hit every variant alike
            times["bare"].append(bare_loop(paths, options.short_side, options.jpeg_quality))
            times["bare2"].append(bare_loop_two_processes(paths, options.short_side, options.jpeg_quality))
            times["build1"].append(timed_build(root, work / "out", 1, options))
            times["build1_nodraft"].append(timed_build(root, work / "out", 1, no_draft))
            times["build2"].append(timed_build(root, work / "out", 2, options))
        best = {name: min(wall for wall, _ in values) for name, values in times.items()}
        cpu = {name: min(c for _, c in values) for name, values in times.items()}
        n = len(paths)
        print(f"images: {n} JPEGs 1024x768 (every 5th EXIF-rotated) -> short side {options.short_side}, q{options.jpeg_quality}")
        print(f"cores: {os.cpu_count()}, load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
        for name, label in (
            ("bare", "bare PIL loop (1 process)"),
            ("bare2", "bare PIL loop (2 processes)"),
            ("build1", "fdrd build, 1 worker"),
            ("build1_nodraft", "fdrd build, 1 worker, JPEG draft off"),
            ("build2", "fdrd build, 2 workers"),
        ):
            print(
                f"{label:<40} {n / best[name]:8.1f} images/s   (best of {args.repeats}: {best[name]:.2f} s wall, "
                f"{cpu[name]:.2f} s CPU)"
            )
        print(f"overhead, 1 worker vs bare loop:            {best['build1'] / best['bare'] - 1:+.1%}  (target <= +25%)")
        print(f"overhead, 1 worker without draft vs bare:   {best['build1_nodraft'] / best['bare'] - 1:+.1%}")
        print(
            f"same in CPU time (robust to load):          {cpu['build1'] / cpu['bare'] - 1:+.1%} with draft, "
            f"{cpu['build1_nodraft'] / cpu['bare'] - 1:+.1%} without"
        )
        print(f"CPU time, 2 workers vs 1 (extra work):      {cpu['build2'] / cpu['build1'] - 1:+.1%}")
        print(f"speedup, 2 workers vs 1:                    {best['build1'] / best['build2']:.2f}x  (target >= 1.8x)")
        print(f"machine's own 2-process speedup (bare loop): {best['bare'] / best['bare2']:.2f}x  (the ceiling right now)")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak memory: main process {own:.0f} MiB, largest worker {children:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
