"""The trainer: loss goes down, NaN guard, schedule, checkpoints hold trainable parameters only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from benchmark.checkpoint import LATEST_NAME, PARAMETERS_NAME, read_state
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.evaluation import evaluate
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import Method, MethodConfig, get_method, resolve_config
from benchmark.train import WarmupCosine, epoch_order, seed_everything, train
from fdrd.errors import FdrdError

CPU = torch.device("cpu")


class ToyAdapter(Method):
    """A full linear map over frozen image features: enough capacity to fit a few pairs."""

    name = "toy-adapter"
    frozen_prompt_free_images = True

    def __init__(self, backbone, config):
        super().__init__(backbone, config)
        dim = backbone.embed_dim
        self.mix = nn.Parameter(torch.eye(dim) + 0.01 * torch.randn(dim, dim))

    def images_from_features(self, features):
        return F.normalize(features @ self.mix, dim=-1)


class DivergesAtStep3(ToyAdapter):
    name = "diverges"

    def __init__(self, backbone, config):
        super().__init__(backbone, config)
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        losses = super().loss(batch)
        if self.calls == 3:
            losses["loss"] = losses["loss"] * float("nan")
        return losses


@pytest.fixture(scope="module")
def train_split(synthetic_fdrd):
    return load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train")


def cached_batches(method, split):
    features = FeatureCache().features(method, split, device=CPU, batch_size=64, precision="fp32")
    return SplitBatches(split, method, features)


def test_loss_decreases_on_a_toy_method(tiny_backbone, train_split):
    seed_everything(0)
    config = MethodConfig(epochs=8, batch_size=8, optimizer="adamw", lr=0.01, warmup_epochs=0, weight_decay=0.0)
    method = ToyAdapter(tiny_backbone, config)
    before = method.mix.detach().clone()
    report = train(method, cached_batches(method, train_split), seed=0, device=CPU)
    assert report.epochs == 8 and report.steps == 8 * math.ceil(len(train_split) / 8)
    assert report.loss_per_epoch[-1] < 0.8 * report.loss_per_epoch[0]
    assert not torch.equal(before, method.mix)
    assert report.images_per_second > 0


def test_the_last_partial_batch_is_kept_unless_dropped(tiny_backbone, train_split):
    seed_everything(0)
    size = len(train_split)
    batch_size = 5 if size % 5 else 7
    assert size % batch_size and size > batch_size
    kept = ToyAdapter(tiny_backbone, MethodConfig(epochs=1, batch_size=batch_size, warmup_epochs=0))
    assert train(kept, cached_batches(kept, train_split), seed=0, device=CPU).steps == size // batch_size + 1
    dropped = ToyAdapter(tiny_backbone, MethodConfig(epochs=1, batch_size=batch_size, warmup_epochs=0,
                                                     drop_last_batch=True))
    assert train(dropped, cached_batches(dropped, train_split), seed=0, device=CPU).steps == size // batch_size
    # Dassl drops only when a full batch exists: a split smaller than one batch still trains.
    whole = ToyAdapter(tiny_backbone, MethodConfig(epochs=1, batch_size=size + 1, warmup_epochs=0, drop_last_batch=True))
    assert train(whole, cached_batches(whole, train_split), seed=0, device=CPU).steps == 1


def test_nan_guard_names_epoch_step_and_losses(tiny_backbone, train_split):
    config = MethodConfig(epochs=2, batch_size=4, warmup_epochs=0)
    method = DivergesAtStep3(tiny_backbone, config)
    with pytest.raises(FdrdError, match=r"not finite at epoch 1, step 3 \(global step 3\): loss=nan, i2t_loss="):
        train(method, cached_batches(method, train_split), seed=0, device=CPU)


def test_checkpoint_holds_trainable_parameters_only(tiny_backbone, train_split, tmp_path):
    coop_cls = get_method("coop")
    seed_everything(1)
    coop = coop_cls(tiny_backbone, resolve_config(coop_cls, {"epochs": 1, "batch_size": 8, "n_ctx": 4}))
    batches = cached_batches(coop, train_split)
    train(coop, batches, seed=1, device=CPU, checkpoint_dir=tmp_path)
    epoch_dir = tmp_path / "epoch-0001"
    saved = load_file(str(epoch_dir / PARAMETERS_NAME))
    trainable = {name for name, p in coop.named_parameters() if p.requires_grad}
    assert set(saved) == trainable and not any(name.startswith("backbone") for name in saved)
    assert torch.equal(saved["ctx"], coop.ctx.detach())
    state = read_state(epoch_dir)
    assert torch.equal(state["data_order"], epoch_order(1, 0, len(batches)))
    assert {"optimizer", "scheduler", "rng", "global_step", "fingerprint"} <= set(state)
    assert (tmp_path / LATEST_NAME).is_file()


def test_methods_without_trainable_parameters_skip_training(tiny_backbone, train_split, tmp_path):
    zeroshot_cls = get_method("zeroshot")
    zeroshot = zeroshot_cls(tiny_backbone, resolve_config(zeroshot_cls, {"epochs": 3}))
    report = train(zeroshot, cached_batches(zeroshot, train_split), seed=0, device=CPU, checkpoint_dir=tmp_path / "c")
    assert report.steps == 0 and "no trainable parameters" in report.skipped
    assert not (tmp_path / "c").exists()


def test_warmup_then_cosine_schedule():
    schedule = WarmupCosine(base_lr=0.002, warmup_lr=1e-5, warmup_steps=4, total_steps=12)
    factors = [schedule(step) for step in range(13)]
    assert factors[:4] == [1e-5 / 0.002] * 4
    assert factors[4] == 1.0 and factors[8] == pytest.approx(0.5) and factors[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(factors[4:12], factors[5:13], strict=True))
    # The reference formula, step by step.
    for step in range(4, 13):
        assert factors[step] == pytest.approx(0.5 * (1 + math.cos(math.pi * (step - 4) / 8)))


def test_unknown_optimizer_is_a_clear_error(tiny_backbone, train_split):
    method = ToyAdapter(tiny_backbone, MethodConfig(epochs=1, optimizer="lion"))
    with pytest.raises(FdrdError, match="unknown optimizer 'lion'"):
        train(method, cached_batches(method, train_split), seed=0, device=CPU)


def test_evaluate_matches_recall_of_the_plain_embeddings(tiny_backbone, synthetic_fdrd):
    from benchmark.metrics import retrieval_recall

    test = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "test")
    zeroshot_cls = get_method("zeroshot")
    zeroshot = zeroshot_cls(tiny_backbone, resolve_config(zeroshot_cls))
    report = evaluate(zeroshot, SplitBatches(test, zeroshot), device=CPU, batch_size=5)
    with torch.inference_mode():
        pixels = tiny_backbone.preprocess(list(test["image"]))
        images = F.normalize(tiny_backbone.encode_image(pixels), dim=-1)
        tokens = zeroshot.tokenize(list(test["caption"]))
        texts = F.normalize(tiny_backbone.encode_text(tokens["input_ids"], tokens["attention_mask"]), dim=-1)
    expected = retrieval_recall(images, texts, torch.arange(len(test)))
    assert report.records == len(test)
    for key, value in expected.items():
        assert report.metrics[key] == pytest.approx(value), key
