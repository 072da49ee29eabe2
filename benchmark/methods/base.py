"""The interface every method implements, and the registry that finds methods by name.

A method is one file in benchmark/methods/: a config dataclass (every hyperparameter with its default
and a one-line reason in `metadata["why"]`) and a `Method` subclass registered with `@register_method`.
The trainer only ever talks to this interface, so MaPLe or DCAR are one new file each.

Image side in two halves: `frozen_image_features` (what the frozen, prompt-free backbone makes of the
pixels) and `images_from_features` (the trainable rest, then L2 norm). When `frozen_prompt_free_images`
is True and the config does not augment, the trainer may compute the first half once per image and
feed `batch["image_features"]` (`Method.uses_feature_cache`). What a method's training batches carry
beyond that (DCAR's negatives and teacher features) it declares with `training_batch_needs()`.

Config fields say where their default comes from: `why` (a published recipe), `choice` (this
toolkit's own reading where the paper is silent, the [choice] points of docs/dcar-method.md) and
`departure` (where this toolkit deliberately differs from the published recipe). `config_notes`
lists the last two for results files. A method may also declare `named_variants` (ablations such as
`dcar-novisual`, each a set of overrides, run and reported as its own row) and `presets` (e.g.
`quick`, shortened schedules for offline demos); `resolve_method` and `resolve_run` turn a name, a
preset and `--set` overrides into a config and the run label that keys results files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import pkgutil
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.collectives import gather_rows, replicated_share
from fdrd.errors import FdrdError

_REGISTRY: dict[str, type[Method]] = {}


FIELD_KINDS = ("recipe", "choice", "departure")


def why(default: Any, reason: str, *, kind: str = "recipe", **kwargs: Any) -> Any:
    """A dataclass field with its default and the one-line reason for it.

    kind: "recipe" (the default follows a published recipe), "choice" (ours, where the paper is
    silent) or "departure" (ours, deliberately unlike the published recipe; the reason says why).
    """
    if kind not in FIELD_KINDS:
        raise ValueError(f"unknown field kind {kind!r}; expected one of {', '.join(FIELD_KINDS)}")
    metadata = {"why": reason, "kind": kind}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def choice(default: Any, reason: str, **kwargs: Any) -> Any:
    """A field whose default is this toolkit's choice where the published method is silent."""
    return why(default, reason, kind="choice", **kwargs)


def departure(default: Any, reason: str, **kwargs: Any) -> Any:
    """A field whose default deliberately departs from the published recipe (the reason says why)."""
    return why(default, reason, kind="departure", **kwargs)


def config_notes(config: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """{"choices": {field: {"value", "why"}}, "departures": {...}}: what a results file must name so that
    nobody mistakes a run for the authors' recipe. Values are the resolved ones (overrides applied)."""
    notes: dict[str, dict[str, dict[str, Any]]] = {"choices": {}, "departures": {}}
    for field in dataclasses.fields(config):
        kind = field.metadata.get("kind")
        if kind in ("choice", "departure"):
            notes[f"{kind}s"][field.name] = {"value": getattr(config, field.name), "why": field.metadata["why"]}
    return notes


@dataclasses.dataclass
class MethodConfig:
    """Fields every method has; methods subclass this and add their own."""

    epochs: int = why(5, "MaPLe's public few-shot recipe")
    batch_size: int = why(4, "per device, MaPLe's recipe for ViT-B")
    optimizer: str = why("sgd", "sgd|adamw; the prompt-learning papers use SGD with momentum")
    lr: float = why(0.002, "CoOp's learning rate")
    momentum: float = why(0.9, "SGD momentum of the CoOp/MaPLe recipes")
    weight_decay: float = why(5e-4, "CoOp/MaPLe recipe")
    warmup_epochs: int = why(1, "one constant warm-up epoch as in CoOp")
    warmup_lr: float = why(1e-5, "CoOp's constant warm-up learning rate")
    grad_clip: float = departure(1.0, "max gradient norm (0 disables); the CoOp/MaPLe recipes do not clip, "
                                 "we do so that a diverging run stops with a named step instead of NaN")
    augment: bool = why(False, "random resized crop + flip on training images, as CoOp/MaPLe train; "
                        "methods set their own default")
    drop_last_batch: bool = departure(False, "Dassl (CoOp, MaPLe, CLIP-Adapter) drops the last partial training "
                                      "batch; we keep it so that every drawn shot is trained on in every epoch")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise FdrdError(f"{type(self).__name__}: " + "; ".join(problems) + "; fix the --set values")

    def for_shots(self, shots: int | None) -> MethodConfig:
        """This config with what depends on the shots actually drawn resolved (CoOp's epoch count falls
        with fewer shots); `shots` is the smallest number drawn per category, None for every record.
        The default depends on nothing."""
        return self

    def problems(self) -> list[str]:
        """What makes this config untrainable, in plain words; subclasses extend the list."""
        # NaN passes every `x < 0` check and inf every `x > 0` one: a non-finite number is refused here, once,
        # for every field of every method, so the range checks below and in subclasses need not think of it.
        found = [
            f"{field.name} must be a finite number, got {value}"
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), float) and not math.isfinite(value)
        ]
        if self.epochs is not None and self.epochs < 0:  # None: decided by the shots drawn (for_shots)
            found.append(f"epochs must be 0 or more, got {self.epochs}")
        if self.batch_size < 1:
            found.append(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            found.append(f"lr must be positive, got {self.lr}")
        if self.warmup_epochs < 0 or self.warmup_lr < 0:
            found.append(f"warmup_epochs ({self.warmup_epochs}) and warmup_lr ({self.warmup_lr}) must not be negative")
        if not 0 <= self.momentum < 1:
            found.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            found.append(f"weight_decay ({self.weight_decay}) and grad_clip ({self.grad_clip}) must not be negative")
        return found


class UnknownMethodError(FdrdError, KeyError):
    """A method name the registry does not know (an FdrdError for the CLI, a KeyError for lookups)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class Method(nn.Module):
    """A retrieval method over a CLIP backbone (benchmark.backbone.ClipBackbone).

    Subclasses set `name` and `config_class`, and override what differs from plain CLIP:
    `encode_texts`, `images_from_features` (trainable image-side parts over frozen features) or
    `encode_images` (when prompts enter the image tower), and `prompt_token_count` when they insert
    text tokens. `trainable_parameters()` decides what the optimizer sees and what checkpoints hold;
    a method with none (zero-shot) is evaluated without training.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    # True when images pass through the frozen encoder with no prompt: the trainer may then cache
    # `frozen_image_features` once per image and reuse them across epochs.
    frozen_prompt_free_images: ClassVar[bool] = False
    # Written into results files: these methods are this toolkit's adaptations to retrieval.
    variant: ClassVar[str] = "fdrd-toolkit-v1"
    # Named variants (ablations): run name -> config overrides, each run and reported as its own row.
    # The method's own name may be listed with {} to say that the plain method belongs to the family
    # (`fdrd bench dcar --ablations` runs every entry).
    named_variants: ClassVar[dict[str, dict[str, Any]]] = {}
    # Presets: name -> Preset (overrides + reason), e.g. "quick" for the offline demo's short schedules.
    presets: ClassVar[dict[str, Preset]] = {}

    def __init__(self, backbone: Any, config: MethodConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.backbone = backbone
        self.config = config

    @property
    def uses_feature_cache(self) -> bool:
        """Whether frozen image features may be computed once and reused: the image side is frozen and
        prompt-free, and training images are not augmented (a crop changes the features)."""
        return self.frozen_prompt_free_images and not self.config.augment

    def training_batch_needs(self) -> BatchNeeds:
        """What this method's training batches must carry beyond captions, category ids and the image side
        (benchmark.data.SplitBatches reads it; evaluation batches never carry more)."""
        return BatchNeeds()

    # ---------------------------------------------------------------- text
    @property
    def prompt_token_count(self) -> int:
        """Tokens the method inserts into every caption's context; tokenize() leaves room for them."""
        return 0

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask and truncated (bool per caption), fitted to leave the prompt's room."""
        return self.backbone.tokenize(captions, reserve=self.prompt_token_count)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised caption embeddings, shape (B, D). Default: plain CLIP."""
        return F.normalize(self.backbone.encode_text(input_ids, attention_mask), dim=-1)

    # ---------------------------------------------------------------- images
    def frozen_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen, prompt-free part of the image side: the backbone's image embedding (B, D)."""
        return self.backbone.encode_image(pixel_values)

    def images_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The trainable rest of the image side on top of `frozen_image_features`, then L2 norm."""
        return F.normalize(features, dim=-1)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings, shape (B, D)."""
        return self.images_from_features(self.frozen_image_features(pixel_values))

    def image_embeddings(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Image embeddings of a batch, from cached features when the trainer provides them."""
        if "image_features" in batch:
            if not self.frozen_prompt_free_images:
                raise ValueError(f"{self.name}: its images are not frozen and prompt-free; cached features are wrong")
            return self.images_from_features(batch["image_features"])
        return self.encode_images(batch["pixel_values"])

    # ---------------------------------------------------------------- training
    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE over the batch with CLIP's frozen logit scale; "loss" is minimised.

        Under several ranks `batch` holds this rank's records of the global batch, and every returned term
        is this rank's share of the single-process term (benchmark/collectives.py: in-batch candidates
        through `gather_rows`, means over records through `per_record_mean`), so that shares and their
        gradients summed over ranks are one process's."""
        images = self.image_embeddings(batch)
        texts = self.encode_texts(batch["input_ids"], batch["attention_mask"])
        return contrastive_losses(images, texts, self.backbone.logit_scale)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def result_fields(self) -> dict[str, Any]:
        """Extra top-level fields for this method's results files (DCAR names its variant here)."""
        return {}

    def train(self, mode: bool = True) -> Method:
        # The frozen backbone stays in eval mode whatever the trainer does (no dropout drift).
        super().train(mode)
        self.backbone.train(False)
        return self


def contrastive_losses(images: torch.Tensor, texts: torch.Tensor, logit_scale: float) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE: image i's positive is caption i and the other captions of the global batch are
    negatives, and the reverse; both directions averaged. Inputs are L2-normalised (B, D), this rank's rows.

    Under several ranks every rank scores the whole global batch (the other ranks' rows gathered,
    benchmark/collectives.py) and returns its share: summed over ranks, values and gradients are those of
    one process."""
    images, texts = gather_rows(images), gather_rows(texts)
    logits = logit_scale * images @ texts.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    image_to_text = F.cross_entropy(logits, targets)
    text_to_image = F.cross_entropy(logits.t(), targets)
    return {
        "loss": replicated_share((image_to_text + text_to_image) / 2),
        "i2t_loss": replicated_share(image_to_text.detach()),
        "t2i_loss": replicated_share(text_to_image.detach()),
    }


@dataclasses.dataclass(frozen=True)
class BatchNeeds:
    """Extra content of a method's training batches (see benchmark.data.SplitBatches)."""

    # Negative captions per record: token ids and masks, each one's category id, kind and validity.
    negatives: int = 0
    # Frozen, prompt-free image features for teacher signals: of the "original" (un-augmented) image,
    # computed once per record, or of the "augmented" view the step trains on; None: not needed.
    teacher_features: str | None = None
    # One uniform number per record (batch["record_uniform"]), keyed by seed, epoch and record, for the
    # method's per-record coin flips: the same draw on any number of ranks or loader workers.
    record_uniform: bool = False

    def __post_init__(self) -> None:
        if self.negatives < 0:
            raise ValueError(f"negatives must be 0 or more, got {self.negatives}")
        if self.teacher_features not in (None, "original", "augmented"):
            raise ValueError(f"teacher_features must be None, 'original' or 'augmented', got {self.teacher_features!r}")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of config overrides with the reason it exists (recorded in results files)."""

    overrides: Mapping[str, Any]
    reason: str


# -------------------------------------------------------------------- registry
def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    if cls.named_variants.get(cls.name, {}):
        # `fdrd bench NAME` runs this entry: with overrides the plain method would not be its own recipe.
        raise ValueError(f"{cls.name}: the variant named like the method must have no overrides")
    for variant in cls.named_variants:
        for other in _REGISTRY.values():
            if other is not cls and (variant == other.name or variant in other.named_variants):
                raise ValueError(f"variant name {variant!r} of {cls.name} is already taken by {other.name}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    # Every module of this package is imported once, so adding a method means adding a file;
    # nothing has to be listed by hand.
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{__package__}.{info.name}")


def available_methods() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def available_run_names() -> list[str]:
    """Every name `fdrd bench` accepts: methods and their named variants."""
    _discover()
    return sorted({*_REGISTRY, *(v for cls in _REGISTRY.values() for v in cls.named_variants)})


def get_method(name: str) -> type[Method]:
    """The method class of a method name or of one of its named variants."""
    return resolve_method(name)[0]


def resolve_method(name: str) -> tuple[type[Method], str | None, dict[str, Any]]:
    """(method class, named variant or None, the variant's overrides) for a method or variant name."""
    _discover()
    if name in _REGISTRY:
        cls = _REGISTRY[name]
        return cls, (name if name in cls.named_variants else None), dict(cls.named_variants.get(name, {}))
    for cls in _REGISTRY.values():
        if name in cls.named_variants:
            return cls, name, dict(cls.named_variants[name])
    raise UnknownMethodError(f"unknown method {name!r}; known methods and variants: {', '.join(available_run_names())}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What one `fdrd bench` configuration is: the method, its resolved config, and the label that keys
    its results (two configurations never share a label unless they resolve to the same config)."""

    method_cls: type[Method]
    config: MethodConfig
    label: str
    named_variant: str | None
    preset: str | None
    overrides: dict[str, Any]  # the --set values, parsed to their field types


def resolve_run(
    name: str, overrides: Mapping[str, Any] | None = None, preset: str | None = None, label: str | None = None
) -> RunSpec:
    """Method/variant name + preset + `--set` overrides -> RunSpec. Precedence: defaults < variant <
    preset < --set. The label is `label` when given, else the variant or method name, plus "+<preset>"
    and "+<8 hex of the parsed overrides>" when there are any."""
    method_cls, variant, variant_overrides = resolve_method(name)
    preset_overrides: dict[str, Any] = {}
    if preset is not None:
        if preset not in method_cls.presets:
            known = ", ".join(sorted(method_cls.presets)) or "none"
            raise FdrdError(f"method {method_cls.name}: unknown preset {preset!r}; its presets: {known}")
        preset_overrides = dict(method_cls.presets[preset].overrides)
    parsed = resolve_overrides(method_cls, overrides or {})
    config = resolve_config(method_cls, {**variant_overrides, **preset_overrides, **parsed})
    if label is None:
        label = variant or method_cls.name
        if preset is not None:
            label += f"+{preset}"
        if parsed:
            label += "+" + overrides_hash(parsed)
    check_label(label)
    return RunSpec(method_cls, config, label, variant, preset, parsed)


def overrides_hash(parsed: Mapping[str, Any]) -> str:
    """8 hex digits naming a set of parsed overrides ("lr=0.010" and "lr=0.01" hash alike)."""
    canonical = json.dumps({key: parsed[key] for key in sorted(parsed)}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def check_label(label: str) -> None:
    """A run label becomes a folder name: letters, digits and ._+- only, not starting with a dot."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
    if not label or label.startswith(".") or set(label) - allowed or len(label) > 100:
        raise FdrdError(f"run label {label!r}: use letters, digits and . _ + - only (at most 100, not starting with '.')")


# -------------------------------------------------------------------- configs from the command line
def resolve_config(method_cls: type[Method], overrides: Mapping[str, Any] | None = None) -> MethodConfig:
    """The method's config with `--set field=value` overrides parsed to each field's type.

    Values may be strings (parsed: "true"/"false", ints, floats, comma lists, "none" for optional
    fields) or already-typed values (checked). Unknown fields or unparsable values -> FdrdError.
    """
    return method_cls.config_class(**resolve_overrides(method_cls, overrides or {}))


def resolve_overrides(method_cls: type[Method], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides parsed to each field's type (see resolve_config), without building the config."""
    config_class = method_cls.config_class
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    values = {}
    for key, raw in overrides.items():
        if key not in fields:
            raise FdrdError(
                f"method {method_cls.name}: unknown config field {key!r}; valid fields: {', '.join(sorted(fields))}"
            )
        try:
            values[key] = _parse_value(raw, hints[key])
        except (TypeError, ValueError) as error:
            raise FdrdError(f"method {method_cls.name}: --set {key}={raw!r}: {error}") from error
    return values


def parse_set_options(options: list[str] | None) -> dict[str, str]:
    """["lr=0.01", "n_ctx=4"] -> {"lr": "0.01", "n_ctx": "4"}; a string without "=" -> FdrdError."""
    parsed = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise FdrdError(f"--set {option!r}: expected field=value, e.g. --set lr=0.002")
        parsed[key.strip()] = value.strip()
    return parsed


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _parse_value(raw: Any, annotation: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null"))):
            return None
        concrete = [arg for arg in args if arg is not type(None)]
        errors = []
        for arg in concrete:
            try:
                return _parse_value(raw, arg)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        for choice in args:
            if raw == choice or (isinstance(raw, str) and str(choice) == raw.strip()):
                return choice
        raise ValueError(f"expected one of {', '.join(map(str, args))}")
    if origin in (list, tuple):
        items = [part.strip() for part in raw.split(",") if part.strip()] if isinstance(raw, str) else list(raw)
        item_type = args[0] if args else str
        parsed = [_parse_value(item, item_type) for item in items]
        return parsed if origin is list else tuple(parsed)
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError("expected a boolean (true/false)")
    if annotation is int:
        if isinstance(raw, bool) or (not isinstance(raw, (int, str))):
            raise ValueError("expected an integer")
        try:
            return int(raw.strip()) if isinstance(raw, str) else raw
        except ValueError:
            raise ValueError("expected an integer") from None
    if annotation is float:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        try:
            value = float(raw.strip()) if isinstance(raw, str) else float(raw)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        return value
    if annotation is str:
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw.strip()
    raise TypeError(f"fields of type {annotation} cannot be set from the command line")
