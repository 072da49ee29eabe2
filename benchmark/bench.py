"""`fdrd bench`: for each domain and seed, sample the few-shot training set, train the method (if it
trains), evaluate recall@K on the test split, and write one results file.

The model is loaded once per run; a method is built fresh per (domain, seed) after seeding every
generator, so runs are reproducible and independent of their order. Methods whose image side is
frozen and prompt-free share one feature cache for the whole run (every image is encoded once).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from benchmark.backbone import DEFAULT_MODEL
from benchmark.data import (
    TEST_SPLIT,
    TRAIN_SPLIT,
    SplitBatches,
    available_domains,
    check_data_dir,
    load_split,
    sample_few_shot,
)
from benchmark.feature_cache import FeatureCache
from benchmark.results import SCHEMA_NAME, SCHEMA_VERSION, result_path, write_result
from benchmark.train import evaluate, precision_for, seed_everything, train
from fdrd.errors import FdrdError

PACKAGES = ("fdrd", "torch", "transformers", "datasets", "tokenizers", "safetensors", "numpy", "pyarrow", "pillow")


@dataclass
class BenchOptions:
    method: str
    data: Path
    domains: list[str] | None = None  # None: every domain of the dataset
    model: str = DEFAULT_MODEL
    shots: int | None = 16  # per category; None: every training record
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    overrides: dict[str, str] = field(default_factory=dict)
    out: Path = Path("runs")
    device: str = "auto"
    resume: bool = False
    allow_fewer_shots: bool = False
    feature_cache_dir: Path | None = None
    eval_batch_size: int = 256


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise FdrdError(f"--device {name!r}: not a device ({error}); use auto, cpu or cuda") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FdrdError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def device_description(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "count": torch.cuda.device_count()}
    return {"type": device.type, "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state() -> dict[str, Any]:
    """The source tree's commit and whether it had uncommitted changes; nulls outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
            timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": bool(dirty)}


def run_bench(options: BenchOptions, console: Console | None = None) -> list[dict[str, Any]]:
    """Run every (domain, seed) of `options`; returns the results written, in run order."""
    from benchmark.backbone import ClipBackbone
    from benchmark.methods.base import get_method, resolve_config

    console = console or Console(quiet=True)
    method_cls = get_method(options.method)
    # CoOp-style schedules depend on the shots (the bench-ranking branch resolves them from the shots drawn).
    config = resolve_config(method_cls, options.overrides).for_shots(options.shots)
    if not options.seeds:
        raise FdrdError("--seeds: give at least one seed, e.g. --seeds 1,2,3")
    if options.eval_batch_size < 1:
        raise FdrdError(f"--eval-batch-size must be at least 1, got {options.eval_batch_size}")
    manifest = check_data_dir(options.data)
    known = available_domains(options.data)
    domains = options.domains or known
    unknown = [domain for domain in domains if domain not in known and domain != "all"]
    if unknown:
        raise FdrdError(f"{options.data}: no domain {', '.join(map(repr, unknown))}; available domains: {', '.join(known)}")
    device = resolve_device(options.device)
    precision = precision_for(device)
    backbone = ClipBackbone.from_pretrained(options.model, device=device)
    cache = FeatureCache(options.feature_cache_dir)
    versions, git, device_info = package_versions(), git_state(), device_description(device)

    results = []
    for domain in domains:
        test_split = load_split(options.data, domain, TEST_SPLIT)
        train_split = None
        for seed in options.seeds:
            seed_everything(seed)
            method = method_cls(backbone, config).to(device)
            trains = bool(method.trainable_parameters()) and config.epochs > 0
            cache_seconds = 0.0
            train_report = None
            train_batches = None
            if trains:
                if train_split is None:
                    train_split = load_split(options.data, domain, TRAIN_SPLIT)
                shots = sample_few_shot(
                    train_split, options.shots, seed, allow_fewer=options.allow_fewer_shots,
                    where=f"{options.data} domain {domain!r} split {TRAIN_SPLIT!r}",
                )
                began = time.perf_counter()
                features = _cached_features(method, shots, cache, device, precision, options, console, "train",
                                            training=True)
                cache_seconds += time.perf_counter() - began
                train_batches = SplitBatches(shots, method, features, training=True)
                checkpoint_dir = result_path(options.out, method.name, domain, seed).with_suffix(".ckpt")
                if not options.resume:
                    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a fresh run never mixes with an old one
                train_report = train(
                    method, train_batches, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                    resume=options.resume, fingerprint_extra={"shots": options.shots}, console=console,
                )
            began = time.perf_counter()
            test_features = _cached_features(method, test_split, cache, device, precision, options, console, "test")
            cache_seconds += time.perf_counter() - began
            test_batches = SplitBatches(test_split, method, test_features)
            eval_report = evaluate(
                method, test_batches, device=device, batch_size=options.eval_batch_size, console=console
            )
            result = {
                "schema": SCHEMA_NAME,
                "schema_version": SCHEMA_VERSION,
                "method": method.name,
                "method_variant": method.variant,
                "config": dataclasses.asdict(config),
                "model": {"id": backbone.model_id, "revision": backbone.revision},
                "dataset": {
                    "dir": str(Path(options.data).resolve()),
                    "content_hash": manifest.get("content_hash"),
                    "train_split": TRAIN_SPLIT if trains else None,
                    "train_records": len(train_batches) if train_batches is not None else 0,
                    "test_records": eval_report.records,
                },
                "domain": domain,
                "split": TEST_SPLIT,
                "shots": options.shots if trains else None,  # nothing was sampled for a method that does not train
                "seed": seed,
                "metrics": eval_report.metrics,
                "truncated_captions": {
                    "train": train_batches.truncated_count if train_batches is not None else 0,
                    "test": test_batches.truncated_count,
                },
                "timings": {
                    "train_seconds": train_report.seconds if train_report else 0.0,
                    "train_images_per_second": train_report.images_per_second if train_report else 0.0,
                    "eval_seconds": eval_report.seconds,
                    "eval_images_per_second": eval_report.images_per_second,
                    "feature_cache_seconds": cache_seconds,
                },
                "training": {
                    "epochs": train_report.epochs if train_report else 0,
                    "steps": train_report.steps if train_report else 0,
                    "loss_per_epoch": train_report.loss_per_epoch if train_report else [],
                    "resumed_from_epoch": train_report.resumed_from_epoch if train_report else None,
                    "precision": precision,
                },
                "git": git,
                "versions": versions,
                "device": device_info,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            path = write_result(options.out, result)
            console.print(
                f"{method.name} {domain} seed {seed}: mean R@1 "
                f"{(result['metrics']['i2t_r1'] + result['metrics']['t2i_r1']) / 2:.1f}  -> {path}",
                highlight=False,
            )
            results.append(result)
    return results


def _cached_features(method, split, cache, device, precision, options, console, what, training=False):
    # Training images may be augmented (then no cache applies); evaluation images never are.
    if not (method.uses_feature_cache if training else method.frozen_prompt_free_images):
        return None
    from benchmark.train import progress_bar

    with progress_bar(console) as progress:
        return cache.features(
            method, split, device=device, batch_size=options.eval_batch_size, precision=precision,
            progress=progress, description=f"{what} image features",
        )
