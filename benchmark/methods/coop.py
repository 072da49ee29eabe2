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

from benchmark.methods.base import Method, MethodConfig, register_method, why


@dataclasses.dataclass
class CoOpConfig(MethodConfig):
    n_ctx: int = why(16, "CoOp's context length for its best few-shot results")
    ctx_init: str = why("a photo of a", "CoOp's hand-made prompt; used only when its token count equals n_ctx")
    ctx_init_std: float = why(0.02, "CoOp's N(0, 0.02^2) initialisation of random context vectors")
    batch_size: int = why(32, "CoOp's batch size; the contrastive loss also needs in-batch negatives")
    lr: float = why(0.002, "CoOp's SGD learning rate")


@register_method
class CoOp(Method):
    name: ClassVar[str] = "coop"
    config_class: ClassVar[type[MethodConfig]] = CoOpConfig
    frozen_prompt_free_images: ClassVar[bool] = True

    def __init__(self, backbone, config: CoOpConfig):
        super().__init__(backbone, config)
        if config.n_ctx < 1:
            raise ValueError(f"coop: n_ctx must be >= 1, got {config.n_ctx}")
        self.ctx = nn.Parameter(initial_context(backbone, config.n_ctx, config.ctx_init, config.ctx_init_std))

    @property
    def prompt_token_count(self) -> int:
        return self.config.n_ctx

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone.encode_text(input_ids, attention_mask, shallow_ctx=self.ctx), dim=-1)


def initial_context(backbone, n_ctx: int, init_text: str, std: float) -> torch.Tensor:
    """(n_ctx, text width): the frozen token embeddings of `init_text` when it has exactly n_ctx
    tokens (between SOS and EOS), else N(0, std^2) drawn from torch's global generator (seeded by the trainer)."""
    width = backbone.text_width
    if init_text:
        tokens = backbone.tokenize([init_text])
        length = int(tokens["attention_mask"][0].sum())
        content = tokens["input_ids"][0, 1 : length - 1]
        if content.numel() == n_ctx and not bool(tokens["truncated"][0]):
            embedding = backbone.model.text_model.embeddings.token_embedding
            with torch.no_grad():
                return embedding(content.to(embedding.weight.device)).detach().clone().float()
    return torch.randn(n_ctx, width, device=backbone.device) * std
