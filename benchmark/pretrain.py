"""Contrastive pretraining of the tiny CLIP on a built dataset's `pretrain` split, cached by content.

CLIP's recipe in miniature: symmetric InfoNCE with a learnable temperature, every weight trained,
AdamW with linear warm-up then cosine decay. The result is a checkpoint folder that
`ClipBackbone.from_pretrained` loads like any Hub CLIP, plus `pretrain_report.json` with the zero-shot
recall it reaches on the dataset's test split per domain (and chance, for comparison).

`pretrained_tiny_clip(data_dir, ...)` caches the folder under
$FDRD_CACHE (default ~/.cache/fdrd)/tiny-clip/<hash of spec + config + dataset content hash>, guarded
by a file lock so parallel test workers train it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.tiny import TinyClipSpec, build_tiny_clip, save_clip
from fdrd.errors import FdrdError
from fdrd.manifest import read_manifest, write_json_atomic

REPORT_NAME = "pretrain_report.json"
CACHE_FORMAT = 1  # bump when the training code changes what a given key produces


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Budget and optimiser of the tiny pretraining; every field is part of the cache key."""

    steps: int = 500
    minutes: float | None = None  # stop early when this wall-clock budget is spent (makes runs machine-dependent)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    init_temperature: float = 0.07  # CLIP's initial tau
    max_logit_scale: float = 100.0  # CLIP clamps exp(logit_scale) here to keep training stable
    max_shift: int = 4  # random translation in pixels, a cheap augmentation that keeps attributes true
    seed: int = 0

    def __post_init__(self) -> None:
        # Zero steps would save an untrained model with no loss to report; an empty batch gives a NaN loss
        # that reads as divergence. Checked here so the CLI refuses before loading any image.
        if self.steps < 1 or self.batch_size < 1 or (self.minutes is not None and not self.minutes > 0):
            raise FdrdError(
                f"tiny CLIP pretraining: steps ({self.steps}), batch size ({self.batch_size}) and minutes "
                f"({self.minutes}) must be positive"
            )
        # A negative or zero rate never learns (or climbs the loss); the others would break the schedule,
        # the temperature's log or the augmentation. `not x > 0` also refuses NaN.
        bad = [f"{name} ({value})" for name, value, ok in (
            ("lr", self.lr, math.isfinite(self.lr) and self.lr > 0),
            ("weight_decay", self.weight_decay, math.isfinite(self.weight_decay) and self.weight_decay >= 0),
            ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0),
            ("init_temperature", self.init_temperature, math.isfinite(self.init_temperature) and self.init_temperature > 0),
            ("max_logit_scale", self.max_logit_scale, math.isfinite(self.max_logit_scale) and self.max_logit_scale >= 1),
            ("max_shift", self.max_shift, self.max_shift >= 0),
        ) if not ok]
        if bad:
            raise FdrdError(f"tiny CLIP pretraining: {', '.join(bad)} out of range: lr and init_temperature must be "
                            "positive, max_logit_scale at least 1, the others at least 0 (e.g. --lr 2e-3)")


@dataclasses.dataclass
class Pairs:
    """Image-caption pairs as tensors ready for training or evaluation."""

    pixel_values: torch.Tensor  # (N, 3, H, W)
    captions: list[str]
    domains: list[str]


def load_pairs(data_dir: str | Path, split: str, processor: Any = None) -> Pairs:
    """All domains' rows of `split` from a built FDRD folder (config "all"), images preprocessed."""
    from benchmark.data import load_split

    try:
        table = load_split(data_dir, "all", split)
    except FdrdError as error:
        raise FdrdError(f"{error}; pretraining needs a synthetic build with --split all") from error
    if len(table) == 0:
        raise FdrdError(f"{data_dir}: split {split!r} is empty")
    captions = list(table["caption"])
    domains = list(table["domain"])
    pixel_values = None
    if processor is not None:
        pixel_values = preprocess_all(processor, table)
    return Pairs(pixel_values=pixel_values, captions=captions, domains=domains)


def preprocess_all(processor: Any, table: Any, chunk: int = 256) -> torch.Tensor:
    parts = []
    for start in range(0, len(table), chunk):
        images = [image.convert("RGB") for image in table[start : start + chunk]["image"]]
        parts.append(processor(images=images, return_tensors="pt")["pixel_values"])
    return torch.cat(parts)


def random_shift(pixel_values: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (edge-padded), one offset per image."""
    if max_shift <= 0:
        return pixel_values
    batch, _, height, width = pixel_values.shape
    padded = F.pad(pixel_values, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator)
    return torch.stack(
        [padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets.tolist())]
    )


def learning_rate(step: int, config: PretrainConfig, total: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(
    pairs: Pairs, tokenizer_captions: Sequence[str], spec: TinyClipSpec, config: PretrainConfig, progress: bool = True
) -> tuple[Any, list[float], int]:
    """Train a freshly built tiny CLIP on `pairs`; returns (backbone, loss per step, captions truncated)."""
    from benchmark.backbone import ClipBackbone

    torch.manual_seed(config.seed)
    model, tokenizer, processor = build_tiny_clip(spec, tokenizer_captions, seed=config.seed)
    model.logit_scale.data.fill_(math.log(1 / config.init_temperature))
    backbone = ClipBackbone(model, tokenizer, processor, model_id="tiny-clip", revision="training")
    backbone.set_frozen(False)
    tokens = backbone.tokenize(pairs.captions)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    generator = torch.Generator().manual_seed(config.seed)
    count = len(pairs.captions)
    batch_size = min(config.batch_size, count)
    deadline = time.monotonic() + 60 * config.minutes if config.minutes else math.inf
    losses: list[float] = []
    order = torch.randperm(count, generator=generator)
    cursor = 0
    with _progress(progress, config.steps) as (bar, task):
        for step in range(config.steps):
            if time.monotonic() > deadline:
                break
            if cursor + batch_size > count:
                order, cursor = torch.randperm(count, generator=generator), 0
            index = order[cursor : cursor + batch_size]
            cursor += batch_size
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config, config.steps)
            pixels = random_shift(pairs.pixel_values[index], config.max_shift, generator)
            lengths = tokens["attention_mask"][index].sum(1)
            width = int(lengths.max())  # drop columns that are padding for the whole batch
            images = F.normalize(backbone.encode_image(pixels), dim=-1)
            texts = F.normalize(
                backbone.encode_text(tokens["input_ids"][index, :width], tokens["attention_mask"][index, :width]),
                dim=-1,
            )
            logits = model.logit_scale.exp() * images @ texts.t()
            targets = torch.arange(len(index))
            loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
            if not torch.isfinite(loss):
                raise FdrdError(f"tiny CLIP pretraining diverged at step {step} (loss {loss.item()}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(config.max_logit_scale))
            losses.append(loss.item())
            if bar is not None:
                bar.update(task, advance=1, description=f"pretrain loss {loss.item():.3f}")
    backbone.set_frozen(True)
    return backbone, losses, int(tokens["truncated"].sum())


class _progress:
    """A rich progress bar, or nothing when progress is off (tests, quiet runs)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar.__enter__()
        return self.bar, self.bar.add_task("pretrain", total=self.total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@torch.no_grad()
def zero_shot_recall(backbone: Any, pairs: Pairs, batch_size: int = 256) -> dict[str, Any]:
    """Recall@1/5/10 both directions on `pairs`, per domain (retrieval within the domain, as the
    benchmark scores it) and their plain mean, with the chance level K/N of each domain."""
    from benchmark.metrics.recall import retrieval_recall

    images, texts = [], []
    for start in range(0, len(pairs.captions), batch_size):
        tokens = backbone.tokenize(pairs.captions[start : start + batch_size])
        texts.append(F.normalize(backbone.encode_text(tokens["input_ids"], tokens["attention_mask"]), dim=-1))
        images.append(F.normalize(backbone.encode_image(pairs.pixel_values[start : start + batch_size]), dim=-1))
    images, texts = torch.cat(images), torch.cat(texts)
    per_domain = {}
    for domain in sorted(set(pairs.domains)):
        rows = torch.tensor([i for i, d in enumerate(pairs.domains) if d == domain])
        metrics = retrieval_recall(images[rows], texts[rows], torch.arange(len(rows)))
        metrics["n"] = len(rows)
        metrics["chance_r1"], metrics["chance_r5"], metrics["chance_r10"] = (
            100.0 * min(k, len(rows)) / len(rows) for k in (1, 5, 10)
        )
        per_domain[domain] = metrics
    keys = [k for k in next(iter(per_domain.values())) if k != "n"]
    mean = {k: sum(m[k] for m in per_domain.values()) / len(per_domain) for k in keys}
    return {"domains": per_domain, "mean": mean}


def cache_key(spec: TinyClipSpec, config: PretrainConfig, dataset_hash: str) -> str:
    payload = json.dumps(
        {"format": CACHE_FORMAT, "spec": dataclasses.asdict(spec), "config": dataclasses.asdict(config),
         "data": dataset_hash},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cache_root() -> Path:
    return Path(os.environ.get("FDRD_CACHE") or Path.home() / ".cache" / "fdrd")


def dataset_content_hash(data_dir: str | Path) -> str:
    try:
        manifest = read_manifest(data_dir)
    except FileNotFoundError as error:
        raise FdrdError(f"{data_dir}: no manifest.json; build the dataset first with `fdrd build`") from error
    if not manifest.get("content_hash"):
        raise FdrdError(f"{data_dir}/manifest.json: no content_hash; rebuild the dataset")
    return manifest["content_hash"]


def pretrained_tiny_clip(
    data_dir: str | Path,
    spec: TinyClipSpec | None = None,
    config: PretrainConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """The cached pretrained tiny CLIP for this dataset, spec and config; trained on first use."""
    from filelock import FileLock

    spec, config = spec or TinyClipSpec(), config or PretrainConfig()
    key = cache_key(spec, config, dataset_content_hash(data_dir))
    root = Path(cache_dir) if cache_dir else cache_root()
    target = root / "tiny-clip" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        clean_stale_staging(target.parent, holding=key)
        if (target / REPORT_NAME).is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
        try:
            train_and_save(data_dir, staging, spec, config, progress)
            if target.exists():  # a folder without a report is a crashed run's leftover
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def clean_stale_staging(parent: Path, holding: str) -> list[Path]:
    """Remove the staging folders (`.<key>-*`) a killed pretraining left in the cache; returns them.
    A key's staging is live only while someone holds that key's lock: ours (`holding`) we hold, any
    other is taken without waiting, and skipped when busy."""
    from filelock import FileLock, Timeout

    removed = []
    by_key: dict[str, list[Path]] = {}
    for path in parent.glob(".*-*"):
        key = path.name[1:].split("-", 1)[0]
        if path.is_dir() and len(key) == len(holding) and all(c in "0123456789abcdef" for c in key):
            by_key.setdefault(key, []).append(path)
    for key, folders in sorted(by_key.items()):
        try:
            lock = FileLock(str(parent / key) + ".lock", timeout=0) if key != holding else None
            if lock is not None:
                lock.acquire()
        except Timeout:
            continue  # being trained right now by another process
        try:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            if lock is not None:
                lock.release()
    return removed


def train_and_save(
    data_dir: str | Path, out: str | Path, spec: TinyClipSpec, config: PretrainConfig, progress: bool = True
) -> dict[str, Any]:
    """Pretrain on data_dir's pretrain split, save to out, evaluate zero-shot on test; returns the report."""
    from benchmark.tiny import image_processor_for

    started = time.monotonic()
    processor = image_processor_for(spec.image_size)
    train_pairs = load_pairs(data_dir, "pretrain", processor)
    backbone, losses, truncated = pretrain(train_pairs, train_pairs.captions, spec, config, progress)
    train_seconds = time.monotonic() - started
    test_pairs = load_pairs(data_dir, "test", processor=processor)
    recall = zero_shot_recall(backbone, test_pairs)
    save_clip(out, backbone.model, backbone.tokenizer, backbone.image_processor)
    report = {
        "dataset_content_hash": dataset_content_hash(data_dir),
        "spec": dataclasses.asdict(spec),
        "config": dataclasses.asdict(config),
        "pretrain_pairs": len(train_pairs.captions),
        "truncated_captions": truncated,
        "steps_done": len(losses),
        "first_loss": losses[0] if losses else None,
        "last_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "temperature": 1 / backbone.logit_scale,
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "zero_shot_test": recall,
    }
    write_json_atomic(Path(out) / REPORT_NAME, report)
    return report
