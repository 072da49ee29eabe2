"""DCAR's token weights (dcar-method.md steps 4-5): how much each caption token's agreement with the
image changes when the real image replaces a blank one, and the head that predicts it from text alone.

Teacher: `S(token_j, image)` is the cosine between the frozen, prompt-free text tower's final state at
token j (final layer norm + text projection) and the frozen image embedding; the raw weight is
`|S(token_j, I_blank) - S(token_j, I)|`. Raw weights are normalised to mean 1 over the caption's content
tokens (everything between SOS and EOS); SOS, EOS and padding keep weight 1; the final weight is
`w_j = 1 + beta * (norm_j - 1)`, so beta = 0 gives exactly 1 everywhere.

Student: `TokenWeightHead`, a two-layer MLP on the same frozen token states, softplus, then the same
normalisation and blend. It needs no image, which keeps retrieval a dual encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def content_tokens(attention_mask: torch.Tensor, eos_positions: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the caption's own tokens, i.e. attended positions other than SOS (0) and EOS."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device).unsqueeze(0)
    eos = eos_positions.to(attention_mask.device).unsqueeze(1)
    return attention_mask.bool() & (positions > 0) & (positions != eos)


def agreement_change(token_states: torch.Tensor, image: torch.Tensor, blank: torch.Tensor) -> torch.Tensor:
    """(B, L) raw weights |cos(t_j, blank) - cos(t_j, image)|; token_states (B, L, D), image (B, D), blank (D,)."""
    tokens = F.normalize(token_states.float(), dim=-1)
    with_image = torch.einsum("bld,bd->bl", tokens, F.normalize(image.float(), dim=-1))
    with_blank = tokens @ F.normalize(blank.float().reshape(-1), dim=-1)
    return (with_blank - with_image).abs()


def mean_one(raw: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Raw weights divided by their mean over each caption's content tokens; 1 outside the content and
    for a caption whose content weights are all zero (nothing to tell its tokens apart)."""
    raw = raw.float()
    count = content.sum(dim=1, keepdim=True)
    mean = (raw * content).sum(dim=1, keepdim=True) / count.clamp(min=1)
    usable = (count > 0) & (mean > 0)
    normalised = raw / torch.where(usable, mean, torch.ones_like(mean))
    return torch.where(content & usable, normalised, torch.ones_like(raw))


def blend(normalised: torch.Tensor, content: torch.Tensor, beta: float) -> torch.Tensor:
    """w = 1 + beta * (norm - 1) on content tokens, 1 elsewhere; exactly 1 everywhere when beta = 0."""
    if beta == 0:
        return torch.ones_like(normalised)
    return torch.where(content, 1 + beta * (normalised - 1), torch.ones_like(normalised))


def teacher_weights(
    token_states: torch.Tensor, image: torch.Tensor, blank: torch.Tensor, content: torch.Tensor, beta: float
) -> torch.Tensor:
    """The image-conditioned weights of step 4, (B, L)."""
    return blend(mean_one(agreement_change(token_states, image, blank), content), content, beta)


class TokenWeightHead(nn.Module):
    """Token weights from the caption alone: Linear(D, D / reduction), ReLU, Linear(., 1), softplus,
    then the teacher's normalisation and blend. D is the projection width the token states have."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        hidden = width // reduction
        if hidden < 1:
            raise ValueError(f"token-weight head: reduction {reduction} leaves no hidden unit of width {width}")
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def raw(self, token_states: torch.Tensor) -> torch.Tensor:
        """(B, L) positive raw weights before normalisation."""
        return F.softplus(self.mlp(token_states.to(self.mlp[0].weight.dtype)).squeeze(-1))

    def forward(self, token_states: torch.Tensor, content: torch.Tensor, beta: float) -> torch.Tensor:
        return blend(mean_one(self.raw(token_states), content), content, beta)


def head_regression_loss(
    student: torch.Tensor, teacher: torch.Tensor, content: torch.Tensor, total: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error between student and teacher weights over content tokens (0 when there are none);
    `total`: the content tokens to divide by when these are part of a larger batch (another rank's too)."""
    squared = (student.float() - teacher.float()) ** 2 * content
    count = content.sum() if total is None else total
    return squared.sum() / count.to(squared.device, squared.dtype).clamp(min=1)
