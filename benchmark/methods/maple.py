"""MaPLe adapted to retrieval: coupled deep prompts in both towers, symmetric contrastive loss.

Khattak et al., "MaPLe: Multi-modal Prompt Learning" (CVPR 2023). Per prompted layer, learnable text
prompts and a linear text -> vision coupling that makes the image prompts from them
(benchmark/methods/prompts.py). Class names become free captions, so the classification cross-entropy
becomes CLIP's symmetric contrastive loss. Defaults follow MaPLe's public few-shot recipe
(configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml): 2 prompt tokens, depth 9, SGD lr 0.0035,
batch 4, 5 epochs with one constant warm-up epoch at 1e-5, random resized crop + flip.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmark.methods.base import Method, MethodConfig, Preset, register_method, why
from benchmark.methods.prompts import CoupledPrompts

MAPLE_RECIPE = "MaPLe's public few-shot recipe (vit_b16_c2_ep5_batch4_2ctx.yaml)"


@dataclasses.dataclass
class MaPLeConfig(MethodConfig):
    epochs: int = why(5, MAPLE_RECIPE)
    batch_size: int = why(4, MAPLE_RECIPE + ", per device")
    lr: float = why(0.0035, MAPLE_RECIPE + ", SGD")
    warmup_epochs: int = why(1, MAPLE_RECIPE + ": one constant warm-up epoch")
    warmup_lr: float = why(1e-5, MAPLE_RECIPE + ": constant warm-up learning rate")
    augment: bool = why(True, MAPLE_RECIPE + ": random resized crop + flip (the image side is prompted, so "
                        "no feature cache is lost)")
    n_ctx: int = why(2, MAPLE_RECIPE + ": N_CTX 2")
    depth: int = why(9, MAPLE_RECIPE + ": PROMPT_DEPTH 9; clamped to the layers both towers have")
    ctx_init: str = why("a photo of a", MAPLE_RECIPE + ": CTX_INIT; its first n_ctx tokens start the first "
                        "layer's prompts when n_ctx <= 4")
    prompt_init_std: float = why(0.02, "MaPLe's code: N(0, 0.02^2) for random and deeper prompts")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.n_ctx < 1:
            found.append(f"n_ctx must be at least 1 (prompt tokens per layer), got {self.n_ctx}")
        if self.depth < 1:
            found.append(f"depth must be at least 1 (1 = prompts at the input layer only), got {self.depth}")
        if self.prompt_init_std < 0:
            found.append(f"prompt_init_std must not be negative, got {self.prompt_init_std}")
        return found


@register_method
class MaPLe(Method):
    name: ClassVar[str] = "maple"
    config_class: ClassVar[type[MethodConfig]] = MaPLeConfig
    presets: ClassVar[dict[str, Preset]] = {
        # Sized with perf/method_step_time.py: the recipe's 5 epochs already fit the demo's budget.
        "quick": Preset({}, "MaPLe's own 5 epochs already fit the offline demo on a tiny CPU model"),
    }

    def __init__(self, backbone, config: MaPLeConfig):
        super().__init__(backbone, config)
        self.prompts = CoupledPrompts(
            backbone, config.n_ctx, config.depth, config.ctx_init, config.prompt_init_std,
            visual=self.prompts_the_image_side,
        )

    @property
    def prompts_the_image_side(self) -> bool:
        return True

    @property
    def prompt_token_count(self) -> int:
        return self.config.n_ctx

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode_weighted_texts(input_ids, attention_mask, None)

    def encode_weighted_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_scale: torch.Tensor | None
    ) -> torch.Tensor:
        """L2-normalised caption embeddings with the prompts, each caption token scaled by `token_scale`."""
        shallow, deep = self.prompts.text_context()
        return F.normalize(
            self.backbone.encode_text(input_ids, attention_mask, shallow_ctx=shallow, deep_ctx=deep,
                                      token_scale=token_scale),
            dim=-1,
        )

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not self.prompts.visual:
            return super().encode_images(pixel_values)
        shallow, deep = self.prompts.image_prompts()
        return F.normalize(
            self.backbone.encode_image(pixel_values, shallow_prompts=shallow, deep_prompts=deep), dim=-1
        )

    def result_fields(self) -> dict[str, Any]:
        return {"prompt_depth": {"config": self.config.depth, "used": self.prompts.depth}}
