"""DCAR as this toolkit reads it (docs/dcar-method.md, "fdrd-toolkit-v1"): dual prompts as MaPLe,
image-conditioned token re-weighting with a text-only head for evaluation, multi-view negatives and the
category-matching weighted loss.

Wang et al., "Dual Prompt Learning for Adapting Vision-Language Models to Downstream Image-Text
Retrieval" (2025). The authors released no training code; every [choice] of the specification is a
config field made with `choice(...)`, and results files carry `dcar_variant` so that nobody mistakes a
run for the authors' code. Per training step:
  1. prompted image embeddings of the (augmented) batch;
  2. token weights: the teacher's |S(token, I_blank) - S(token, I)| weights (benchmark/token_weights.py)
     or the head's, drawn per record with probability p_teacher (positive and its negatives alike);
  3. L_con: symmetric InfoNCE of images and weighted positive captions over the batch;
  4. L_cate: per image, a weighted softmax over its positive and its m negatives, a candidate of the
     image's own category weighing 1 + alpha;
  5. L_head: MSE between the head's and the teacher's weights on the positive captions' content tokens;
  loss = L_con + lambda_cate * L_cate + gamma * L_head.
At evaluation a caption is encoded with the head's weights: it never depends on an image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from benchmark.collectives import global_total, per_record_mean
from benchmark.methods.base import (
    BatchNeeds,
    MethodConfig,
    Preset,
    choice,
    contrastive_losses,
    register_method,
    why,
)
from benchmark.methods.maple import MaPLe, MaPLeConfig
from benchmark.token_weights import (
    TokenWeightHead,
    content_tokens,
    head_regression_loss,
    teacher_weights,
)

SPEC = "docs/dcar-method.md"
FROM_MAPLE = f"[choice, {SPEC} step 8] MaPLe's public recipe"
VARIANT_PREFIX = "fdrd-toolkit-v1"


@dataclasses.dataclass
class DCARConfig(MaPLeConfig):
    # Training: MaPLe's recipe, which the paper does not contradict (step 8).
    epochs: int = choice(5, FROM_MAPLE)
    batch_size: int = choice(4, FROM_MAPLE + ", per device for ViT-B")
    lr: float = choice(0.0035, FROM_MAPLE + ", SGD momentum 0.9, weight decay 5e-4")
    warmup_epochs: int = choice(1, FROM_MAPLE + ": one constant warm-up epoch")
    warmup_lr: float = choice(1e-5, FROM_MAPLE + ": constant warm-up learning rate")
    augment: bool = choice(True, FROM_MAPLE + ": random resized crop + flip")
    # Dual prompts (steps 1-3).
    n_ctx: int = choice(2, f"[choice, {SPEC} step 2] k = 2 prompt tokens, MaPLe-style")
    depth: int = choice(9, f"[choice, {SPEC} step 2] prompts at the first 9 layers as MaPLe; 1 = shallow")
    visual_prompts: bool = why(True, "the paper: image prompts generated from the text prompts; false is the "
                               "-visual ablation (text prompts only, prompt-free image tower)")
    # Token weights (steps 4-5).
    token_similarity: Literal["projected_cosine"] = choice(
        "projected_cosine", f"[choice, {SPEC} step 4] S = cosine of the frozen prompt-free token state (final "
        "layer norm + text projection) with the frozen image embedding")
    blank_image: Literal["mean", "black"] = choice(
        "mean", f"[choice, {SPEC} step 4] I_blank = a constant image at the preprocessing mean (zeros after "
        "normalisation); black = pixel value 0")
    beta: float = choice(1.0, f"[choice, {SPEC} step 4] w = 1 + beta (norm - 1); 0 turns re-weighting off exactly")
    reweight: Literal["head", "train_only", "off"] = choice(
        "head", f"[choice, {SPEC} step 5] head: teacher/student weights in training, the head's at evaluation; "
        "train_only: teacher weights in training, none at evaluation; off: no weights")
    p_teacher: float = choice(0.5, f"[choice, {SPEC} step 5] probability that a record's captions use the "
                              "teacher's weights (else the head's) in a training step")
    gamma: float = choice(0.1, f"[choice, {SPEC} step 5] weight of L_head, the head's MSE to the teacher")
    head_reduction: int = choice(4, "[choice] head hidden width = projection width / 4 (CLIP-Adapter's bottleneck)")
    head_from_retrieval_loss: bool = choice(False, "[choice] false: the head learns only from L_head (it imitates "
                                            "the teacher); true: L_con/L_cate also reach it through its weights")
    teacher_view: Literal["original", "augmented"] = choice(
        "original", "[choice] teacher weights from the un-augmented image, computed once per record: the "
        "caption describes the whole image, and the head then regresses a fixed target; augmented: the "
        "crop the step trains on, one frozen image forward per step")
    # Negatives and losses (steps 6-7).
    n_negatives: int = why(4, "m = 4 negatives per record, as the released FDRD files carry")
    alpha: float = choice(0.5, f"[choice, {SPEC} step 7] a candidate of the image's category weighs 1 + alpha "
                          "in L_cate")
    lambda_cate: float = choice(1.0, f"[choice, {SPEC} step 7] L = L_con + lambda L_cate + gamma L_head")

    def problems(self) -> list[str]:
        found = super().problems()
        if not 0 <= self.p_teacher <= 1:
            found.append(f"p_teacher is a probability, got {self.p_teacher}")
        if not 0 <= self.beta <= 1:
            found.append(f"beta must be in [0, 1] (above 1 a token's weight can turn negative), got {self.beta}")
        for name in ("alpha", "gamma", "lambda_cate"):
            if getattr(self, name) < 0:
                found.append(f"{name} must not be negative (a negative weight rewards the wrong caption), "
                             f"got {getattr(self, name)}")
        if self.n_negatives < 1 and self.lambda_cate > 0:
            found.append(f"n_negatives must be at least 1 while lambda_cate > 0, got {self.n_negatives}")
        if self.head_reduction < 1:
            found.append(f"head_reduction must be at least 1, got {self.head_reduction}")
        return found


# Each ablation is one override of the full method (dcar-method.md, "Ablations").
VARIANTS: dict[str, dict[str, Any]] = {
    "dcar": {},
    "dcar-noreweight": {"beta": 0.0},
    "dcar-nonegatives": {"lambda_cate": 0.0},
    "dcar-nocatweight": {"alpha": 0.0},
    "dcar-novisual": {"visual_prompts": False},
    "dcar-shallow": {"depth": 1},
}


@register_method
class DCAR(MaPLe):
    name: ClassVar[str] = "dcar"
    config_class: ClassVar[type[MethodConfig]] = DCARConfig
    named_variants: ClassVar[dict[str, dict[str, Any]]] = VARIANTS
    presets: ClassVar[dict[str, Preset]] = {
        # Sized with perf/method_step_time.py: the 5 epochs fit the demo's budget, and a shortened DCAR
        # row would misreport the method the toolkit exists for.
        "quick": Preset({}, "the 5 epochs of MaPLe's recipe already fit the offline demo on a tiny CPU model"),
    }

    def __init__(self, backbone, config: DCARConfig):
        super().__init__(backbone, config)
        self.head = TokenWeightHead(backbone.embed_dim, config.head_reduction).to(backbone.device) \
            if config.reweight == "head" else None
        size = backbone.image_size
        blank = torch.zeros(1, 3, size, size, device=backbone.device)
        if config.blank_image == "black":
            processor = backbone.image_processor
            mean = torch.tensor(processor.image_mean, device=backbone.device).view(1, 3, 1, 1)
            std = torch.tensor(processor.image_std, device=backbone.device).view(1, 3, 1, 1)
            blank = blank + (0 - mean) / std
        with torch.no_grad():
            features = backbone.encode_image(blank).float()[0]
        # Not a parameter and not saved: a function of the frozen backbone, recomputed on load.
        self.register_buffer("blank_features", features, persistent=False)

    @property
    def prompts_the_image_side(self) -> bool:
        return self.config.visual_prompts

    def training_batch_needs(self) -> BatchNeeds:
        config = self.config
        return BatchNeeds(
            negatives=config.n_negatives if config.lambda_cate > 0 else 0,
            teacher_features=config.teacher_view if config.reweight != "off" else None,
            record_uniform=config.reweight == "head",  # the per-record teacher/student coin
        )

    # ---------------------------------------------------------------- token weights
    def frozen_token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(token states of the frozen prompt-free text tower (B, L, D), content-token mask (B, L))."""
        with torch.no_grad():
            states = self.backbone.text_token_states(input_ids, attention_mask).float()
        return states, content_tokens(attention_mask, self.backbone.eos_positions(input_ids))

    def teacher_token_weights(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """The image-conditioned weights (B, L) of captions against the frozen features of their images."""
        states, content = self.frozen_token_states(input_ids, attention_mask)
        with torch.no_grad():
            return teacher_weights(states, image_features, self.blank_features, content, self.config.beta)

    def head_token_weights(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head's weights (B, L), from the captions alone."""
        states, content = self.frozen_token_states(input_ids, attention_mask)
        return self.head(states, content, self.config.beta)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Evaluation: the head's weights when reweight=head, none otherwise; never an image."""
        weights = self.head_token_weights(input_ids, attention_mask) if self.head is not None else None
        return self.encode_weighted_texts(input_ids, attention_mask, weights)

    def _training_weights(self, input_ids, attention_mask, image_features, use_teacher):
        """(weights to encode with, L_head) of one set of captions in a training step; (None, 0) when off."""
        zero = image_features.new_zeros(()) if image_features is not None else torch.zeros(())
        if self.config.reweight == "off":
            return None, zero
        states, content = self.frozen_token_states(input_ids, attention_mask)
        with torch.no_grad():
            teacher = teacher_weights(states, image_features, self.blank_features, content, self.config.beta)
        if self.head is None:  # train_only
            return teacher, zero
        student = self.head(states, content, self.config.beta)
        # Its share of the MSE over the global batch's content tokens (benchmark/collectives.py).
        regression = head_regression_loss(student, teacher, content, total=global_total(content.sum()))
        if not self.config.head_from_retrieval_loss:
            student = student.detach()
        return torch.where(use_teacher.unsqueeze(1), teacher, student), regression

    # ---------------------------------------------------------------- training
    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        config = self.config
        needs = self.training_batch_needs()
        missing = [key for key, needed in (("negative_mask", needs.negatives), ("teacher_image_features",
                   needs.teacher_features), ("record_uniform", needs.record_uniform)) if needed and key not in batch]
        if missing:
            raise ValueError(f"dcar: the batch has no {', '.join(missing)}; build training batches with "
                             "SplitBatches(..., training=True)")
        images = self.image_embeddings(batch)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        size = ids.shape[0]
        features = batch.get("teacher_image_features")
        # One teacher/student draw per record (keyed by seed, epoch and record: the same on any number of
        # ranks): a record's positive and its negatives are weighted alike, so L_cate compares captions
        # weighted the same way.
        use_teacher = (batch["record_uniform"] < config.p_teacher).to(ids.device) if self.head is not None else None
        weights, head_loss = self._training_weights(ids, mask, features, use_teacher)
        texts = self.encode_weighted_texts(ids, mask, weights)
        losses = contrastive_losses(images, texts, self.backbone.logit_scale)
        total = losses["loss"] + config.gamma * head_loss
        cate_loss = images.new_zeros(())
        if needs.negatives:
            m = batch["negative_mask"].shape[1]
            neg_ids, neg_mask = batch["negative_input_ids"], batch["negative_attention_mask"]
            neg_weights, _ = self._training_weights(
                neg_ids, neg_mask,
                features.repeat_interleave(m, dim=0) if features is not None else None,
                use_teacher.repeat_interleave(m) if use_teacher is not None else None,
            )
            neg_texts = self.encode_weighted_texts(neg_ids, neg_mask, neg_weights).view(size, m, -1)
            same = batch["negative_category_id"] == batch["category_id"].unsqueeze(1)
            cate_loss = category_matching_loss(
                images, texts, neg_texts, same, batch["negative_mask"], config.alpha, self.backbone.logit_scale
            )
            total = total + config.lambda_cate * cate_loss
        return {
            "loss": total,
            "con_loss": losses["loss"].detach(),
            "cate_loss": cate_loss.detach(),
            "head_loss": head_loss.detach(),
            "i2t_loss": losses["i2t_loss"],
            "t2i_loss": losses["t2i_loss"],
        }

    def result_fields(self) -> dict[str, Any]:
        return {**super().result_fields(), "dcar_variant": f"{VARIANT_PREFIX}/{variant_name(self.config)}"}


def category_matching_loss(
    images: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    negative_same_category: torch.Tensor,
    negative_mask: torch.Tensor,
    alpha: float,
    logit_scale: float,
) -> torch.Tensor:
    """L_cate = -mean_i log(a(pos) e^{s_pos/tau} / sum_c a(c) e^{s_c/tau}) over C_i = {positive} + negatives.

    images, positives (B, D) and negatives (B, m, D) L2-normalised; negative_same_category (B, m) bool:
    the negative's category is the image's (a = 1 + alpha; the positive's always is); negative_mask (B, m)
    bool: slots holding a real negative. log a(c) is added to the logits, so alpha = 0 is plain
    cross-entropy over the candidates.
    """
    bonus = torch.log1p(torch.as_tensor(alpha, dtype=torch.float32, device=images.device))
    positive_logit = logit_scale * (images * positives).sum(-1, keepdim=True) + bonus
    negative_logits = logit_scale * torch.einsum("bd,bmd->bm", images, negatives)
    negative_logits = negative_logits + bonus * negative_same_category.float()
    negative_logits = negative_logits.masked_fill(~negative_mask.bool(), float("-inf"))
    logits = torch.cat([positive_logit, negative_logits], dim=1).float()
    per_image = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device),
                                reduction="none")
    return per_record_mean(per_image)  # per image: this rank's share of the global batch's mean


def variant_name(config: DCARConfig) -> str:
    """The named variant this config is (its ablation fields differ from the defaults exactly as that
    variant's overrides say), else "dcar+field=value,..." listing the ablation fields that differ."""
    defaults = DCARConfig()
    fields = sorted({field for overrides in VARIANTS.values() for field in overrides})
    differs = {field: getattr(config, field) for field in fields if getattr(config, field) != getattr(defaults, field)}
    for name, overrides in VARIANTS.items():
        if overrides == differs:
            return name
    return "dcar+" + ",".join(f"{field}={value}" for field, value in differs.items())
