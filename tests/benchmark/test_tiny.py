"""Tiny CLIP factory: save/load round trip through ClipBackbone.from_pretrained, tokenizer, spec checks, CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from benchmark.backbone import ClipBackbone
from benchmark.tiny import TinyClipSpec, build_tiny_clip, save_tiny_clip, train_tokenizer
from fdrd.errors import FdrdError

SMALL = TinyClipSpec(image_size=32, patch_size=8, vision_width=32, text_width=32, heads=2, embed_dim=16,
                     context_length=24, vocab_size=300)


def test_round_trip_through_from_pretrained(tmp_path, caption_corpus):
    model, tokenizer, _ = build_tiny_clip(SMALL, caption_corpus, seed=3)
    folder = save_tiny_clip(tmp_path / "tiny", SMALL, caption_corpus, seed=3)
    loaded = ClipBackbone.from_pretrained(folder)
    # Same seed and captions rebuild the same model, and the saved copy loads back bit for bit.
    saved = loaded.model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved[name], tensor), name
    assert (loaded.image_size, loaded.patch_size, loaded.context_length, loaded.embed_dim) == (32, 8, 24, 16)
    assert loaded.text_width == 32 and loaded.vision_width == 32
    assert loaded.model.config.text_config.vocab_size == len(tokenizer)
    caption = caption_corpus[5]
    assert loaded.tokenizer(caption)["input_ids"] == tokenizer(caption)["input_ids"]
    from PIL import Image

    pixels = loaded.preprocess([Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("L", (32, 32), 128)])
    assert pixels.shape == (2, 3, 32, 32)
    other = build_tiny_clip(SMALL, caption_corpus, seed=4)[0]
    assert not torch.equal(other.text_projection.weight, model.text_projection.weight)


def test_tokenizer_adds_sos_eos_lowercases_and_splits_unseen_words(caption_corpus):
    tokenizer = train_tokenizer(caption_corpus, vocab_size=400, context_length=77)
    ids = tokenizer("A RED Star")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids == tokenizer("a red star")["input_ids"]
    unseen = tokenizer("zyxquv")["input_ids"]
    assert tokenizer.unk_token_id not in unseen and len(unseen) > 3  # byte-level pieces, never UNK
    assert len(tokenizer) <= 400
    assert tokenizer.pad_token_id not in (tokenizer.bos_token_id, tokenizer.eos_token_id)
    with pytest.raises(FdrdError, match="no non-empty captions"):
        train_tokenizer(["", "  "], vocab_size=100, context_length=77)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_size": 30}, "not a multiple of patch size"),
        ({"text_width": 33}, "not divisible by 2 heads"),
        ({"context_length": 4}, "leaves no room"),
        ({"vision_layers": 0}, "must be positive"),
    ],
)
def test_spec_problems_are_named(changes, message):
    import dataclasses

    with pytest.raises(FdrdError, match=message):
        dataclasses.replace(TinyClipSpec(), **changes).check()


def test_cli_model_tiny(tmp_path, caption_corpus):
    from fdrd.cli import app

    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(caption_corpus) + "\n\n")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["model", "tiny", "--out", str(out), "--captions", str(captions),
                                      "--image-size", "32", "--width", "32", "--layers", "1", "--embed-dim", "16"])
    assert result.exit_code == 0, result.output
    backbone = ClipBackbone.from_pretrained(out)
    assert (backbone.image_size, backbone.text_width, backbone.text_layers, backbone.embed_dim) == (32, 32, 1, 16)

    missing = CliRunner().invoke(app, ["model", "tiny", "--out", str(tmp_path / "x")])
    assert isinstance(missing.exception, FdrdError) and "--captions" in str(missing.exception)
    bad = CliRunner().invoke(app, ["model", "tiny", "--out", str(tmp_path / "y"), "--captions", str(captions),
                                   "--image-size", "30"])
    assert isinstance(bad.exception, FdrdError) and "patch size" in str(bad.exception)
