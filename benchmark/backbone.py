"""A frozen CLIP over Hugging Face weights, with the hooks prompt learners need.

`ClipBackbone.from_pretrained` loads any checkpoint that transformers loads as a `CLIPModel` (a Hub id
or a local folder, e.g. the tiny model of benchmark/tiny.py) with its tokenizer and image processor.
Its own forward reuses the checkpoint's layers but lets a method
- insert learnable context tokens after SOS (shallow) and replace them at deeper layers (deep),
- scale each caption token's input embedding (token-wise re-weighting),
- append visual prompt tokens after CLS + patches (shallow) and replace them at deeper layers.
With no prompts the outputs equal `CLIPModel.get_text_features` / `get_image_features`.
Every width, depth, context length and patch size is read from the checkpoint's config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmark.hf_bars import quiet_transformers_bars
from fdrd.errors import FdrdError
from fdrd.manifest import sha256_file

# The paper's backbone (CLIP ViT-B/32): the default of `fdrd bench`.
DEFAULT_MODEL = "openai/clip-vit-base-patch32"

# Files whose bytes define a local checkpoint's weights: safetensors only (they are hashed as its revision).
_WEIGHT_PATTERNS = ("*.safetensors",)
# Weight files that are pickles: loading one can run any code it names, so they are refused, never opened.
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class ClipBackbone(nn.Module):
    """CLIP image and text towers with prompt hooks; frozen unless a caller unfreezes it."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, model_id: str, revision: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_id = model_id
        self.revision = revision
        self._text_eos_token_id = model.config.text_config.eos_token_id

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        *,
        frozen: bool = True,
    ) -> ClipBackbone:
        """Load a CLIP checkpoint by Hub id or local folder; the two take the same path."""
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel

        source = str(id_or_dir)
        local = Path(source).expanduser()
        is_local = local.exists()
        if is_local:
            if not local.is_dir() or not (local / "config.json").is_file():
                raise FdrdError(
                    f"{local}: not a model folder (no config.json); pass a folder written by "
                    "`fdrd model tiny`/`fdrd pretrain` or a CLIP checkpoint id"
                )
            source = str(local)
            _refuse_pickled_weights(local)
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise FdrdError(f"{source}: cannot load a model config ({error}); check the id or folder") from error
        if getattr(config, "model_type", None) != "clip":
            raise FdrdError(
                f"{source}: model type {getattr(config, 'model_type', None)!r} is not CLIP-like; "
                "the benchmark needs a CLIPModel checkpoint (e.g. openai/clip-vit-base-patch32)"
            )
        try:
            # use_safetensors: a Hub repository with only pickled weights is refused, not unpickled.
            extra = {"dtype": dtype} if dtype else {}
            with quiet_transformers_bars(is_local):
                model = CLIPModel.from_pretrained(source, use_safetensors=True, **extra)
            tokenizer = AutoTokenizer.from_pretrained(source)
            image_processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise FdrdError(f"{source}: cannot load CLIP weights, tokenizer or image processor ({error})") from error
        revision = _folder_weights_hash(local) if is_local else (getattr(config, "_commit_hash", None) or "unknown")
        backbone = cls(model, tokenizer, image_processor, model_id=source, revision=revision)
        backbone.to(device)
        backbone.set_frozen(frozen)
        return backbone

    def set_frozen(self, frozen: bool) -> None:
        """Frozen: no gradients and eval mode (the prompt learners' setting). Pretraining unfreezes."""
        self.model.requires_grad_(not frozen)
        self.model.train(not frozen)

    # ------------------------------------------------------------------ sizes from the config
    @property
    def text_width(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def vision_width(self) -> int:
        return self.model.config.vision_config.hidden_size

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def context_length(self) -> int:
        return self.model.config.text_config.max_position_embeddings

    @property
    def text_layers(self) -> int:
        return self.model.config.text_config.num_hidden_layers

    @property
    def vision_layers(self) -> int:
        return self.model.config.vision_config.num_hidden_layers

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    @property
    def patch_size(self) -> int:
        return self.model.config.vision_config.patch_size

    @property
    def logit_scale(self) -> float:
        """CLIP's learnt inverse temperature exp(logit_scale), as the frozen checkpoint has it."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.logit_scale.dtype

    # ------------------------------------------------------------------ inputs
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Pixel values (B, 3, H, W) as the checkpoint's own image processor makes them."""
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]

    def tokenize(self, captions: Sequence[str], reserve: int = 0) -> dict[str, torch.Tensor]:
        """Token ids that leave room for `reserve` prompt tokens in the context, always ending in EOS.

        Captions too long are cut before their EOS and flagged in `truncated`, so callers can count
        and report them. Padded to the longest caption of the batch with the tokenizer's pad id.
        """
        budget = self.context_length - reserve
        if budget < 2:
            raise FdrdError(
                f"{self.model_id}: {reserve} prompt tokens leave {budget} of the context length "
                f"{self.context_length} for the caption; at least SOS and EOS must fit, use fewer prompt tokens"
            )
        encoded = self.tokenizer(list(captions), add_special_tokens=True, verbose=False)["input_ids"] if captions else []
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_id()
        rows, truncated = [], []
        for index, ids in enumerate(encoded):
            if len(ids) < 2 or ids[-1] != self._eos_id():
                raise FdrdError(
                    f"{self.model_id}: the tokenizer did not end caption {index} ({captions[index][:40]!r}) with "
                    "EOS; the backbone needs a CLIP tokenizer that adds SOS and EOS"
                )
            cut = len(ids) > budget
            truncated.append(cut)
            rows.append(ids[: budget - 1] + ids[-1:] if cut else ids)
        length = max((len(row) for row in rows), default=2)
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[index, : len(row)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "truncated": torch.tensor(truncated, dtype=torch.bool),
        }

    def _eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        return eos if eos is not None else self._text_eos_token_id

    def eos_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Index of each caption's EOS, found exactly as `CLIPTextModel` finds it."""
        if self._text_eos_token_id == 2:
            # Checkpoints saved before transformers PR #24773 carry eos_token_id 2; CLIP then pools at the
            # highest token id (EOT is the last id of the original vocabulary). Kept for parity.
            return input_ids.to(torch.int).argmax(dim=-1)
        return (input_ids == self._text_eos_token_id).int().argmax(dim=-1)

    # ------------------------------------------------------------------ text tower
    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        shallow_ctx: torch.Tensor | None = None,
        deep_ctx: Sequence[torch.Tensor] | None = None,
        token_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Caption embeddings (B, embed_dim), not normalised, pooled at the (moved) EOS.

        shallow_ctx: (n_ctx, W) shared or (B, n_ctx, W) per caption, inserted after SOS.
        deep_ctx: one tensor of the same shapes per layer 1..J-1, replacing the n_ctx tokens there.
        token_scale: (B, L) multiplying each caption token's input embedding before the context goes in.
        """
        hidden, eos = self._text_hidden(input_ids, attention_mask, shallow_ctx, deep_ctx, token_scale)
        text = self.model.text_model
        pooled = text.final_layer_norm(hidden[torch.arange(hidden.shape[0], device=hidden.device), eos])
        return self.model.text_projection(pooled)

    def text_token_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        shallow_ctx: torch.Tensor | None = None,
        deep_ctx: Sequence[torch.Tensor] | None = None,
        token_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every token's final state through the final layer norm and the text projection,
        (B, L + n_ctx, embed_dim); with context tokens the caption's tokens sit n_ctx later."""
        hidden, _ = self._text_hidden(input_ids, attention_mask, shallow_ctx, deep_ctx, token_scale)
        return self.model.text_projection(self.model.text_model.final_layer_norm(hidden))

    def _text_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        shallow_ctx: torch.Tensor | None,
        deep_ctx: Sequence[torch.Tensor] | None,
        token_scale: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.model.text_model
        batch, length = input_ids.shape
        tokens = text.embeddings.token_embedding(input_ids)
        if token_scale is not None:
            if token_scale.shape != input_ids.shape:
                raise ValueError(f"token_scale has shape {tuple(token_scale.shape)}, expected {(batch, length)}")
            tokens = tokens * token_scale.unsqueeze(-1).to(tokens.dtype)
        mask = attention_mask.to(tokens.device, torch.bool)
        n_ctx = 0
        if shallow_ctx is not None:
            ctx = _per_caption(shallow_ctx, batch, tokens.dtype, "shallow_ctx")
            n_ctx = ctx.shape[1]
            tokens = torch.cat([tokens[:, :1], ctx, tokens[:, 1:]], dim=1)
            mask = torch.cat([mask[:, :1], mask.new_ones(batch, n_ctx), mask[:, 1:]], dim=1)
        elif deep_ctx:
            raise ValueError("deep_ctx replaces the shallow context tokens; pass shallow_ctx as well")
        if deep_ctx is not None and len(deep_ctx) > len(text.encoder.layers) - 1:
            raise ValueError(f"deep_ctx has {len(deep_ctx)} entries; the text tower has layers 1..{self.text_layers - 1}")
        sequence = tokens.shape[1]
        if sequence > self.context_length:
            raise FdrdError(
                f"{self.model_id}: {length} caption tokens + {n_ctx} context tokens exceed the context length "
                f"{self.context_length}; tokenize with reserve={n_ctx}"
            )
        positions = torch.arange(sequence, device=tokens.device)
        hidden = tokens + text.embeddings.position_embedding(positions).unsqueeze(0)
        if bool(mask.all()) and text.config._attn_implementation == "sdpa":
            # No padding: SDPA's own causal flag picks its fused kernel (what CLIPTextModel does too);
            # an explicit mask would force the slower generic path.
            additive_mask, causal = None, {"is_causal": True}
        else:
            additive_mask, causal = _causal_padding_mask(mask, hidden.dtype), {}
        for index, layer in enumerate(text.encoder.layers):
            if index > 0 and deep_ctx is not None and index - 1 < len(deep_ctx):
                replacement = _per_caption(deep_ctx[index - 1], batch, hidden.dtype, f"deep_ctx[{index - 1}]")
                if replacement.shape[1] != n_ctx:
                    raise ValueError(f"deep_ctx[{index - 1}] has {replacement.shape[1]} tokens, expected {n_ctx}")
                hidden = torch.cat([hidden[:, :1], replacement, hidden[:, 1 + n_ctx :]], dim=1)
            hidden = layer(hidden, additive_mask, **causal)
        return hidden, self.eos_positions(input_ids).to(hidden.device) + n_ctx

    # ------------------------------------------------------------------ image tower
    def encode_image(
        self,
        pixel_values: torch.Tensor,
        *,
        shallow_prompts: torch.Tensor | None = None,
        deep_prompts: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Image embeddings (B, embed_dim), not normalised, pooled at CLS.

        shallow_prompts: (n, Wv) or (B, n, Wv), appended after CLS + patches before the pre-layer-norm.
        deep_prompts: one tensor per layer 1..J-1, replacing the last n tokens there.
        """
        vision = self.model.vision_model
        hidden = vision.embeddings(pixel_values.to(self.dtype))
        batch = hidden.shape[0]
        n_prompts = 0
        if shallow_prompts is not None:
            prompts = _per_caption(shallow_prompts, batch, hidden.dtype, "shallow_prompts")
            n_prompts = prompts.shape[1]
            hidden = torch.cat([hidden, prompts], dim=1)
        elif deep_prompts:
            raise ValueError("deep_prompts replace the shallow visual prompts; pass shallow_prompts as well")
        if deep_prompts is not None and len(deep_prompts) > self.vision_layers - 1:
            raise ValueError(f"deep_prompts has {len(deep_prompts)} entries; the image tower has layers 1..{self.vision_layers - 1}")
        hidden = vision.pre_layrnorm(hidden)
        for index, layer in enumerate(vision.encoder.layers):
            if index > 0 and deep_prompts is not None and index - 1 < len(deep_prompts):
                replacement = _per_caption(deep_prompts[index - 1], batch, hidden.dtype, f"deep_prompts[{index - 1}]")
                if replacement.shape[1] != n_prompts:
                    raise ValueError(f"deep_prompts[{index - 1}] has {replacement.shape[1]} tokens, expected {n_prompts}")
                hidden = torch.cat([hidden[:, :-n_prompts], replacement], dim=1)
            hidden = layer(hidden, None)
        return self.model.visual_projection(vision.post_layernorm(hidden[:, 0]))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("call encode_text or encode_image")


def _per_caption(tokens: torch.Tensor, batch: int, dtype: torch.dtype, name: str) -> torch.Tensor:
    """(n, W) shared by the batch or (B, n, W) per item, as (B, n, W)."""
    if tokens.dim() == 2:
        return tokens.to(dtype).unsqueeze(0).expand(batch, -1, -1)
    if tokens.dim() == 3 and tokens.shape[0] == batch:
        return tokens.to(dtype)
    raise ValueError(f"{name} has shape {tuple(tokens.shape)}; expected (n, W) or ({batch}, n, W)")


def _causal_padding_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, S, S): a token sees itself and earlier tokens that are not padding."""
    sequence = keep.shape[1]
    causal = torch.ones(sequence, sequence, dtype=torch.bool, device=keep.device).tril()
    allowed = causal.unsqueeze(0) & keep.unsqueeze(1)
    # The dtype's minimum rather than -inf: a fully masked row then softmaxes to finite values, not NaN.
    additive = torch.zeros(allowed.shape, dtype=dtype, device=keep.device)
    additive.masked_fill_(~allowed, torch.finfo(dtype).min)
    return additive.unsqueeze(1)


def _refuse_pickled_weights(folder: Path) -> None:
    """A model folder whose weights are pickles (pytorch_model.bin, *.pt, ...) and not safetensors: a
    named error before anything is read from it."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_WEIGHT_SUFFIXES)
    if pickles:
        raise FdrdError(
            f"{folder}: weights in {', '.join(pickles[:3])} are pickles, which can run code when loaded and are "
            "never opened; convert them to model.safetensors (save_pretrained does by default) or use a "
            "checkpoint that ships safetensors"
        )


def _folder_weights_hash(folder: Path) -> str:
    """Content hash of a local checkpoint's weight files (the revision a results file records)."""
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(folder.glob(pattern))
        if files:
            digest = hashlib.sha256()
            for path in files:
                digest.update(path.name.encode())
                digest.update(sha256_file(path).encode())
            return "sha256:" + digest.hexdigest()
    raise FdrdError(f"{folder}: no weight files ({', '.join(_WEIGHT_PATTERNS)}); the model folder is incomplete")


def normalize(features: torch.Tensor) -> torch.Tensor:
    """L2 normalisation along the last axis, as every retrieval score here uses it."""
    return F.normalize(features, dim=-1)
