"""The interface every method implements, and the registry that finds methods by name.

A method is one file in benchmark/methods/: a config dataclass (every hyperparameter with its default
and a one-line reason in `metadata["why"]`) and a `Method` subclass registered with `@register_method`.
The trainer only ever talks to this interface, so MaPLe or DCAR are one new file each.

Image side in two halves: `frozen_image_features` (what the frozen, prompt-free backbone makes of the
pixels) and `images_from_features` (the trainable rest, then L2 norm). When `frozen_prompt_free_images`
is True the trainer may compute the first half once per image and feed `batch["image_features"]`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fdrd.errors import FdrdError

_REGISTRY: dict[str, type[Method]] = {}


def why(default: Any, reason: str, **kwargs: Any) -> Any:
    """A dataclass field with its default and the one-line reason for it."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"why": reason}, **kwargs)
    return dataclasses.field(default=default, metadata={"why": reason}, **kwargs)


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
    grad_clip: float = why(1.0, "max gradient norm; 0 disables clipping")


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

    def __init__(self, backbone: Any, config: MethodConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.backbone = backbone
        self.config = config

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
        """Symmetric InfoNCE over the batch with CLIP's frozen logit scale; "loss" is minimised."""
        images = self.image_embeddings(batch)
        texts = self.encode_texts(batch["input_ids"], batch["attention_mask"])
        return contrastive_losses(images, texts, self.backbone.logit_scale)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> Method:
        # The frozen backbone stays in eval mode whatever the trainer does (no dropout drift).
        super().train(mode)
        self.backbone.train(False)
        return self


def contrastive_losses(images: torch.Tensor, texts: torch.Tensor, logit_scale: float) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE: image i's positive is caption i and the other captions of the batch are
    negatives, and the reverse; both directions averaged. Inputs are L2-normalised (B, D)."""
    logits = logit_scale * images @ texts.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    image_to_text = F.cross_entropy(logits, targets)
    text_to_image = F.cross_entropy(logits.t(), targets)
    return {
        "loss": (image_to_text + text_to_image) / 2,
        "i2t_loss": image_to_text.detach(),
        "t2i_loss": text_to_image.detach(),
    }


# -------------------------------------------------------------------- registry
def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
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


def get_method(name: str) -> type[Method]:
    _discover()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


# -------------------------------------------------------------------- configs from the command line
def resolve_config(method_cls: type[Method], overrides: Mapping[str, Any] | None = None) -> MethodConfig:
    """The method's config with `--set field=value` overrides parsed to each field's type.

    Values may be strings (parsed: "true"/"false", ints, floats, comma lists, "none" for optional
    fields) or already-typed values (checked). Unknown fields or unparsable values -> FdrdError.
    """
    config_class = method_cls.config_class
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    values = {}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise FdrdError(
                f"method {method_cls.name}: unknown config field {key!r}; valid fields: {', '.join(sorted(fields))}"
            )
        try:
            values[key] = _parse_value(raw, hints[key])
        except (TypeError, ValueError) as error:
            raise FdrdError(f"method {method_cls.name}: --set {key}={raw!r}: {error}") from error
    return config_class(**values)


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
