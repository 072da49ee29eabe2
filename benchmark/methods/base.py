"""The interface every method implements, and the registry that finds methods by name.

A method is one file in benchmark/methods/: a config dataclass (every hyperparameter with its default
and a one-line reason in `metadata["why"]`) and a `Method` subclass registered with `@register_method`.
The trainer only ever talks to this interface, so MaPLe or DCAR are one new file each.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, ClassVar

import torch
from torch import nn

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


class Method(nn.Module):
    """A retrieval method over a CLIP backbone.

    Subclasses set `name`, `config_class`, and implement `encode_images`, `encode_texts` and `loss`.
    `trainable_parameters()` decides what the optimizer sees and what checkpoints hold; a method with
    none (zero-shot) is evaluated without training.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    # True when images pass through the frozen encoder with no prompt: the trainer may then cache
    # image features once and reuse them across epochs (`encode_images_from_features`).
    frozen_prompt_free_images: ClassVar[bool] = False

    def __init__(self, backbone: Any, config: MethodConfig):
        super().__init__()
        self.backbone = backbone
        self.config = config

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings, shape (B, D)."""
        raise NotImplementedError

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised caption embeddings, shape (B, D)."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Losses for one training batch; key "loss" is what is minimised, others are logged."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


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
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]

