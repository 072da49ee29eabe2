"""DCAR: token weights against the formula computed from the frozen model's own layers, the head at
evaluation, L_cate by hand, parameter counts on three shapes, gradients, variants and paper-fixed defaults,
learning, and bit-identical resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.data import SplitBatches
from benchmark.evaluation import encode_split
from benchmark.methods.base import get_method, resolve_config, resolve_run
from benchmark.methods.dcar import category_matching_loss
from benchmark.train import train
from fdrd.errors import FdrdError

CPU = torch.device("cpu")
CAPTIONS = [
    "a red striped star with five points",
    "a small blue plain flower on a dark background",
    "a large green dotted leaf",
    "a yellow kite",
]
METAS = {"bellflower": ["ring bellflower", "dot bellflower", "bar bellflower"], "prism": ["three prism", "four prism"]}


def build(name, backbone, **overrides):
    spec = resolve_run(name, overrides)
    return spec.method_cls(backbone, spec.config)


def frozen_hand_states(backbone, input_ids, attention_mask):
    """Every token's final state through the final layer norm and the text projection, from transformers'
    own CLIPTextModel (whose last_hidden_state is already layer-normed)."""
    with torch.no_grad():
        hidden = backbone.model.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return backbone.model.text_projection(hidden).double()


def frozen_hand_image(backbone, pixels):
    with torch.no_grad():
        return backbone.model.get_image_features(pixel_values=pixels).pooler_output.double()


def hand_weights(raw_rows, lengths, beta, width):
    """Mean-one normalisation over positions 1..EOS-1 of each caption, then 1 + beta (norm - 1); 1 elsewhere."""
    out = torch.ones(len(raw_rows), width, dtype=torch.float64)
    for row, (raw, length) in enumerate(zip(raw_rows, lengths, strict=True)):
        content = list(range(1, length - 1))  # SOS at 0, EOS at length - 1
        if not content:
            continue
        mean = sum(raw[j] for j in content) / len(content)
        for j in content:
            out[row, j] = 1 + beta * (raw[j] / mean - 1)
    return out


def cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# ------------------------------------------------------------------ token weights
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_teacher_weights_equal_the_formula(tiny_backbone, beta):
    torch.manual_seed(0)
    method = build("dcar", tiny_backbone, beta=beta)
    tokens = method.tokenize(CAPTIONS)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert mask.sum(1).unique().numel() > 1, "the batch must contain padding"
    pixels = torch.randn(len(CAPTIONS), 3, tiny_backbone.image_size, tiny_backbone.image_size,
                         generator=torch.Generator().manual_seed(1))
    states = frozen_hand_states(tiny_backbone, ids, mask)
    images = frozen_hand_image(tiny_backbone, pixels)
    blank = frozen_hand_image(tiny_backbone, torch.zeros(1, *pixels.shape[1:]))[0]  # the mean image, normalised
    lengths = mask.sum(1).tolist()
    raw = [[abs(cosine(states[b, j], blank) - cosine(states[b, j], images[b])) for j in range(ids.shape[1])]
           for b in range(len(CAPTIONS))]
    expected = hand_weights(raw, lengths, beta, ids.shape[1])
    got = method.teacher_token_weights(ids, mask, images.float())
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    for b, length in enumerate(lengths):
        assert got[b, 0] == 1 and torch.all(got[b, length - 1 :] == 1)  # SOS, EOS and padding
        assert got[b, 1 : length - 1].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert got.std() > 0  # the tokens really are told apart


def test_beta_zero_gives_weights_of_exactly_one_and_maples_text_features(tiny_backbone):
    torch.manual_seed(0)
    maple = build("maple", tiny_backbone)
    torch.manual_seed(0)
    dcar = build("dcar-noreweight", tiny_backbone)
    assert dcar.config.beta == 0
    for mine, theirs in zip(dcar.prompts.parameters(), maple.prompts.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    tokens = dcar.tokenize(CAPTIONS)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    images = torch.randn(len(CAPTIONS), tiny_backbone.embed_dim)
    with torch.no_grad():
        assert torch.equal(dcar.teacher_token_weights(ids, mask, images), torch.ones(ids.shape))
        assert torch.equal(dcar.head_token_weights(ids, mask), torch.ones(ids.shape))
        assert torch.equal(dcar.encode_texts(ids, mask), maple.encode_texts(ids, mask))
    # And in training: the contrastive term equals MaPLe's whole loss on the same batch.
    batch = {"pixel_values": torch.randn(len(CAPTIONS), 3, tiny_backbone.image_size, tiny_backbone.image_size, generator=torch.Generator().manual_seed(3)),
             "input_ids": ids, "attention_mask": mask, "category_id": torch.arange(len(CAPTIONS)),
             "teacher_image_features": images, "record_uniform": torch.rand(len(CAPTIONS), dtype=torch.float64)}
    no_negatives = build("dcar", tiny_backbone, beta=0.0, lambda_cate=0.0)
    no_negatives.load_state_dict(dcar.state_dict())
    with torch.no_grad():
        assert torch.equal(no_negatives.loss(batch)["con_loss"], maple.loss(batch)["loss"])
        assert no_negatives.loss(batch)["head_loss"] == 0


def hand_head_weights(method, ids, mask):
    """The head's MLP applied by hand to the frozen token states, softplus, mean-one over content, blend."""
    states = frozen_hand_states(method.backbone, ids, mask).float()
    first, last = method.head.mlp[0], method.head.mlp[2]
    raw = F.softplus(torch.relu(states @ first.weight.t() + first.bias) @ last.weight.t() + last.bias)[..., 0]
    return hand_weights(raw.double().tolist(), mask.sum(1).tolist(), method.config.beta, ids.shape[1]).float()


def test_the_heads_weights_are_used_at_evaluation_and_no_image_is(tiny_backbone, make_toy_split):
    torch.manual_seed(0)
    method = build("dcar", tiny_backbone)
    with torch.no_grad():
        for parameter in method.head.parameters():  # a head far from uniform, so its weights matter
            parameter.normal_(0, 1)
    tokens = method.tokenize(CAPTIONS)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    weights = hand_head_weights(method, ids, mask)
    assert weights.std() > 0.1
    with torch.no_grad():
        got = method.encode_texts(ids, mask)
        torch.testing.assert_close(got, method.encode_weighted_texts(ids, mask, weights), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(got, method.encode_weighted_texts(ids, mask, None), atol=1e-3)
    # Two splits with the same captions and different images: the caption embeddings are identical.
    split = make_toy_split(METAS, per_category=1)
    other = split.map(lambda row: {"image": row["image"].rotate(90)}, features=split.features)
    images_a, texts_a = encode_split(method, SplitBatches(split, method), device=CPU, batch_size=3)
    images_b, texts_b = encode_split(method, SplitBatches(other, method), device=CPU, batch_size=3)
    assert torch.equal(texts_a, texts_b) and not torch.allclose(images_a, images_b)


def test_reweight_modes(tiny_backbone):
    torch.manual_seed(0)
    train_only = build("dcar", tiny_backbone, reweight="train_only")
    off = build("dcar", tiny_backbone, reweight="off")
    assert train_only.head is None and off.head is None
    assert train_only.training_batch_needs().teacher_features == "original"
    assert off.training_batch_needs().teacher_features is None
    tokens = train_only.tokenize(CAPTIONS)
    with torch.no_grad():  # no head: evaluation encodes captions unweighted
        plain = train_only.encode_weighted_texts(tokens["input_ids"], tokens["attention_mask"], None)
        assert torch.equal(train_only.encode_texts(tokens["input_ids"], tokens["attention_mask"]), plain)


# ------------------------------------------------------------------ L_cate
def test_category_matching_loss_equals_the_weighted_softmax_by_hand():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(3, 5, generator=generator), dim=-1)
    positives = F.normalize(torch.randn(3, 5, generator=generator), dim=-1)
    negatives = F.normalize(torch.randn(3, 4, 5, generator=generator), dim=-1)
    same = torch.tensor([[False, True, False, True], [True, True, False, False], [False, False, False, False]])
    valid = torch.tensor([[True, True, True, True], [True, False, True, True], [True, True, False, False]])
    scale = 11.0
    for alpha in (0.5, 0.0, 2.0):
        total = 0.0
        for i in range(3):
            terms = [(1 + alpha) * math.exp(scale * float(images[i] @ positives[i]))]
            for c in range(4):
                if valid[i, c]:
                    weight = 1 + alpha if same[i, c] else 1.0
                    terms.append(weight * math.exp(scale * float(images[i] @ negatives[i, c])))
            total += -math.log(terms[0] / sum(terms))
        got = category_matching_loss(images, positives, negatives, same, valid, alpha, scale)
        assert got.item() == pytest.approx(total / 3, rel=1e-5)
    # alpha = 0: plain cross-entropy over each image's valid candidates, positive first.
    plain = 0.0
    for i in range(3):
        logits = [scale * float(images[i] @ positives[i])]
        logits += [scale * float(images[i] @ negatives[i, c]) for c in range(4) if valid[i, c]]
        plain += F.cross_entropy(torch.tensor([logits]), torch.tensor([0])).item()
    assert category_matching_loss(images, positives, negatives, same, valid, 0.0, scale).item() == \
        pytest.approx(plain / 3, rel=1e-5)


def test_dcar_loss_combines_its_terms_with_the_batchs_categories(tiny_backbone, make_toy_split):
    torch.manual_seed(0)
    method = build("dcar", tiny_backbone, reweight="off", lambda_cate=0.7, alpha=0.5)
    split = make_toy_split(METAS, per_category=2)
    batches = SplitBatches(split, method, training=True)
    torch.manual_seed(5)
    batch = batches.batch([0, 3, 6, 9])
    kinds = batch["negative_kind"]
    assert (kinds == 0).any() and (kinds == 1).any()
    with torch.no_grad():
        losses = method.loss(batch)
        images = method.encode_images(batch["pixel_values"])
        texts = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        negatives = method.encode_texts(batch["negative_input_ids"], batch["negative_attention_mask"]).view(4, 4, -1)
    scale = tiny_backbone.logit_scale
    total = 0.0
    for i, record in enumerate([0, 3, 6, 9]):
        own_category = split[record]["category"]
        terms = [1.5 * math.exp(scale * float(images[i] @ texts[i]))]
        for c, text in enumerate(batch["negative_texts"][i]):
            if batch["negative_mask"][i, c]:
                named = split[record]["category"] if kinds[i, c] == 1 else None
                # A category swap names a sibling: its category is not the image's.
                weight = 1.5 if named == own_category else 1.0
                terms.append(weight * math.exp(scale * float(images[i] @ negatives[i, c])))
                assert text != split[record]["caption"]
        total += -math.log(terms[0] / sum(terms))
    assert losses["cate_loss"].item() == pytest.approx(total / 4, rel=1e-4)
    assert losses["loss"].item() == pytest.approx(
        losses["con_loss"].item() + 0.7 * losses["cate_loss"].item() + 0.1 * losses["head_loss"].item(), rel=1e-6)


def test_loss_without_training_batches_says_how_to_make_them(tiny_backbone):
    method = build("dcar", tiny_backbone)
    tokens = method.tokenize(CAPTIONS)
    with pytest.raises(ValueError, match=r"SplitBatches\(\.\.\., training=True\)"):
        method.loss({"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                     "pixel_values": torch.zeros(4, 3, 64, 64), "category_id": torch.arange(4)})


# ------------------------------------------------------------------ sizes and gradients on three shapes
@pytest.mark.parametrize("overrides", [{}, {"visual_prompts": False}, {"reweight": "train_only", "depth": 1}])
def test_parameters_match_the_formula_on_every_shape(shaped_backbone, overrides):
    config = shaped_backbone.model.config
    text_width, vision_width, width = (config.text_config.hidden_size, config.vision_config.hidden_size,
                                       config.projection_dim)
    torch.manual_seed(0)
    method = build("dcar", shaped_backbone, **overrides)
    depth = min(overrides.get("depth", 9), config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers)
    coupling = text_width * vision_width + vision_width if overrides.get("visual_prompts", True) else 0
    hidden = width // 4
    head = width * hidden + hidden + hidden + 1 if overrides.get("reweight", "head") == "head" else 0
    expected = depth * (2 * text_width + coupling) + head
    assert sum(p.numel() for p in method.trainable_parameters()) == expected


def test_gradients_reach_every_trainable_parameter_and_nothing_frozen(shaped_backbone, make_toy_split):
    torch.manual_seed(0)
    method = build("dcar", shaped_backbone, p_teacher=0.5)
    method.train()
    batches = SplitBatches(make_toy_split(METAS, per_category=2), method, training=True)
    torch.manual_seed(1)
    method.loss(batches.batch(list(range(10))))["loss"].backward()
    for name, parameter in method.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


# ------------------------------------------------------------------ configs and variants
def test_paper_fixed_defaults():
    config = resolve_config(get_method("dcar"))
    assert (config.n_ctx, config.depth, config.lr, config.batch_size, config.epochs) == (2, 9, 0.0035, 4, 5)
    assert (config.alpha, config.lambda_cate, config.gamma, config.beta) == (0.5, 1.0, 0.1, 1.0)
    assert (config.n_negatives, config.p_teacher, config.reweight) == (4, 0.5, "head")
    assert (config.momentum, config.weight_decay, config.warmup_epochs, config.warmup_lr) == (0.9, 5e-4, 1, 1e-5)
    assert config.augment is True and config.visual_prompts is True and config.blank_image == "mean"


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("dcar-noreweight", "beta", 0.0), ("dcar-nonegatives", "lambda_cate", 0.0), ("dcar-nocatweight", "alpha", 0.0),
     ("dcar-novisual", "visual_prompts", False), ("dcar-shallow", "depth", 1)],
)
def test_each_named_variant_is_one_override(tiny_backbone, name, field, value):
    spec = resolve_run(name)
    default = resolve_config(get_method("dcar"))
    changed = {f: getattr(spec.config, f) for f in vars(default) if getattr(spec.config, f) != getattr(default, f)}
    assert changed == {field: value} and spec.label == name and spec.named_variant == name
    method = spec.method_cls(tiny_backbone, spec.config)
    assert method.result_fields()["dcar_variant"] == f"fdrd-toolkit-v1/{name}"


def test_variant_names_in_results(tiny_backbone):
    assert build("dcar", tiny_backbone).result_fields()["dcar_variant"] == "fdrd-toolkit-v1/dcar"
    # Only ablation fields name a variant: a shorter schedule is still the full method.
    assert build("dcar", tiny_backbone, epochs=1).result_fields()["dcar_variant"] == "fdrd-toolkit-v1/dcar"
    assert build("dcar", tiny_backbone, beta=0.0).result_fields()["dcar_variant"] == "fdrd-toolkit-v1/dcar-noreweight"
    mixed = build("dcar", tiny_backbone, alpha=0.0, depth=1).result_fields()["dcar_variant"]
    assert mixed == "fdrd-toolkit-v1/dcar+alpha=0.0,depth=1"


def test_batch_needs_follow_the_config(tiny_backbone):
    assert build("dcar", tiny_backbone).training_batch_needs().negatives == 4
    assert build("dcar-nonegatives", tiny_backbone).training_batch_needs().negatives == 0
    assert build("dcar", tiny_backbone, teacher_view="augmented").training_batch_needs().teacher_features == "augmented"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"p_teacher": "1.5"}, "p_teacher is a probability"), ({"beta": "-0.1"}, "beta must be in"),
     ({"beta": "1.5"}, "beta must be in"), ({"alpha": "-1"}, "alpha must not be negative"),
     ({"gamma": "-0.1"}, "gamma must not be negative"), ({"lambda_cate": "-1"}, "lambda_cate must not be negative"),
     ({"n_negatives": "0"}, "n_negatives must be at least 1"), ({"n_ctx": "0"}, "n_ctx must be at least 1"),
     ({"depth": "0"}, "depth must be at least 1"), ({"head_reduction": "0"}, "head_reduction"),
     ({"reweight": "sometimes"}, "expected one of head, train_only, off")],
)
def test_untrainable_configs_are_refused(overrides, message):
    with pytest.raises(FdrdError, match=message):
        resolve_config(get_method("dcar"), overrides)


# ------------------------------------------------------------------ training
def test_a_few_steps_lower_the_loss(tiny_backbone, make_toy_split):
    torch.manual_seed(0)
    method = build("dcar", tiny_backbone)
    batches = SplitBatches(make_toy_split(METAS, per_category=2), method, training=True)
    torch.manual_seed(1)
    batch = batches.batch(list(range(8)))

    def fixed_loss():
        torch.manual_seed(2)  # the same teacher/student draw each time
        with torch.no_grad():
            return method.loss(batch)["loss"].item()

    before = fixed_loss()
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.05, momentum=0.9)
    for _ in range(12):
        loss = method.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < before - 0.05


def fresh_run(backbone, split, name, overrides):
    torch.manual_seed(3)
    method = build(name, backbone, **overrides)
    return method, SplitBatches(split, method, training=True)


@pytest.mark.parametrize("name", ["dcar", "maple"])
def test_resume_is_bit_identical(tiny_backbone, make_toy_split, tmp_path, name):
    """Augmentation, on-the-fly negatives and teacher/student draws all survive a restart."""
    split = make_toy_split(METAS, per_category=2)
    overrides = {"epochs": 2, "batch_size": 4, "lr": 0.05}
    method, batches = fresh_run(tiny_backbone, split, name, overrides)
    whole = train(method, batches, seed=3, device=CPU, checkpoint_dir=tmp_path / "whole")
    expected = {key: p.detach().clone() for key, p in method.named_parameters() if p.requires_grad}

    first, batches = fresh_run(tiny_backbone, split, name, overrides)
    train(first, batches, seed=3, device=CPU, checkpoint_dir=tmp_path / "split", stop_after_epochs=1)
    torch.rand(17)  # something else draws in between, as a new process would
    second, batches = fresh_run(tiny_backbone, split, name, overrides)
    rest = train(second, batches, seed=3, device=CPU, checkpoint_dir=tmp_path / "split", resume=True)
    assert rest.resumed_from_epoch == 1 and rest.loss_per_epoch == whole.loss_per_epoch
    for key, parameter in second.named_parameters():
        if parameter.requires_grad:
            assert torch.equal(parameter, expected[key]), key
    untouched, _ = fresh_run(tiny_backbone, split, name, overrides)
    assert any(not torch.equal(p, expected[n]) for n, p in untouched.named_parameters() if p.requires_grad)


# ------------------------------------------------------------------ the teacher's images
def test_teacher_features_are_of_the_original_image_or_of_the_trained_view(tiny_backbone, make_toy_split):
    split = make_toy_split(METAS, per_category=2)
    rows = [1, 4, 8]
    originals = frozen_hand_image(tiny_backbone, tiny_backbone.preprocess([split[i]["image"] for i in rows])).float()
    original = SplitBatches(split, build("dcar", tiny_backbone), training=True)
    torch.manual_seed(0)
    batch = original.batch(rows)
    torch.testing.assert_close(batch["teacher_image_features"], originals, atol=1e-5, rtol=0)
    assert not torch.allclose(frozen_hand_image(tiny_backbone, batch["pixel_values"]).float(), originals, atol=1e-3)
    augmented = SplitBatches(split, build("dcar", tiny_backbone, teacher_view="augmented"), training=True)
    torch.manual_seed(0)
    batch = augmented.batch(rows)
    torch.testing.assert_close(batch["teacher_image_features"],
                               frozen_hand_image(tiny_backbone, batch["pixel_values"]).float(), atol=1e-5, rtol=0)


def test_blank_images(tiny_backbone):
    from PIL import Image

    size = tiny_backbone.image_size
    mean = build("dcar", tiny_backbone).blank_features
    torch.testing.assert_close(mean.double(), frozen_hand_image(tiny_backbone, torch.zeros(1, 3, size, size))[0])
    black = build("dcar", tiny_backbone, blank_image="black").blank_features
    pixels = tiny_backbone.preprocess([Image.new("RGB", (size, size), (0, 0, 0))])
    torch.testing.assert_close(black.double(), frozen_hand_image(tiny_backbone, pixels)[0], atol=1e-5, rtol=0)
