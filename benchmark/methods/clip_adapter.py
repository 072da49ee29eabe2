"""CLIP-Adapter on the image side: a residual bottleneck MLP blended into the frozen image feature.

Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters" (IJCV 2023):
adapter(f) = ReLU(W2 ReLU(W1 f)) without biases, W1: D -> D / reduction, and the image embedding is
ratio * adapter(f) + (1 - ratio) * f. Trained with the symmetric contrastive loss against frozen
caption embeddings. D is the backbone's projection width, read from its config.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Method, MethodConfig, Preset, departure, register_method, why
from benchmark.methods.coop import NO_AUGMENT, ShotScheduledConfig

# gaopengcuhk/CLIP-Adapter ships clip_adapter.py as a Dassl trainer and no config of its own: its README says
# to run it with CoOp's commands, i.e. CoOp's configs (batch 32, SGD lr 0.002, epochs by shots, warm-up).


@dataclasses.dataclass
class ClipAdapterConfig(ShotScheduledConfig):
    augment: bool = departure(False, NO_AUGMENT.format(recipe="CLIP-Adapter's runs (CoOp's configs)"))
    reduction: int = why(4, "CLIP-Adapter's bottleneck: width / 4 (Adapter(c_in, reduction=4))")
    ratio: float = why(0.2, "CLIP-Adapter's code: 0.2 adapted + 0.8 frozen image feature")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.reduction < 1:
            found.append(f"reduction must be at least 1, got {self.reduction}")
        if not 0 <= self.ratio <= 1:
            found.append(f"ratio blends adapted and frozen features and must be in [0, 1], got {self.ratio}")
        return found


@register_method
class ClipAdapter(Method):
    name: ClassVar[str] = "clip_adapter"
    config_class: ClassVar[type[MethodConfig]] = ClipAdapterConfig
    # The adapter acts on the frozen image embedding, so that embedding can be cached.
    frozen_prompt_free_images: ClassVar[bool] = True
    presets: ClassVar[dict[str, Preset]] = {
        "quick": Preset({"epochs": 50}, "offline demo on a tiny CPU model: CoOp's shortest schedule (50 "
                        "epochs) instead of 200"),
    }

    def __init__(self, backbone, config: ClipAdapterConfig):
        super().__init__(backbone, config)
        width = backbone.embed_dim
        if width // config.reduction < 1:  # reduction >= 1 is the config's check; this one needs the model
            raise ValueError(f"clip_adapter: reduction {config.reduction} leaves no bottleneck of width {width}")
        self.adapter = nn.Sequential(
            nn.Linear(width, width // config.reduction, bias=False),
            nn.ReLU(),
            nn.Linear(width // config.reduction, width, bias=False),
            nn.ReLU(),
        ).to(backbone.device)

    def images_from_features(self, features: torch.Tensor) -> torch.Tensor:
        features = features.to(self.adapter[0].weight.dtype)
        blended = self.config.ratio * self.adapter(features) + (1 - self.config.ratio) * features
        return F.normalize(blended, dim=-1)
