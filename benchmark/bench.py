"""`fdrd bench`: for each configuration (a method, a named variant, or with --ablations every variant
of a family), domain and seed: sample the few-shot training set, train (if the configuration trains),
evaluate recall@K, its bootstrap intervals and hard-negative accuracy on the test split, and write one
results file (schema v2, benchmark/results.py) under the run label.

The model is loaded once per call; a method is built fresh per (domain, seed) after seeding every
generator, so runs are reproducible and independent of their order. Methods whose image side is
frozen and prompt-free share one feature cache for the whole call (every image is encoded once).

With --gpus N / --procs N (benchmark/distributed.py) this runs in every rank: the work of each step is split
(training, feature cache, evaluation), every rank holds the same results, and rank 0 alone prints, writes
checkpoints and writes results files.
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

from benchmark import collectives
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
from benchmark.distributed import LaunchOptions, Session, check_launch, worker_session
from benchmark.evaluation import evaluate, hard_negative_report, precision_for
from benchmark.feature_cache import FeatureCache
from benchmark.loader import default_workers
from benchmark.methods.base import RunSpec, config_notes, get_method, resolve_run
from benchmark.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, recall_intervals
from benchmark.metrics.recall import choose_backend
from benchmark.progress import progress_bar
from benchmark.results import (
    ITEM_INTERVALS,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    mean_recall,
    result_path,
    write_result,
)
from benchmark.train import seed_everything, train
from fdrd.errors import FdrdError

PACKAGES = ("fdrd", "torch", "transformers", "datasets", "tokenizers", "safetensors", "numpy", "pyarrow", "pillow")


@dataclass
class BenchOptions:
    method: str  # a method or a named variant (dcar-novisual)
    data: Path
    domains: list[str] | None = None  # None: every domain of the dataset
    model: str = DEFAULT_MODEL
    shots: int | None = 16  # per category; None: every training record
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    overrides: dict[str, str] = field(default_factory=dict)
    preset: str | None = None
    label: str | None = None  # names the configuration; default from resolve_run
    ablations: bool = False  # run every named variant of the method's family
    out: Path = Path("runs")
    device: str = "auto"
    resume: bool = False
    allow_fewer_shots: bool = False
    feature_cache_dir: Path | None = None
    eval_batch_size: int = 256
    recall_backend: str = "auto"
    workers: int | None = None  # loader worker processes per rank; None: benchmark.loader.default_workers
    launch: LaunchOptions = field(default_factory=LaunchOptions)  # --gpus/--procs and the rendezvous


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


def run_specs(options: BenchOptions) -> list[RunSpec]:
    """The configurations to run: NAME alone, or with --ablations every named variant of NAME's family."""
    if not options.ablations:
        return [resolve_run(options.method, options.overrides, options.preset, options.label)]
    method_cls = get_method(options.method)
    if not method_cls.named_variants:
        raise FdrdError(
            f"--ablations: method {method_cls.name} has no named variants (ablations); "
            f"run `fdrd bench {options.method}` without --ablations"
        )
    if options.label is not None:
        raise FdrdError("--label names one configuration but --ablations runs several (each labelled by its "
                        "variant); drop one of the two")
    return [resolve_run(variant, options.overrides, options.preset) for variant in method_cls.named_variants]


@dataclass
class RunContext:
    """What every (configuration, domain, seed) of one `fdrd bench` call shares."""

    options: BenchOptions
    backbone: Any
    device: torch.device
    precision: str
    cache: FeatureCache
    manifest: dict[str, Any]
    backend: str
    console: Console
    versions: dict[str, str]
    git: dict[str, Any]
    device_info: dict[str, Any]
    workers: int
    session: Session


def run_bench(options: BenchOptions, console: Console | None = None) -> list[dict[str, Any]]:
    """Run every (configuration, domain, seed) of `options`; returns the results written, in run order (on
    ranks other than 0 of a distributed run: an empty list, rank 0 writes)."""
    console = console or Console(quiet=True)
    if not options.seeds:
        raise FdrdError("--seeds: give at least one seed, e.g. --seeds 1,2,3")
    if options.eval_batch_size < 1:
        raise FdrdError(f"--eval-batch-size must be at least 1, got {options.eval_batch_size}")
    if options.workers is not None and options.workers < 0:
        raise FdrdError(f"--workers must be 0 (decode in the main process) or more, got {options.workers}")
    check_launch(options.launch, options.device)
    if options.launch.procs:
        device = torch.device("cpu")
    elif options.launch.gpus:
        device = torch.device("cuda")  # the session picks cuda:LOCAL_RANK
    else:
        device = resolve_device(options.device)
    with worker_session(options.launch, device) as session:
        return _run_bench(options, session, console if session.rank == 0 else Console(quiet=True))


def _run_bench(options: BenchOptions, session: Session, console: Console) -> list[dict[str, Any]]:
    from benchmark.backbone import ClipBackbone

    specs = run_specs(options)
    manifest = check_data_dir(options.data)
    known = available_domains(options.data)
    domains = options.domains or known
    unknown = [domain for domain in domains if domain not in known and domain != "all"]
    if unknown:
        raise FdrdError(f"{options.data}: no domain {', '.join(map(repr, unknown))}; available domains: {', '.join(known)}")
    device = session.device
    backend = choose_backend(options.recall_backend, device).name
    backbone = ClipBackbone.from_pretrained(options.model, device=device)
    trains = {spec.label: trains_anything(spec, backbone) for spec in specs}
    workers = options.workers if options.workers is not None else default_workers(session.local_world_size, device.type)
    for spec in specs:
        if trains[spec.label] and spec.config.batch_size < session.world_size:
            console.print(f"[yellow]warning:[/] {spec.label}: a batch of {spec.config.batch_size} records leaves "
                          f"{session.world_size - spec.config.batch_size} of {session.world_size} ranks idle at every "
                          "step (the batch size is global: it is the recipe's, whatever the number of ranks)")
    context = RunContext(
        options, backbone, device, precision_for(device), FeatureCache(options.feature_cache_dir), manifest,
        backend, console, package_versions(), git_state(), device_description(device), workers, session,
    )
    splits: dict[tuple[str, str], Any] = {}

    def split(domain: str, name: str):
        if (domain, name) not in splits:
            splits[domain, name] = load_split(options.data, domain, name)
        return splits[domain, name]

    results = []
    for spec in specs:
        for domain in domains:
            for seed in options.seeds:
                result = run_one(context, spec, trains[spec.label], domain, seed, split)
                if result is None:  # a rank other than 0: rank 0 writes
                    continue
                path = write_result(options.out, result)
                low, high = result["intervals"]["mean_recall"]
                console.print(
                    f"{spec.label} {domain} seed {seed}: mean recall {result['metrics']['mean_recall']:.1f} "
                    f"[{low:.1f}, {high:.1f}]  -> {path}",
                    highlight=False, markup=False, soft_wrap=True,  # the path stays on its line, as written
                )
                results.append(result)
    if not results and collectives.is_main():
        raise FdrdError("nothing was run; give at least one domain and seed")
    return results


def trains_anything(spec: RunSpec, backbone) -> bool:
    """Whether the configuration trains; a trainable method with epochs < 1 is refused before any work
    (it would write the untrained method's figures under a trained method's name)."""
    probe = spec.method_cls(backbone, spec.config)
    trainable = bool(probe.trainable_parameters())
    del probe
    if trainable and spec.config.epochs is not None and spec.config.epochs < 1:  # None: set by the shots drawn
        raise FdrdError(
            f"run {spec.label}: epochs={spec.config.epochs} trains nothing, but {spec.method_cls.name} has trainable "
            "parameters; use --set epochs=1 or more (zeroshot is the untrained baseline)"
        )
    return trainable


def run_one(
    context: RunContext, spec: RunSpec, trains: bool, domain: str, seed: int, split
) -> dict[str, Any] | None:
    """Sample, train (if the configuration trains) and evaluate one (configuration, domain, seed); the
    results record it makes (None on ranks other than 0, which share the work and write nothing)."""
    options, device = context.options, context.device
    config, shots, shots_record = spec.config, None, None
    if trains:
        shots = sample_few_shot(
            split(domain, TRAIN_SPLIT), options.shots, seed, allow_fewer=options.allow_fewer_shots,
            where=f"{options.data} domain {domain!r} split {TRAIN_SPLIT!r}",
        )
        if len(shots) == 0:
            raise FdrdError(f"{options.data} domain {domain!r} split {TRAIN_SPLIT!r} has no records to train on")
        shots_record = drawn_shots(shots["category"], options.shots, options.allow_fewer_shots)
        config = config.for_shots(shots_record["drawn_min"] if options.shots is not None else None)
    seed_everything(seed)
    method = spec.method_cls(context.backbone, config).to(device)
    cache_seconds, train_report, train_batches = 0.0, None, None
    if trains:
        began = time.perf_counter()
        features = cached_features(context, method, shots, "train") if method.uses_feature_cache else None
        cache_seconds += time.perf_counter() - began
        # Training mode: augmentation when the config asks, and what the method's training batches need
        # (e.g. DCAR's negatives and teacher features).
        train_batches = SplitBatches(shots, method, features, training=True)
        checkpoint_dir = result_path(options.out, spec.label, domain, seed).with_suffix(".ckpt")
        if not options.resume and collectives.is_main():
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a fresh run never mixes with an old one
        train_report = train(
            method, train_batches, seed=seed, device=device, checkpoint_dir=checkpoint_dir, resume=options.resume,
            fingerprint_extra={"run": run_description(spec), "shots": shots_record}, console=context.console,
            workers=context.workers,
        )
    test_split = split(domain, TEST_SPLIT)
    began = time.perf_counter()
    # Evaluation never augments, so a frozen prompt-free image side may use cached test features even
    # when training augmented (and so could not use the cache).
    test_features = cached_features(context, method, test_split, "test") if method.frozen_prompt_free_images else None
    cache_seconds += time.perf_counter() - began
    test_batches = SplitBatches(test_split, method, test_features)
    evaluation = evaluate(
        method, test_batches, device=device, batch_size=options.eval_batch_size, backend=context.backend,
        console=context.console, workers=context.workers,
    )
    hard_negatives = hard_negative_report(
        method, test_split["caption"], test_split["negatives"], evaluation.image_embeddings, device=device,
        batch_size=options.eval_batch_size, console=context.console,
    )
    if not collectives.is_main():
        return None
    intervals = recall_intervals([[(evaluation.image_ranks, evaluation.text_ranks)]], DEFAULT_RESAMPLES, DEFAULT_LEVEL)
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        **run_description(spec),
        "method_variant": method.variant,
        **method.result_fields(),
        "config": dataclasses.asdict(config),
        "config_notes": config_notes(config),
        "model": {"id": context.backbone.model_id, "revision": context.backbone.revision},
        "dataset": {
            "dir": str(Path(options.data).resolve()),
            "content_hash": context.manifest.get("content_hash"),
            # check_data_dir refuses shards that differ from the manifest (issue 9), so the hash is of what was read.
            "verified": True,
            "train_split": TRAIN_SPLIT if trains else None,
            "train_records": len(train_batches) if train_batches is not None else 0,
            "test_records": evaluation.records,
        },
        "domain": domain,
        "split": TEST_SPLIT,
        "seed": seed,
        "shots": shots_record,
        "metrics": {**evaluation.metrics, "mean_recall": mean_recall(evaluation.metrics)},
        "intervals": {
            "level": DEFAULT_LEVEL, "resamples": DEFAULT_RESAMPLES, "method": ITEM_INTERVALS,
            **{figure: list(bounds) for figure, bounds in intervals.items()},
        },
        "ranks": {"i2t": evaluation.image_ranks, "t2i": evaluation.text_ranks},
        "hard_negatives": hard_negatives,
        "recall_backend": evaluation.backend,
        "truncated_captions": {
            "train": train_batches.truncated_count if train_batches is not None else 0,
            "test": test_batches.truncated_count,
        },
        "timings": {
            "train_seconds": train_report.seconds if train_report else 0.0,
            "seconds_per_epoch": train_report.seconds_per_epoch if train_report else None,
            "train_images_per_second": train_report.images_per_second if train_report else 0.0,
            "eval_seconds": evaluation.seconds,
            "eval_images_per_second": evaluation.images_per_second,
            "feature_cache_seconds": cache_seconds,
        },
        "training": {
            "epochs": train_report.epochs if train_report else 0,
            "steps": train_report.steps if train_report else 0,
            "loss_per_epoch": train_report.loss_per_epoch if train_report else [],
            "resumed_from_epoch": train_report.resumed_from_epoch if train_report else None,
            "precision": context.precision,
            "augment": bool(config.augment) and trains,
            "feature_cache": method.uses_feature_cache if trains else False,
        },
        "git": context.git,
        "versions": context.versions,
        "device": context.device_info,
        "distributed": context.session.describe(context.workers),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_description(spec: RunSpec) -> dict[str, Any]:
    """The fields that say which configuration ran (also part of the checkpoint fingerprint)."""
    return {
        "run_label": spec.label,
        "method": spec.method_cls.name,
        "named_variant": spec.named_variant,
        "preset": spec.preset,
        "overrides": dict(spec.overrides),
    }


def drawn_shots(categories: list[str], requested: int | None, allow_fewer: bool) -> dict[str, Any]:
    """What the few-shot draw gave: records per category (not the number asked) and their range."""
    per_category: dict[str, int] = {}
    for category in categories:
        per_category[category] = per_category.get(category, 0) + 1
    return {
        "requested": requested,
        "allow_fewer": allow_fewer,
        "drawn_min": min(per_category.values()),
        "drawn_max": max(per_category.values()),
        "per_category": dict(sorted(per_category.items())),
    }


def cached_features(context: RunContext, method, split, what: str) -> torch.Tensor:
    with progress_bar(context.console) as progress:
        return context.cache.features(
            method, split, device=context.device, batch_size=context.options.eval_batch_size,
            precision=context.precision, progress=progress, description=f"{what} image features",
            workers=context.workers,
        )
