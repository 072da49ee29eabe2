"""Cost of ClipBackbone's own forward (with its prompt hooks) against transformers' CLIP forward.

Builds a randomly initialised CLIP with the default CLIPConfig sizes (those of ViT-B/32: 224 px,
patch 32, widths 768/512, 12 + 12 layers; nothing is downloaded), then times, in one run:
  text:  CLIPModel.get_text_features  vs  ClipBackbone.encode_text  (plain, and with 16 context tokens)
  image: CLIPModel.get_image_features vs  ClipBackbone.encode_image (plain, and with 2 visual prompts)
and prints each as a ratio to the transformers path (goal: plain <= 1.05x).

    .venv/bin/python perf/backbone_overhead.py [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch


def best_of(repeats: int, function) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
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

    rows = []
    with torch.no_grad():
        hf_text = best_of(args.repeats, lambda: model.get_text_features(input_ids=ids, attention_mask=mask))
        ours_text = best_of(args.repeats, lambda: backbone.encode_text(ids, mask))
        ctx_text = best_of(args.repeats, lambda: backbone.encode_text(ids, mask, shallow_ctx=ctx))
        hf_image = best_of(args.repeats, lambda: model.get_image_features(pixel_values=pixels))
        ours_image = best_of(args.repeats, lambda: backbone.encode_image(pixels))
        prompt_image = best_of(args.repeats, lambda: backbone.encode_image(pixels, shallow_prompts=prompts))
    rows.append(("text, plain", hf_text, ours_text))
    rows.append(("text, 16 context tokens", hf_text, ctx_text))
    rows.append(("image, plain", hf_image, ours_image))
    rows.append(("image, 2 visual prompts", hf_image, prompt_image))
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, best of {args.repeats}; "
          f"caption length {ids.shape[1]} tokens, {backbone.image_size} px / patch {backbone.patch_size}")
    for name, reference, ours in rows:
        print(f"{name:26s} transformers {reference * 1e3:8.1f} ms   backbone {ours * 1e3:8.1f} ms   "
              f"ratio {ours / reference:5.2f}x")


if __name__ == "__main__":
    main()
