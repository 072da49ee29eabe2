"""A tiny, randomly initialised image-text-to-text model saved as a folder, for offline tests and perf.

Nothing is downloaded: the tokenizer is trained here with `tokenizers` on a handful of words, the
model is a LLaVA (CLIP vision tower + Llama text tower, both natively implemented by transformers)
built from a config, and the processor carries a chat template. The folder then loads through the
exact code path a Hub id takes (`AutoProcessor` / `AutoModelForImageTextToText.from_pretrained`).
"""

from __future__ import annotations

from pathlib import Path

# Words the tokenizer knows, so that random generations decode to readable (if meaningless) text.
_VOCABULARY_TEXT = (
    "a an the small large red green blue yellow black white brown striped spotted furry shiny "
    "dog cat bird flower car plane dish sitting standing flying on in with grass sky road table "
    "background main object scene describe colour pattern size shape pose of and is photo"
)
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ("<unk>", "<pad>", "<s>", "</s>", IMAGE_TOKEN)

# A minimal chat template: user text with the image placeholder first, then the generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}:"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %} {{ part['text'] }}{% endif %}"
    "{% endfor %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _train_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS))
    backend.train_from_iterator([_VOCABULARY_TEXT], trainer=trainer)
    from tokenizers import decoders

    backend.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
    )


def build_tiny_vlm(folder: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                   hidden_size: int = 32, layers: int = 2) -> Path:
    """Write a tiny LLaVA model + processor to `folder` and return it. Deterministic in `seed`."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = Path(folder)
    tokenizer = _train_tokenizer()
    vision_config = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=hidden_size,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    # "full" keeps every patch feature plus CLS, so the processor must add one extra token.
    num_image_tokens = (image_size // patch_size) ** 2 + 1
    config = LlavaConfig(
        vision_config=vision_config, text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=num_image_tokens, vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    # Random weights may emit end-of-sequence at once; a few forced tokens keep test captions non-empty.
    model.generation_config.min_new_tokens = 3
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="full", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
