"""Tiny, randomly initialised image-text-to-text models saved as folders, for offline tests and perf.

Nothing is downloaded: the tokenizer is trained here with `tokenizers` on a handful of words, the
model is built from a config of an architecture transformers implements natively, and the
processor carries a chat template. The folder then loads through the exact code path a Hub id
takes (`AutoProcessor` / `AutoModelForImageTextToText.from_pretrained`).

- "llava": CLIP vision tower + Llama; every image becomes the same number of tokens.
- "idefics3": the architecture of the default captioner (SmolVLM-256M-Instruct); images are split
  into tiles by aspect ratio, so prompts differ in length and batches need left padding.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("llava", "idefics3")
# Words the tokenizer knows, so that random generations decode to readable (if meaningless) text.
_VOCABULARY_TEXT = (
    "a an the small large red green blue yellow black white brown striped spotted furry shiny "
    "dog cat bird flower car plane dish sitting standing flying on in with grass sky road table "
    "background main object scene describe colour pattern size shape pose of and is photo"
)
IMAGE_TOKEN = "<image>"
_BASE_SPECIALS = ("<unk>", "<pad>", "<s>", "</s>", IMAGE_TOKEN)
# Idefics3's processor frames each image tile with these (and row/column markers up to its grid).
_IDEFICS3_SPECIALS = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>") + tuple(
    f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)
)


def _chat_template(end_of_turn: str) -> str:
    """User text with the image placeholder first, then the generation prompt."""
    return (
        "{% for message in messages %}{{ message['role'] }}:"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}<image>{% else %} {{ part['text'] }}{% endif %}"
        "{% endfor %}" + end_of_turn + "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )


def _train_tokenizer(specials: tuple[str, ...]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator([_VOCABULARY_TEXT], trainer=trainers.WordLevelTrainer(special_tokens=list(specials)))
    backend.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN}, padding_side="left",
    )


def _text_config(tokenizer, hidden_size: int, layers: int) -> dict:
    return dict(
        model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def _llava(tokenizer, image_size: int, patch_size: int, hidden_size: int, layers: int):
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vision_config = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=hidden_size,
    )
    text_config = _text_config(tokenizer, hidden_size, layers)
    text_config.pop("model_type")
    # "full" keeps every patch feature plus CLS, so the processor must add one extra token.
    config = LlavaConfig(
        vision_config=vision_config, text_config=LlamaConfig(**text_config),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2 + 1, vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="full", num_additional_image_tokens=1,
        chat_template=_chat_template(""), image_token=IMAGE_TOKEN,
    )
    return LlavaForConditionalGeneration(config), processor


def _idefics3(tokenizer, image_size: int, patch_size: int, hidden_size: int, layers: int):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    scale_factor = 2  # pixel shuffle: each image tile becomes (patches per side / 2)^2 tokens
    config = Idefics3Config(
        vision_config=dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size),
        text_config=_text_config(tokenizer, hidden_size, layers),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), scale_factor=scale_factor,
    )
    # Tiles of image_size; an image's longest edge is resized to at most two tiles.
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size},
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer,
        image_seq_len=(image_size // patch_size) ** 2 // scale_factor ** 2,
        chat_template=_chat_template("<end_of_utterance>"),
    )
    return Idefics3ForConditionalGeneration(config), processor


def build_tiny_vlm(folder: str | Path, architecture: str = "llava", seed: int = 0, image_size: int = 32,
                   patch_size: int = 8, hidden_size: int = 32, layers: int = 2) -> Path:
    """Write a tiny model + processor of `architecture` to `folder` and return it. Deterministic in `seed`."""
    import torch

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown tiny VLM architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}")
    specials = _BASE_SPECIALS + (_IDEFICS3_SPECIALS if architecture == "idefics3" else ())
    tokenizer = _train_tokenizer(specials)
    torch.manual_seed(seed)
    build = _llava if architecture == "llava" else _idefics3
    model, processor = build(tokenizer, image_size, patch_size, hidden_size, layers)
    model.eval()
    generation = model.generation_config
    generation.pad_token_id = tokenizer.pad_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    # Random weights may end at once or emit only special tokens (which decode to nothing); a few
    # forced word tokens keep test captions non-empty.
    generation.min_new_tokens = 3
    generation.suppress_tokens = [tokenizer.convert_tokens_to_ids(t) for t in specials if t != "</s>"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
