"""Coupled deep prompts as MaPLe makes them, shared by MaPLe and DCAR (dcar-method.md steps 2-3).

Each prompted layer i < J has its own `n_ctx` learnable text prompts (text width) and, when the image
side is prompted, a linear coupling F_i: text width -> vision width that makes that layer's image
prompts `e_i = F_i(v_i)`. Layer 0's text prompts are inserted after SOS and its image prompts appended
after CLS + patches; deeper layers replace them (benchmark/backbone.py does the inserting).

Following MaPLe's code (trainers/maple.py of muzairkhattak/multimodal-prompt-learning): the first layer's
prompts start from the token embeddings of the first `n_ctx` tokens of "a photo of a" when n_ctx <= 4,
else N(0, 0.02^2); deeper text prompts N(0, 0.02^2); couplings are nn.Linear with bias and PyTorch's
default initialisation, the deeper ones copies of one freshly initialised layer. Unlike that code, every
width comes from the model's config (it hard-codes 512 and 768).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# MaPLe initialises from the init text only up to this many prompt tokens.
MAX_INIT_TOKENS = 4


def shared_prompt_depth(backbone, depth: int) -> int:
    """Layers that get prompts: `depth` clamped to the layers both towers have. A coupled prompt pairs
    text layer i with vision layer i, so a tower deeper than the other (ViT-L/14: 24 vision, 12 text
    layers) is prompted only at the layers they share; text-only prompting uses the same depth so that
    dropping the image prompts changes nothing else."""
    return max(1, min(depth, backbone.text_layers, backbone.vision_layers))


def init_text_embeddings(backbone, init_text: str) -> torch.Tensor | None:
    """(tokens, text width): the frozen token embeddings of `init_text` between SOS and EOS, as prompt
    initialisations (CoOp's and MaPLe's CTX_INIT); None for an empty text or one cut to fit the context."""
    if not init_text:
        return None
    tokens = backbone.tokenize([init_text])
    if bool(tokens["truncated"][0]):
        return None
    content = tokens["input_ids"][0, 1 : int(tokens["attention_mask"][0].sum()) - 1]
    embedding = backbone.model.text_model.embeddings.token_embedding
    with torch.no_grad():
        return embedding(content.to(embedding.weight.device)).detach().clone().float()


def maple_initial_context(backbone, n_ctx: int, init_text: str, std: float) -> torch.Tensor:
    """(n_ctx, text width): embeddings of the first n_ctx tokens of `init_text` after SOS when
    n_ctx <= 4 and the text has that many tokens (and fits the context), else N(0, std^2) from torch's global generator."""
    from_text = init_text_embeddings(backbone, init_text) if n_ctx <= MAX_INIT_TOKENS else None
    if from_text is not None and len(from_text) >= n_ctx:
        return from_text[:n_ctx]
    return torch.randn(n_ctx, backbone.text_width, device=backbone.device) * std


class CoupledPrompts(nn.Module):
    """Per-layer text prompts and, with `visual`, the couplings that make the image prompts from them."""

    def __init__(self, backbone, n_ctx: int, depth: int, init_text: str, init_std: float, visual: bool = True):
        super().__init__()
        if n_ctx < 1 or depth < 1:
            raise ValueError(f"coupled prompts need n_ctx >= 1 and depth >= 1, got n_ctx={n_ctx}, depth={depth}")
        self.n_ctx = n_ctx
        self.depth = shared_prompt_depth(backbone, depth)
        text_width, vision_width, device = backbone.text_width, backbone.vision_width, backbone.device
        first = maple_initial_context(backbone, n_ctx, init_text, init_std)
        deeper = [torch.randn(n_ctx, text_width, device=device) * init_std for _ in range(self.depth - 1)]
        self.text = nn.ParameterList([nn.Parameter(first), *(nn.Parameter(p) for p in deeper)])
        self.couplings: nn.ModuleList | None = None
        if visual:
            shallow = nn.Linear(text_width, vision_width)
            template = nn.Linear(text_width, vision_width)
            self.couplings = nn.ModuleList([shallow, *(copy.deepcopy(template) for _ in range(self.depth - 1))])
            self.couplings.to(device)

    @property
    def visual(self) -> bool:
        return self.couplings is not None

    def text_context(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(shallow context (n_ctx, Wt), deep contexts for layers 1..J-1) for ClipBackbone.encode_text."""
        return self.text[0], list(self.text[1:])

    def image_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(shallow prompts (n_ctx, Wv), deep prompts for layers 1..J-1) for ClipBackbone.encode_image."""
        if self.couplings is None:
            raise RuntimeError("these prompts are text-only; the image tower stays prompt-free")
        prompts = [coupling(text) for coupling, text in zip(self.couplings, self.text, strict=True)]
        return prompts[0], prompts[1:]

