"""ClipBackbone: parity with transformers' CLIP, prompt hooks against per-caption references, loading errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.backbone import ClipBackbone
from benchmark.tiny import TinyClipSpec, build_tiny_clip
from fdrd.errors import FdrdError

CAPTIONS = [
    "a red star",
    "a small blue striped flower with seven points on a sandy background",
    "green leaf",
    "a purple dotted kite on a dark background, large",
]


@pytest.fixture(scope="module")
def backbone3():
    """A 3-layer tiny CLIP (so deep prompts reach layers 1 and 2) with a short context, random weights."""
    spec = TinyClipSpec(vision_layers=3, text_layers=3, context_length=40, image_size=32, patch_size=8)
    words = " ".join(CAPTIONS).replace(",", "").split()
    model, tokenizer, processor = build_tiny_clip(spec, CAPTIONS + words, seed=1)
    backbone = ClipBackbone(model, tokenizer, processor, model_id="test", revision="test")
    backbone.set_frozen(True)
    return backbone


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(count)]


# ------------------------------------------------------------------ slow obvious references
def reference_text(backbone, caption_ids, ctx=None, deep=None, scale=None):
    """One caption at a time, no padding: [SOS, ctx, scaled caption tokens, EOS] + positions, causal
    attention, pooled at the last token (the EOS, wherever the context moved it)."""
    text = backbone.model.text_model
    rows = []
    for index, ids in enumerate(caption_ids):
        tokens = text.embeddings.token_embedding(torch.tensor(ids))
        if scale is not None:
            tokens = tokens * scale[index, : len(ids)].unsqueeze(-1)
        pieces = [tokens[:1]]
        n_ctx = 0
        if ctx is not None:
            own = ctx[index] if ctx.dim() == 3 else ctx
            n_ctx = own.shape[0]
            pieces.append(own)
        pieces.append(tokens[1:])
        hidden = torch.cat(pieces).unsqueeze(0)
        length = hidden.shape[1]
        hidden = hidden + text.embeddings.position_embedding.weight[:length]
        causal = torch.full((length, length), float("-inf")).triu(1)[None, None]
        for layer_index, layer in enumerate(text.encoder.layers):
            if deep is not None and 0 < layer_index <= len(deep):
                own = deep[layer_index - 1]
                own = own[index] if own.dim() == 3 else own
                hidden = hidden.clone()
                hidden[0, 1 : 1 + n_ctx] = own
            hidden = layer(hidden, causal)
        rows.append(backbone.model.text_projection(text.final_layer_norm(hidden[0, -1])))
    return torch.stack(rows)


def reference_image(backbone, pixel_values, prompts=None, deep=None):
    vision = backbone.model.vision_model
    rows = []
    for index in range(pixel_values.shape[0]):
        hidden = vision.embeddings(pixel_values[index : index + 1])
        n = 0
        if prompts is not None:
            own = prompts[index] if prompts.dim() == 3 else prompts
            n = own.shape[0]
            hidden = torch.cat([hidden, own.unsqueeze(0)], dim=1)
        hidden = vision.pre_layrnorm(hidden)
        for layer_index, layer in enumerate(vision.encoder.layers):
            if deep is not None and 0 < layer_index <= len(deep):
                own = deep[layer_index - 1]
                own = own[index] if own.dim() == 3 else own
                hidden = hidden.clone()
                hidden[0, -n:] = own
            hidden = layer(hidden, None)
        rows.append(backbone.model.visual_projection(vision.post_layernorm(hidden[0, 0])))
    return torch.stack(rows)


def unpadded(tokens):
    return [row[: int(mask.sum())].tolist() for row, mask in zip(tokens["input_ids"], tokens["attention_mask"], strict=True)]


# ------------------------------------------------------------------ parity with transformers
@torch.no_grad()
def test_plain_features_equal_transformers(tiny_backbone):
    tokens = tiny_backbone.tokenize(CAPTIONS)
    assert tokens["attention_mask"].sum(1).unique().numel() > 1, "the batch must contain padding"
    expected = tiny_backbone.model.get_text_features(
        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
    ).pooler_output
    got = tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    pixels = tiny_backbone.preprocess(random_images(3))
    assert pixels.shape == (3, 3, tiny_backbone.image_size, tiny_backbone.image_size)
    expected = tiny_backbone.model.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(tiny_backbone.encode_image(pixels), expected, atol=1e-5, rtol=0)


def test_sizes_come_from_the_config(backbone3, tiny_backbone):
    assert (backbone3.text_layers, backbone3.vision_layers, backbone3.context_length) == (3, 3, 40)
    assert (backbone3.image_size, backbone3.patch_size) == (32, 8)
    config = tiny_backbone.model.config
    assert tiny_backbone.text_width == config.text_config.hidden_size
    assert tiny_backbone.vision_width == config.vision_config.hidden_size
    assert tiny_backbone.embed_dim == config.projection_dim
    assert tiny_backbone.logit_scale == pytest.approx(float(torch.tensor(config.logit_scale_init_value).exp()))


def test_backbone_is_frozen_by_default(tiny_backbone):
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    assert not tiny_backbone.model.training


# ------------------------------------------------------------------ text hooks
@torch.no_grad()
def test_context_inserted_after_sos_equals_real_tokens_there(tiny_backbone):
    # Context vectors equal to the embeddings of real words must give exactly what CLIP gives for a
    # caption with those words typed after SOS: checks insertion point, positions, masks, moved EOS.
    prefix = tiny_backbone.tokenize(["purple dotted kite"])
    prefix_ids = prefix["input_ids"][0, 1 : int(prefix["attention_mask"][0].sum()) - 1]
    ctx = tiny_backbone.model.text_model.embeddings.token_embedding(prefix_ids)
    tokens = tiny_backbone.tokenize(CAPTIONS, reserve=len(prefix_ids))
    got = tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx)
    typed = tiny_backbone.tokenize(["purple dotted kite " + caption for caption in CAPTIONS])
    expected = tiny_backbone.model.get_text_features(
        input_ids=typed["input_ids"], attention_mask=typed["attention_mask"]
    ).pooler_output
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_shallow_and_deep_context_match_per_caption_reference(backbone3):
    torch.manual_seed(0)
    n_ctx, width = 3, backbone3.text_width
    tokens = backbone3.tokenize(CAPTIONS, reserve=n_ctx)
    ids = unpadded(tokens)
    shared = torch.randn(n_ctx, width)
    per_caption = torch.randn(len(CAPTIONS), n_ctx, width)
    deep = [torch.randn(n_ctx, width), torch.randn(len(CAPTIONS), n_ctx, width)]
    scale = torch.rand(tokens["input_ids"].shape) + 0.5
    for ctx, deep_ctx, token_scale in [(shared, None, None), (per_caption, None, None), (shared, deep, None),
                                       (per_caption, deep[:1], scale), (None, None, scale)]:
        got = backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx,
                                    deep_ctx=deep_ctx, token_scale=token_scale)
        expected = reference_text(backbone3, ids, ctx, deep_ctx, token_scale)
        assert got.shape == (len(CAPTIONS), backbone3.embed_dim)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # A batch without padding takes SDPA's causal fast path instead of an explicit mask.
    longest = tokens["attention_mask"].sum(1).argmax()
    alone = backbone3.encode_text(tokens["input_ids"][longest : longest + 1],
                                  tokens["attention_mask"][longest : longest + 1], shallow_ctx=shared, deep_ctx=deep[:1])
    torch.testing.assert_close(alone, reference_text(backbone3, [ids[longest]], shared, deep[:1]), atol=1e-5, rtol=0)


@torch.no_grad()
def test_deep_context_changes_only_when_given_and_is_checked(backbone3):
    tokens = backbone3.tokenize(CAPTIONS, reserve=2)
    ctx = torch.randn(2, backbone3.text_width)
    base = backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx)
    deep = backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx,
                                 deep_ctx=[torch.randn(2, backbone3.text_width)])
    assert not torch.allclose(base, deep)
    with pytest.raises(ValueError, match="shallow_ctx"):
        backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], deep_ctx=[ctx])
    with pytest.raises(ValueError, match="layers 1..2"):
        backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx, deep_ctx=[ctx] * 3)
    with pytest.raises(ValueError, match="expected 2"):
        backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx, deep_ctx=[ctx[:1]])
    too_long = backbone3.tokenize(["a " * 60])
    with pytest.raises(FdrdError, match="reserve=2"):
        backbone3.encode_text(too_long["input_ids"], too_long["attention_mask"], shallow_ctx=ctx)


@torch.no_grad()
def test_token_scale_one_is_identity_and_padding_scale_is_ignored(tiny_backbone):
    tokens = tiny_backbone.tokenize(CAPTIONS)
    plain = tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"])
    ones = torch.ones(tokens["input_ids"].shape)
    torch.testing.assert_close(
        tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"], token_scale=ones), plain,
        atol=0, rtol=0)
    # Scaling padding (after EOS) cannot matter under causal attention; scaling a word must.
    padding_scaled = ones + 5 * (1 - tokens["attention_mask"])
    torch.testing.assert_close(
        tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"], token_scale=padding_scaled),
        plain, atol=1e-5, rtol=0)
    word_scaled = ones.clone()
    word_scaled[:, 1] = 3.0
    changed = tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"], token_scale=word_scaled)
    assert (changed - plain).abs().amax(dim=1).min() > 1e-4


@torch.no_grad()
def test_text_token_states_end_in_the_pooled_embedding(backbone3):
    tokens = backbone3.tokenize(CAPTIONS, reserve=2)
    ctx = torch.randn(2, backbone3.text_width)
    states = backbone3.text_token_states(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx)
    assert states.shape == (len(CAPTIONS), tokens["input_ids"].shape[1] + 2, backbone3.embed_dim)
    eos = tokens["attention_mask"].sum(1) - 1 + 2
    pooled = backbone3.encode_text(tokens["input_ids"], tokens["attention_mask"], shallow_ctx=ctx)
    torch.testing.assert_close(states[torch.arange(len(CAPTIONS)), eos], pooled, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ tokenize
def test_tokenize_truncates_keeps_eos_and_reports(backbone3):
    eos = backbone3.tokenizer.eos_token_id
    long_caption = " ".join(["red star"] * 40)
    for reserve in (0, 5, 38):
        tokens = backbone3.tokenize(["a red star", long_caption], reserve=reserve)
        lengths = tokens["attention_mask"].sum(1)
        assert int(lengths[1]) == backbone3.context_length - reserve
        assert tokens["input_ids"][1, int(lengths[1]) - 1] == eos
        assert tokens["input_ids"][0, int(lengths[0]) - 1] == eos
        assert tokens["truncated"].tolist() == [reserve == 38, True]  # "a red star" needs 5 tokens
        full = backbone3.tokenizer(long_caption)["input_ids"]
        assert tokens["input_ids"][1, : int(lengths[1]) - 1].tolist() == full[: int(lengths[1]) - 1]
    empty = backbone3.tokenize([])
    assert empty["input_ids"].shape[0] == 0 and empty["truncated"].dtype == torch.bool
    with pytest.raises(FdrdError, match="at least SOS and EOS"):
        backbone3.tokenize(["a"], reserve=backbone3.context_length - 1)


def test_tokenize_exact_fit_is_not_truncated(backbone3):
    words = backbone3.tokenize(["red"])
    per_word = int(words["attention_mask"].sum()) - 2
    caption = " ".join(["red"] * ((backbone3.context_length - 2) // per_word))
    length = len(backbone3.tokenizer(caption)["input_ids"])
    tokens = backbone3.tokenize([caption], reserve=backbone3.context_length - length)
    assert not tokens["truncated"][0] and int(tokens["attention_mask"].sum()) == length


# ------------------------------------------------------------------ image hooks
@torch.no_grad()
def test_visual_prompts_change_outputs_only_when_given(backbone3):
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, backbone3.image_size, backbone3.image_size)
    plain = backbone3.encode_image(pixels)
    torch.testing.assert_close(plain, backbone3.model.get_image_features(pixel_values=pixels).pooler_output,
                               atol=1e-5, rtol=0)
    width = backbone3.vision_width
    shared, per_image = torch.randn(2, width), torch.randn(3, 2, width)
    deep = [torch.randn(2, width), torch.randn(3, 2, width)]
    for prompts, deep_prompts in [(shared, None), (per_image, None), (shared, deep), (per_image, deep[:1])]:
        got = backbone3.encode_image(pixels, shallow_prompts=prompts, deep_prompts=deep_prompts)
        torch.testing.assert_close(got, reference_image(backbone3, pixels, prompts, deep_prompts), atol=1e-5,
                                   rtol=0)
        assert (got - plain).abs().amax(dim=1).min() > 1e-4
    with pytest.raises(ValueError, match="shallow_prompts"):
        backbone3.encode_image(pixels, deep_prompts=deep)
    with pytest.raises(ValueError, match="expected 2"):
        backbone3.encode_image(pixels, shallow_prompts=shared, deep_prompts=[torch.randn(3, width)])


# ------------------------------------------------------------------ loading
def test_from_pretrained_refuses_what_is_not_clip(tmp_path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=50)).save_pretrained(folder)
    with pytest.raises(FdrdError, match="not CLIP-like"):
        ClipBackbone.from_pretrained(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FdrdError, match="no config.json"):
        ClipBackbone.from_pretrained(tmp_path / "empty")


def test_revision_is_the_weights_content_hash(tiny_clip_dir, tmp_path):
    import shutil

    first = ClipBackbone.from_pretrained(tiny_clip_dir)
    assert first.revision.startswith("sha256:") and first.model_id == str(tiny_clip_dir)
    assert ClipBackbone.from_pretrained(tiny_clip_dir).revision == first.revision
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    first.model.logit_scale.data += 1
    first.model.save_pretrained(copy)
    assert ClipBackbone.from_pretrained(copy).revision != first.revision
    config = json.loads((copy / "config.json").read_text())
    assert config["model_type"] == "clip"
