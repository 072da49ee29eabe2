"""Cost of ClipBackbone's own forward (with its prompt hooks) against transformers' CLIP forward.

Builds a randomly initialised CLIP with the default CLIPConfig sizes (those of ViT-B/32: 224 px,
patch 32, widths 768/512, 12 + 12 layers; nothing is downloaded), then times, in one run:
  text:  CLIPModel.get_text_features  vs  ClipBackbone.encode_text  (plain, and with 16 context tokens: a longer sequence)
  image: CLIPModel.get_image_features vs  ClipBackbone.encode_image (plain, and with 2 visual prompts)
and prints each as a ratio to the transformers path (goal: plain <= 1.05x).

    .venv/bin/python perf/backbone_overhead.py [--batch 16] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import torch


def best_times(repeats: int, functions: dict) -> dict:
    """Fastest of `repeats` runs of each function, run round-robin so that load changes on a shared
    machine hit every variant alike."""
    for function in functions.values():
        function()  # warm-up
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from transformers import CLIPConfig, CLIPModel

    from benchmark.backbone import ClipBackbone
    from benchmark.tiny import train_tokenizer

    captions = [f"a photo of a {word} bird with a long tail, seen from the side" for word in
                ("red", "blue", "green", "brown", "black", "white", "small", "large")]
    tokenizer = train_tokenizer(captions, vocab_size=500, context_length=77)
    config = CLIPConfig(text_config={"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
                                     "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    backbone = ClipBackbone(model, tokenizer, None, model_id="random-vit-b32", revision="none")
    backbone.set_frozen(True)

    batch_captions = (captions * (args.batch // len(captions) + 1))[: args.batch]
    tokens = backbone.tokenize(batch_captions, reserve=16)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    pixels = torch.randn(args.batch, 3, backbone.image_size, backbone.image_size)
    ctx = torch.randn(16, backbone.text_width) * 0.02
    prompts = torch.randn(2, backbone.vision_width) * 0.02

    with torch.no_grad():
        best = best_times(args.repeats, {
            "hf_text": lambda: model.get_text_features(input_ids=ids, attention_mask=mask),
            "text": lambda: backbone.encode_text(ids, mask),
            "ctx_text": lambda: backbone.encode_text(ids, mask, shallow_ctx=ctx),
            "hf_image": lambda: model.get_image_features(pixel_values=pixels),
            "image": lambda: backbone.encode_image(pixels),
            "prompt_image": lambda: backbone.encode_image(pixels, shallow_prompts=prompts),
        })
    rows = [
        ("text, plain", best["hf_text"], best["text"]),
        ("text, 16 context tokens", best["hf_text"], best["ctx_text"]),
        ("image, plain", best["hf_image"], best["image"]),
        ("image, 2 visual prompts", best["hf_image"], best["prompt_image"]),
    ]
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, best of {args.repeats}; "
          f"caption length {ids.shape[1]} tokens, {backbone.image_size} px / patch {backbone.patch_size}")
    for name, reference, ours in rows:
        print(f"{name:26s} transformers {reference * 1e3:8.1f} ms   backbone {ours * 1e3:8.1f} ms   "
              f"ratio {ours / reference:5.2f}x")


if __name__ == "__main__":
    main()
