"""Methods: registry, config resolution from --set strings, and zeroshot / coop / clip_adapter behaviour."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import pytest
import torch
import torch.nn.functional as F

from benchmark.methods.base import (
    Method,
    MethodConfig,
    available_methods,
    contrastive_losses,
    get_method,
    parse_set_options,
    resolve_config,
    why,
)
from fdrd.errors import FdrdError

CAPTIONS = [
    "a red striped star with five points",
    "a small blue plain flower on a dark background",
    "a large green dotted leaf",
    "a yellow kite with six points on a grey background",
    "a purple checked shell, medium",
    "an orange crystal on a sandy background",
]


def make_batch(method, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = method.backbone.image_size
    pixels = torch.randn(len(CAPTIONS), 3, size, size, generator=generator)
    tokens = method.tokenize(CAPTIONS)
    return {"pixel_values": pixels, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
            "category_id": torch.arange(len(CAPTIONS))}


def build(name, backbone, **overrides):
    cls = get_method(name)
    return cls(backbone, resolve_config(cls, overrides))


# ------------------------------------------------------------------ registry and configs
def test_registry_knows_the_methods_and_names_them_on_error():
    assert {"zeroshot", "coop", "clip_adapter"} <= set(available_methods())
    with pytest.raises(FdrdError, match="known methods and variants: .*clip_adapter.*coop.*zeroshot"):
        get_method("cocoop")
    with pytest.raises(KeyError):  # also a KeyError, for code that looks methods up like a dict
        get_method("cocoop")


def test_every_config_field_has_a_reason():
    for name in available_methods():
        for field in dataclasses.fields(get_method(name).config_class):
            assert field.metadata.get("why"), f"{name}.{field.name} has no reason"


@dataclasses.dataclass
class ParsingConfig(MethodConfig):
    flag: bool = why(False, "test")
    count: int = why(3, "test")
    names: list[str] = why(["a"], "test")
    sizes: list[int] = why([1], "test")
    limit: int | None = why(None, "test")
    mode: Literal["off", "train_only", "head"] = why("head", "test")


class ParsingMethod(Method):
    name: ClassVar[str] = "parsing"
    config_class: ClassVar[type[MethodConfig]] = ParsingConfig


def test_resolve_config_parses_strings_to_field_types():
    config = resolve_config(ParsingMethod, {
        "lr": "0.01", "epochs": "7", "flag": "true", "names": "x, y", "sizes": "2,3", "limit": "none",
        "mode": "train_only", "optimizer": "adamw",
    })
    assert (config.lr, config.epochs, config.flag, config.names, config.sizes, config.limit, config.mode,
            config.optimizer) == (0.01, 7, True, ["x", "y"], [2, 3], None, "train_only", "adamw")
    assert resolve_config(ParsingMethod, {"limit": "5", "flag": "0"}).limit == 5
    assert resolve_config(ParsingMethod, {"count": 4, "lr": 1}).lr == 1.0  # typed values pass through
    assert resolve_config(ParsingMethod, {}) == ParsingConfig()
    # Defaults are per method: CoOp's from dcar-method.md.
    coop = resolve_config(get_method("coop"))
    assert (coop.n_ctx, coop.lr, coop.warmup_lr) == (16, 0.002, 1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_ctx": "4"}, "unknown config field 'n_ctx'; valid fields: .*batch_size.*lr"),
        ({"epochs": "2.5"}, "epochs='2.5': expected an integer"),
        ({"epochs": True}, "expected an integer"),
        ({"lr": "fast"}, "expected a number"),
        ({"flag": "maybe"}, "expected a boolean"),
        ({"mode": "sometimes"}, "expected one of off, train_only, head"),
        ({"sizes": "1,x"}, "expected an integer"),
    ],
)
def test_resolve_config_rejects_bad_overrides(overrides, message):
    with pytest.raises(FdrdError, match=message):
        resolve_config(ParsingMethod, overrides)


def test_parse_set_options():
    assert parse_set_options(["lr=0.1", " n_ctx = 4 ", "ctx_init=a photo=of"]) == {
        "lr": "0.1", "n_ctx": "4", "ctx_init": "a photo=of"}
    with pytest.raises(FdrdError, match="expected field=value"):
        parse_set_options(["lr"])


# ------------------------------------------------------------------ methods
@torch.no_grad()
def test_zeroshot_equals_backbone_features(tiny_backbone):
    method = build("zeroshot", tiny_backbone)
    assert method.trainable_parameters() == []
    batch = make_batch(method)
    expected_images = F.normalize(tiny_backbone.model.get_image_features(
        pixel_values=batch["pixel_values"]).pooler_output, dim=-1)
    expected_texts = F.normalize(tiny_backbone.model.get_text_features(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output, dim=-1)
    torch.testing.assert_close(method.encode_images(batch["pixel_values"]), expected_images, atol=1e-5, rtol=0)
    torch.testing.assert_close(method.encode_texts(batch["input_ids"], batch["attention_mask"]), expected_texts,
                               atol=1e-5, rtol=0)
    cached = {**batch, "image_features": method.frozen_image_features(batch.pop("pixel_values"))}
    torch.testing.assert_close(method.image_embeddings(cached), expected_images, atol=1e-5, rtol=0)


def test_contrastive_loss_matches_a_loop_reference():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    scale = 7.0
    total = 0.0
    for i in range(5):  # -log softmax of the positive, each row and each column
        row = [scale * float(images[i] @ texts[j]) for j in range(5)]
        col = [scale * float(images[j] @ texts[i]) for j in range(5)]
        total += -row[i] + torch.logsumexp(torch.tensor(row), 0).item()
        total += -col[i] + torch.logsumexp(torch.tensor(col), 0).item()
    assert contrastive_losses(images, texts, scale)["loss"].item() == pytest.approx(total / 10, rel=1e-5)


@pytest.mark.parametrize("name, overrides", [("coop", {"n_ctx": "4"}), ("coop", {}), ("clip_adapter", {})])
def test_loss_decreases_over_a_few_steps(tiny_backbone, name, overrides):
    torch.manual_seed(0)
    method = build(name, tiny_backbone, **overrides)
    method.train()
    assert not tiny_backbone.model.training  # the frozen backbone never leaves eval mode
    batch = make_batch(method)
    if method.frozen_prompt_free_images:
        batch["image_features"] = method.frozen_image_features(batch.pop("pixel_values"))
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = method.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    assert all(p.grad is None for p in tiny_backbone.parameters())


def test_coop_context_tokens_and_init(tiny_backbone):
    torch.manual_seed(0)
    coop = build("coop", tiny_backbone)
    assert [tuple(p.shape) for p in coop.trainable_parameters()] == [(16, tiny_backbone.text_width)]
    assert coop.prompt_token_count == 16
    assert 0.015 < coop.ctx.std().item() < 0.025  # N(0, 0.02^2)
    # "a photo of a" is used when n_ctx equals its token count.
    words = tiny_backbone.tokenize(["a photo of a"])
    n_words = int(words["attention_mask"].sum()) - 2
    from_text = build("coop", tiny_backbone, n_ctx=str(n_words))
    expected = tiny_backbone.model.text_model.embeddings.token_embedding(words["input_ids"][0, 1 : 1 + n_words])
    torch.testing.assert_close(from_text.ctx.detach(), expected)
    # Captions are cut so that caption + context fit the context length, and the cut is reported.
    long_caption = " ".join(CAPTIONS * 3)
    tokens = coop.tokenize([long_caption, CAPTIONS[0]])
    assert tokens["truncated"].tolist() == [True, False]
    assert tokens["input_ids"].shape[1] + 16 == tiny_backbone.context_length
    with torch.no_grad():
        embedded = coop.encode_texts(tokens["input_ids"], tokens["attention_mask"])
        plain = F.normalize(tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"],
                                                      shallow_ctx=coop.ctx), dim=-1)
    torch.testing.assert_close(embedded, plain)
    torch.testing.assert_close(embedded.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize(("name", "text", "n_ctx"), [
    ("coop", "a photo of a", "tokens + 1"),  # CoOp: the text must have exactly n_ctx tokens
    ("coop", "", 3),
    ("maple", "a", "tokens + 1"),  # MaPLe: at least n_ctx tokens
    ("maple", "photo " * 200, 2),  # cut to fit the context: not the text any more
    ("maple", "a photo of a photo of a", 5),  # more than 4 prompt tokens: never from the text
])
def test_prompt_init_falls_back_to_a_normal_draw(tiny_backbone, name, text, n_ctx):
    tokens = len(tiny_backbone.tokenizer(text)["input_ids"]) - 2
    n_ctx = tokens + 1 if n_ctx == "tokens + 1" else n_ctx
    torch.manual_seed(4)
    expected = torch.randn(n_ctx, tiny_backbone.text_width) * 0.02
    torch.manual_seed(4)
    method = build(name, tiny_backbone, n_ctx=str(n_ctx), ctx_init=text)
    first = method.ctx if name == "coop" else method.prompts.text[0]
    torch.testing.assert_close(first.detach(), expected)


@torch.no_grad()
def test_clip_adapter_blends_a_bias_free_bottleneck(tiny_backbone):
    torch.manual_seed(0)
    adapter = build("clip_adapter", tiny_backbone, ratio="0.3")
    width = tiny_backbone.embed_dim
    shapes = sorted(tuple(p.shape) for p in adapter.trainable_parameters())
    assert shapes == sorted([(width // 4, width), (width, width // 4)])  # no biases, widths from config
    features = torch.randn(5, width)
    down, up = adapter.adapter[0].weight, adapter.adapter[2].weight
    by_hand = 0.3 * torch.relu(torch.relu(features @ down.t()) @ up.t()) + 0.7 * features
    torch.testing.assert_close(adapter.images_from_features(features), F.normalize(by_hand, dim=-1))
    batch = make_batch(adapter)
    direct = adapter.encode_images(batch["pixel_values"])
    cached = adapter.image_embeddings({"image_features": adapter.frozen_image_features(batch["pixel_values"])})
    torch.testing.assert_close(direct, cached)
    # Captions stay plain CLIP.
    texts = adapter.encode_texts(batch["input_ids"], batch["attention_mask"])
    zeroshot = build("zeroshot", tiny_backbone).encode_texts(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(texts, zeroshot)


def test_cached_features_refused_for_prompted_images(tiny_backbone):
    class Prompted(Method):
        name: ClassVar[str] = "prompted"

    method = Prompted(tiny_backbone, MethodConfig())
    with pytest.raises(ValueError, match="not frozen and prompt-free"):
        method.image_embeddings({"image_features": torch.zeros(2, tiny_backbone.embed_dim)})
    with pytest.raises(TypeError, match="needs a CoOpConfig"):
        get_method("coop")(tiny_backbone, MethodConfig())


# ------------------------------------------------------------------ per-method recipes
@pytest.mark.parametrize("name", ["coop", "clip_adapter"])
def test_coop_style_epochs_follow_the_shots_unless_set(name):
    config = resolve_config(get_method(name))
    assert config.epochs is None  # decided by the shots drawn
    # CoOp's scripts: rn50_ep50 at 1 shot, rn50_ep100 at 2 and 4 shots, rn50 (200 epochs) at 8 and 16.
    assert [config.for_shots(shots).epochs for shots in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert config.for_shots(None).epochs == 200  # every record
    assert resolve_config(get_method(name), {"epochs": "7"}).for_shots(1).epochs == 7  # an explicit value wins
    # configs/trainers/CoOp/vit_b32.yaml (CLIP-Adapter's README says to run it with CoOp's commands).
    assert (config.batch_size, config.lr, config.optimizer, config.momentum, config.weight_decay) == \
        (32, 0.002, "sgd", 0.9, 5e-4)
    assert (config.warmup_epochs, config.warmup_lr) == (1, 1e-5)


def test_clip_adapter_and_coop_method_specific_defaults():
    coop = resolve_config(get_method("coop"))
    assert (coop.n_ctx, coop.ctx_init_std) == (16, 0.02)
    adapter = resolve_config(get_method("clip_adapter"))
    assert (adapter.reduction, adapter.ratio) == (4, 0.2)


@pytest.mark.parametrize("name", ["coop", "clip_adapter"])
def test_no_augmentation_is_a_named_departure_that_keeps_the_cache(tiny_backbone, name):
    from benchmark.methods.base import config_notes

    config = resolve_config(get_method(name))
    notes = config_notes(config)
    assert notes["departures"]["augment"]["value"] is False and "cache" in notes["departures"]["augment"]["why"]
    assert "drop_last_batch" in notes["departures"] and "grad_clip" in notes["departures"]
    assert build(name, tiny_backbone).uses_feature_cache
    assert not build(name, tiny_backbone, augment="true").uses_feature_cache


def test_every_method_has_a_quick_preset_that_shortens_or_keeps_its_schedule():
    from benchmark.methods.base import resolve_run

    for name in available_methods():
        cls = get_method(name)
        assert "quick" in cls.presets and cls.presets["quick"].reason, name
        quick = resolve_run(name, preset="quick").config.for_shots(16)
        full = resolve_config(cls).for_shots(16)
        assert quick.epochs <= full.epochs, name


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [("coop", {"n_ctx": "0"}, "n_ctx must be at least 1"), ("coop", {"ctx_init_std": "-1"}, "must not be negative"),
     ("clip_adapter", {"reduction": "0"}, "reduction must be at least 1"),
     ("clip_adapter", {"ratio": "1.5"}, "ratio blends"), ("coop", {"epochs": "-1"}, "epochs must be 0 or more")],
)
def test_baseline_configs_refuse_what_cannot_train(name, overrides, message):
    with pytest.raises(FdrdError, match=message):
        resolve_config(get_method(name), overrides)
