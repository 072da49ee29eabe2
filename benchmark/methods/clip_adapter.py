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

from benchmark.methods.base import Method, MethodConfig, register_method, why


@dataclasses.dataclass
class ClipAdapterConfig(MethodConfig):
    reduction: int = why(4, "CLIP-Adapter's bottleneck: width / 4")
    ratio: float = why(0.2, "CLIP-Adapter's residual ratio for fine-grained datasets: 0.2 adapted + 0.8 frozen")
    batch_size: int = why(32, "CLIP-Adapter's batch size; the contrastive loss also needs in-batch negatives")
    lr: float = why(0.002, "[choice] CoOp's SGD schedule, so the two baselines differ only in what they train")


@register_method
class ClipAdapter(Method):
    name: ClassVar[str] = "clip_adapter"
    config_class: ClassVar[type[MethodConfig]] = ClipAdapterConfig
    # The adapter acts on the frozen image embedding, so that embedding can be cached.
    frozen_prompt_free_images: ClassVar[bool] = True

    def __init__(self, backbone, config: ClipAdapterConfig):
        super().__init__(backbone, config)
        width = backbone.embed_dim
        if config.reduction < 1 or width // config.reduction < 1:
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
