"""MaPLe: recipe defaults, coupled prompts (sizes, initialisation, coupling per layer) on ViT-B/32-, B/16- and
L/14-shaped tiny models, gradients, and learning."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from benchmark.methods.base import config_notes, get_method, resolve_config, resolve_run
from fdrd.errors import FdrdError

CAPTIONS = [
    "a red striped star with five points",
    "a small blue plain flower on a dark background",
    "a large green dotted leaf",
    "a yellow kite with six points on a grey background",
]


def build(backbone, **overrides):
    cls = get_method("maple")
    return cls(backbone, resolve_config(cls, overrides))


def batch_for(method, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = method.backbone.image_size
    tokens = method.tokenize(CAPTIONS)
    return {"pixel_values": torch.randn(len(CAPTIONS), 3, size, size, generator=generator),
            "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
            "category_id": torch.arange(len(CAPTIONS))}


def test_defaults_are_maples_public_recipe():
    config = resolve_config(get_method("maple"))
    # configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml
    assert (config.n_ctx, config.depth, config.ctx_init) == (2, 9, "a photo of a")
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 0.0035, 0.9, 5e-4)
    assert (config.batch_size, config.epochs, config.warmup_epochs, config.warmup_lr) == (4, 5, 1, 1e-5)
    assert config.augment is True and config.prompt_init_std == 0.02
    # The recipe's 5 epochs fit the offline demo (perf/method_step_time.py): its quick preset keeps them.
    assert resolve_run("maple", preset="quick").config == config


def test_uses_no_feature_cache(tiny_backbone):
    method = build(tiny_backbone)
    assert method.uses_feature_cache is False and method.frozen_prompt_free_images is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"n_ctx": "0"}, "n_ctx must be at least 1"), ({"n_ctx": "-2"}, "n_ctx must be at least 1"),
     ({"depth": "0"}, "depth must be at least 1"), ({"prompt_init_std": "-0.1"}, "must not be negative")],
)
def test_untrainable_configs_are_refused(overrides, message):
    with pytest.raises(FdrdError, match=message):
        resolve_config(get_method("maple"), overrides)


def test_parameters_match_the_formula_on_every_shape(shaped_backbone):
    backbone = shaped_backbone
    config = backbone.model.config
    text_width, vision_width = config.text_config.hidden_size, config.vision_config.hidden_size
    text_layers, vision_layers = config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers
    assert len({text_width, vision_width, config.projection_dim}) == 3
    for n_ctx, depth in ((2, 9), (3, 2), (1, 1)):
        torch.manual_seed(0)
        method = build(backbone, n_ctx=n_ctx, depth=depth)
        used = min(depth, text_layers, vision_layers)  # coupled prompts need both towers' layer
        expected = used * (n_ctx * text_width + text_width * vision_width + vision_width)
        assert sum(p.numel() for p in method.trainable_parameters()) == expected
        assert method.result_fields() == {"prompt_depth": {"config": depth, "used": used}}
        assert sorted(tuple(p.shape) for p in method.prompts.text) == [(n_ctx, text_width)] * used
        for coupling in method.prompts.couplings:
            assert tuple(coupling.weight.shape) == (vision_width, text_width)
            assert tuple(coupling.bias.shape) == (vision_width,)
        deeper = method.prompts.couplings[1:]
        # Deeper couplings start as copies of one layer (MaPLe's _get_clones), as separate parameters.
        assert all(torch.equal(c.weight, deeper[0].weight) and torch.equal(c.bias, deeper[0].bias) for c in deeper)
        assert len({id(c.weight) for c in deeper}) == len(deeper)
        assert all(not p.requires_grad for p in backbone.parameters())


def test_initialisation_follows_maples_code(tiny_backbone):
    torch.manual_seed(0)
    method = build(tiny_backbone, depth=2)
    # The first n_ctx tokens of "a photo of a" after SOS, from the checkpoint's own tokenizer and embeddings.
    ids = tiny_backbone.tokenizer("a photo of a")["input_ids"]
    embedding = tiny_backbone.model.text_model.embeddings.token_embedding.weight
    torch.testing.assert_close(method.prompts.text[0].detach(), embedding[ids[1:3]].detach())
    # Deeper prompts N(0, 0.02^2): a wider draw to measure the spread.
    torch.manual_seed(0)
    wide = build(tiny_backbone, n_ctx=64, depth=2)
    assert 0.017 < wide.prompts.text[0].std().item() < 0.023  # n_ctx > 4: random first layer too
    assert 0.017 < wide.prompts.text[1].std().item() < 0.023
    # Deeper couplings are copies of one layer (MaPLe's _get_clones); the first is its own draw.
    couplings = method.prompts.couplings
    assert not torch.equal(couplings[0].weight, couplings[1].weight)


def test_image_prompts_are_the_coupled_text_prompts_of_each_layer(shaped_backbone):
    torch.manual_seed(1)
    method = build(shaped_backbone, n_ctx=2, depth=9)
    batch = batch_for(method)
    prompts = method.prompts
    # e_i = F_i(v_i) = W_i v_i + b_i, layer by layer, computed by hand.
    visual = [text @ coupling.weight.t() + coupling.bias for text, coupling in zip(prompts.text, prompts.couplings,
                                                                                   strict=True)]
    with torch.no_grad():
        expected_images = F.normalize(shaped_backbone.encode_image(
            batch["pixel_values"], shallow_prompts=visual[0], deep_prompts=visual[1:]), dim=-1)
        expected_texts = F.normalize(shaped_backbone.encode_text(
            batch["input_ids"], batch["attention_mask"], shallow_ctx=prompts.text[0], deep_ctx=list(prompts.text[1:])),
            dim=-1)
        torch.testing.assert_close(method.encode_images(batch["pixel_values"]), expected_images)
        torch.testing.assert_close(method.encode_texts(batch["input_ids"], batch["attention_mask"]), expected_texts)
        plain = F.normalize(shaped_backbone.encode_image(batch["pixel_values"]), dim=-1)
    assert expected_images.shape == (len(CAPTIONS), shaped_backbone.embed_dim)
    assert not torch.allclose(expected_images, plain)  # the prompts did reach the image tower
    # Captions are cut so that caption + prompt tokens fit the context.
    assert method.tokenize([" ".join(CAPTIONS * 4)])["input_ids"].shape[1] + 2 == shaped_backbone.context_length


def test_gradients_reach_every_prompt_and_coupling_and_nothing_frozen(shaped_backbone):
    torch.manual_seed(2)
    method = build(shaped_backbone)
    method.train()
    method.loss(batch_for(method))["loss"].backward()
    for name, parameter in method.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name
    method.zero_grad(set_to_none=True)


def test_loss_is_the_symmetric_contrastive_loss_and_falls(tiny_backbone):
    torch.manual_seed(0)
    method = build(tiny_backbone)
    batch = batch_for(method)
    with torch.no_grad():
        images = method.encode_images(batch["pixel_values"])
        texts = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        logits = tiny_backbone.logit_scale * images @ texts.t()
        targets = torch.arange(len(CAPTIONS))
        by_hand = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
        torch.testing.assert_close(method.loss(batch)["loss"], by_hand)
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        loss = method.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_config_notes_and_field_kinds():
    notes = config_notes(resolve_config(get_method("maple")))
    assert "grad_clip" in notes["departures"] and "drop_last_batch" in notes["departures"]
    kinds = {field.name: field.metadata["kind"] for field in dataclasses.fields(get_method("maple").config_class)}
    assert kinds["n_ctx"] == kinds["depth"] == kinds["lr"] == kinds["augment"] == "recipe"
