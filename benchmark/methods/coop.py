"""CoOp adapted to retrieval: one shared set of learnable context vectors after SOS in every caption.

Zhou et al., "Learning to Prompt for Vision-Language Models" (IJCV 2022). Class names are replaced by
free captions, so the classification cross-entropy becomes the symmetric contrastive loss of CLIP;
captions are truncated so that caption + context fit the text encoder's context length.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Method, MethodConfig, Preset, departure, register_method, why
from benchmark.methods.prompts import init_text_embeddings

COOP_RECIPE = "CoOp's few-shot configs (configs/trainers/CoOp/vit_b32.yaml)"
NO_AUGMENT = ("{recipe} train on random resized crops + flips; off so that the frozen image features can be "
              "cached once per image (--set augment=true restores the recipe, without the cache)")


def epochs_for_shots(shots: int | None) -> int:
    """CoOp's schedule by shots (its scripts pick the config by shots): 50 epochs at 1 shot, 100 at 2-4,
    200 at 8-16. Shots it never ran take the next smaller setting's (5-7: 100); None (every record) 200."""
    if shots is None or shots >= 8:
        return 200
    return 100 if shots >= 2 else 50


@dataclasses.dataclass
class ShotScheduledConfig(MethodConfig):
    """A config whose epoch count, unless set, follows CoOp's schedule by shots (resolved by for_shots)."""

    epochs: int | None = why(None, "by shots as CoOp's configs: 200 epochs at 8-16 shots, 100 at 2-4, 50 at 1; "
                             "an explicit value wins")
    batch_size: int = why(32, COOP_RECIPE + "; the contrastive loss also needs in-batch negatives")
    lr: float = why(0.002, COOP_RECIPE + ", SGD")
    warmup_epochs: int = why(1, COOP_RECIPE + ": one constant warm-up epoch")
    warmup_lr: float = why(1e-5, COOP_RECIPE + ": constant warm-up learning rate")

    def for_shots(self, shots: int | None) -> MethodConfig:
        return self if self.epochs is not None else dataclasses.replace(self, epochs=epochs_for_shots(shots))


@dataclasses.dataclass
class CoOpConfig(ShotScheduledConfig):
    augment: bool = departure(False, NO_AUGMENT.format(recipe="CoOp's configs"))
    n_ctx: int = why(16, "CoOp's context length for its best few-shot results")
    ctx_init: str = why("a photo of a", "CoOp's hand-made prompt; used only when its token count equals n_ctx")
    ctx_init_std: float = why(0.02, "CoOp's N(0, 0.02^2) initialisation of random context vectors")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.n_ctx < 1:
            found.append(f"n_ctx must be at least 1 (context tokens), got {self.n_ctx}")
        if self.ctx_init_std < 0:
            found.append(f"ctx_init_std must not be negative, got {self.ctx_init_std}")
        return found


@register_method
class CoOp(Method):
    name: ClassVar[str] = "coop"
    config_class: ClassVar[type[MethodConfig]] = CoOpConfig
    frozen_prompt_free_images: ClassVar[bool] = True
    presets: ClassVar[dict[str, Preset]] = {
        "quick": Preset({"epochs": 50}, "offline demo on a tiny CPU model: CoOp's shortest schedule (its 1-shot "
                        "50 epochs) instead of 200"),
    }

    def __init__(self, backbone, config: CoOpConfig):
        super().__init__(backbone, config)  # CoOpConfig refused n_ctx < 1 already
        self.ctx = nn.Parameter(initial_context(backbone, config.n_ctx, config.ctx_init, config.ctx_init_std))

    @property
    def prompt_token_count(self) -> int:
        return self.config.n_ctx

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone.encode_text(input_ids, attention_mask, shallow_ctx=self.ctx), dim=-1)


def initial_context(backbone, n_ctx: int, init_text: str, std: float) -> torch.Tensor:
    """(n_ctx, text width): the frozen token embeddings of `init_text` when it has exactly n_ctx
    tokens (between SOS and EOS), else N(0, std^2) drawn from torch's global generator (seeded by the trainer)."""
    from_text = init_text_embeddings(backbone, init_text)
    if from_text is not None and len(from_text) == n_ctx:
        return from_text
    return torch.randn(n_ctx, backbone.text_width, device=backbone.device) * std
