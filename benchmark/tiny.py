"""A tiny CLIP for offline use: built from a config, with a tokenizer trained on the captions at hand.

`build_tiny_clip(spec, captions)` returns a randomly initialised `CLIPModel`, a byte-level BPE
tokenizer trained with `tokenizers` (wrapped as a transformers fast tokenizer that adds SOS/EOS like
CLIP's) and a CLIP image processor for `spec.image_size`. `save_tiny_clip` writes all three with
`save_pretrained`, so `ClipBackbone.from_pretrained(folder)` loads it by the same path as a Hub
checkpoint. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmark.hf_bars import quiet_transformers_bars
from fdrd.errors import FdrdError

SOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<|pad|>", "<|unk|>"
# CLIP's image normalisation constants: the tiny model keeps CLIP's preprocessing so that swapping in
# a real checkpoint changes nothing else.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class TinyClipSpec:
    """Sizes of a tiny CLIP; every field becomes part of the saved CLIPConfig."""

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    text_width: int = 64
    text_layers: int = 2
    heads: int = 2
    embed_dim: int = 64
    context_length: int = 77
    vocab_size: int = 1000
    mlp_ratio: int = 4

    def check(self) -> None:
        """FdrdError naming every size that cannot make a CLIP (before anything is built or read)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        bad = [f"{name} {value!r}" for name, value in fields.items() if isinstance(value, bool) or not isinstance(value, int) or value < 1]
        if bad:
            raise FdrdError(f"tiny CLIP spec: {', '.join(bad)}: sizes must be positive whole numbers")
        problems = []
        if self.patch_size > self.image_size:
            problems.append(f"patch size {self.patch_size} is larger than the image size {self.image_size}")
        elif self.image_size % self.patch_size:
            problems.append(f"image size {self.image_size} is not a multiple of patch size {self.patch_size}")
        for width_name in ("vision_width", "text_width"):
            if getattr(self, width_name) % self.heads:
                problems.append(f"{width_name} {getattr(self, width_name)} is not divisible by {self.heads} heads")
        if self.context_length < 8:
            problems.append(f"context length {self.context_length} leaves no room for captions")
        if problems:
            raise FdrdError("tiny CLIP spec: " + "; ".join(problems))


def train_tokenizer(captions: Iterable[str], vocab_size: int, context_length: int) -> Any:
    """A lower-casing byte-level BPE tokenizer trained on `captions`, adding SOS ... EOS like CLIP's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [caption for caption in captions if caption and caption.strip()]
    if not texts:
        raise FdrdError("tiny tokenizer: no non-empty captions to train on; pass captions or a built dataset")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    # Split on whitespace and punctuation first so merges stay inside words; byte-level fallback means
    # an unseen word at test time still tokenises (into pieces) instead of becoming UNK.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SOS, EOS, PAD, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    sos_id, eos_id = tokenizer.token_to_id(SOS), tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SOS} $A {EOS}", special_tokens=[(SOS, sos_id), (EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=SOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=context_length,
    )


def image_processor_for(image_size: int) -> Any:
    """CLIP's preprocessing (shortest-edge resize, centre crop, CLIP mean/std) at `image_size`."""
    try:  # Without torchvision transformers falls back to the PIL processor anyway; ask for it directly.
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:
        from transformers import CLIPImageProcessor as Processor
    return Processor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def build_tiny_clip(spec: TinyClipSpec, captions: Iterable[str], seed: int = 0) -> tuple[Any, Any, Any]:
    """(CLIPModel, tokenizer, image processor), the model initialised deterministically from `seed`."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    spec.check()
    tokenizer = train_tokenizer(captions, spec.vocab_size, spec.context_length)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.text_width,
            "intermediate_size": spec.text_width * spec.mlp_ratio,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.heads,
            "max_position_embeddings": spec.context_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": spec.vision_width,
            "intermediate_size": spec.vision_width * spec.mlp_ratio,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        projection_dim=spec.embed_dim,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.eval()
    return model, tokenizer, image_processor_for(spec.image_size)


def save_tiny_clip(out: str | Path, spec: TinyClipSpec, captions: Iterable[str], seed: int = 0) -> Path:
    """Build a tiny CLIP and write it where `ClipBackbone.from_pretrained(out)` finds it."""
    model, tokenizer, processor = build_tiny_clip(spec, captions, seed)
    return save_clip(out, model, tokenizer, processor)


def save_clip(out: str | Path, model: Any, tokenizer: Any, processor: Any) -> Path:
    """Write model, tokenizer and image processor into one folder, the layout of a Hub checkpoint."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    return out

