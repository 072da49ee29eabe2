"""Tiny CLIP pretraining: augmentation and schedule units, the cache and its lock, the CLI, and the
pretrained test model reaching above-chance (but imperfect) zero-shot recall."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from typer.testing import CliRunner

from benchmark import pretrain as pretrain_module
from benchmark.backbone import ClipBackbone
from benchmark.pretrain import (
    REPORT_NAME,
    PretrainConfig,
    cache_key,
    learning_rate,
    pretrained_tiny_clip,
    random_shift,
)
from benchmark.tiny import TinyClipSpec
from fdrd.errors import FdrdError


def test_random_shift_matches_a_padded_crop_per_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 8, 8, generator=generator)
    assert torch.equal(random_shift(images, 0, generator), images)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(5))
    offsets = torch.randint(0, 5, (6, 2), generator=torch.Generator().manual_seed(5))
    for index, (dy, dx) in enumerate(offsets.tolist()):
        for y in range(8):
            for x in range(8):
                # Replicate padding: the source pixel is clamped into the image.
                source_y, source_x = min(max(y + dy - 2, 0), 7), min(max(x + dx - 2, 0), 7)
                assert torch.equal(shifted[index, :, y, x], images[index, :, source_y, source_x])


def test_learning_rate_warms_up_then_decays_to_zero():
    config = PretrainConfig(steps=100, lr=1.0, warmup_steps=10)
    rates = [learning_rate(step, config, 100) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert rates[10] == pytest.approx(1.0) and learning_rate(100, config, 100) == pytest.approx(0.0, abs=1e-12)
    assert rates[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_cache_key_depends_on_spec_config_and_data():
    spec, config = TinyClipSpec(), PretrainConfig()
    key = cache_key(spec, config, "abc")
    assert key == cache_key(TinyClipSpec(), PretrainConfig(), "abc")
    assert key != cache_key(spec, config, "abd")
    assert key != cache_key(TinyClipSpec(vision_layers=3), config, "abc")
    assert key != cache_key(spec, PretrainConfig(steps=config.steps + 1), "abc")


def test_cache_trains_once_under_concurrent_callers(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"content_hash": "feed"}))
    calls = []

    def fake_train(data_dir, out, spec, config, progress=True):
        calls.append(out)
        threading.Event().wait(0.3)  # long enough for the other callers to queue on the lock
        (out / REPORT_NAME).write_text("{}")

    monkeypatch.setattr(pretrain_module, "train_and_save", fake_train)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(
            pretrained_tiny_clip(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1
    assert (results[0] / REPORT_NAME).is_file() and results[0].parent == tmp_path / "cache" / "tiny-clip"
    # A staging folder never survives, and FDRD_CACHE moves the root.
    assert [p.name for p in results[0].parent.iterdir() if p.is_dir()] == [results[0].name]
    monkeypatch.setenv("FDRD_CACHE", str(tmp_path / "elsewhere"))
    moved = pretrained_tiny_clip(tmp_path / "data", progress=False)
    assert moved.parent == tmp_path / "elsewhere" / "tiny-clip" and len(calls) == 2


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FdrdError, match="no manifest.json"):
        pretrained_tiny_clip(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_pretrained_test_model_is_above_chance_but_not_perfect(pretrained_tiny_clip):
    report = json.loads((pretrained_tiny_clip / REPORT_NAME).read_text())
    assert report["last_loss"] < report["first_loss"] - 0.5
    mean = report["zero_shot_test"]["mean"]
    pairs = round(100 / mean["chance_r1"]) * len(report["zero_shot_test"]["domains"])  # chance R@1 is 1 / gallery
    chance = mean["chance_r10"] / 100
    for direction in ("i2t", "t2i"):
        # Above chance beyond the noise of this many test pairs (R@10 more than 3 binomial standard errors
        # of the chance rate above it, whatever the gallery size), and room left at R@1 for the methods.
        assert mean[f"{direction}_r10"] - mean["chance_r10"] > 3 * 100 * math.sqrt(chance * (1 - chance) / pairs), mean
        assert mean[f"{direction}_r1"] < 80, mean
    backbone = ClipBackbone.from_pretrained(pretrained_tiny_clip)
    assert backbone.revision.startswith("sha256:")
    assert backbone.logit_scale == pytest.approx(1 / report["temperature"], rel=1e-4)


def test_cli_pretrain_writes_a_loadable_model(synthetic_fdrd, tmp_path):
    from fdrd.cli import app

    out = tmp_path / "model"
    arguments = ["pretrain", "--data", str(synthetic_fdrd), "--out", str(out), "--steps", "3", "--batch-size", "16",
                 "--width", "32", "--layers", "1", "--image-size", "32", "--no-cache"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "zero-shot test recall" in result.output and "mean" in result.output
    report = json.loads((out / REPORT_NAME).read_text())
    import datasets

    test_domains = set(datasets.load_dataset(str(synthetic_fdrd), "all", split="test")["domain"])
    assert report["steps_done"] == 3 and set(report["zero_shot_test"]["domains"]) == test_domains
    assert ClipBackbone.from_pretrained(out).text_width == 32
    again = CliRunner().invoke(app, arguments)
    assert isinstance(again.exception, FdrdError) and "--overwrite" in str(again.exception)


def test_cli_defaults_agree_with_the_dataclasses():
    # fdrd/ may not import benchmark/ at import time, so the CLI repeats the defaults; keep them equal.
    import typer

    from fdrd.cli import app

    group = typer.main.get_command(app)
    pretrain_defaults = {p.name: p.default for p in group.commands["pretrain"].params}
    tiny_defaults = {p.name: p.default for p in group.commands["model"].commands["tiny"].params}
    config, spec = PretrainConfig(), TinyClipSpec()
    for name in ("steps", "batch_size", "lr", "seed"):
        assert pretrain_defaults[name] == getattr(config, name), name
    for defaults in (pretrain_defaults, tiny_defaults):
        assert (defaults["image_size"], defaults["patch"], defaults["width"], defaults["layers"], defaults["heads"],
                defaults["embed_dim"], defaults["context_length"], defaults["vocab_size"]) == (
            spec.image_size, spec.patch_size, spec.vision_width, spec.vision_layers, spec.heads, spec.embed_dim,
            spec.context_length, spec.vocab_size)


@pytest.mark.parametrize("changes", [{"steps": 0}, {"batch_size": 0}, {"minutes": -1.0}, {"minutes": 0.0}])
def test_budget_that_cannot_train_is_refused(changes):
    with pytest.raises(FdrdError, match="must be positive"):
        PretrainConfig(**changes)


def test_cli_pretrain_refuses_zero_steps_before_loading_data(tmp_path):
    from fdrd.cli import app

    result = CliRunner().invoke(app, ["pretrain", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "m"),
                                      "--steps", "0", "--no-cache"])
    assert isinstance(result.exception, FdrdError) and "steps (0)" in str(result.exception)


def test_load_pairs_names_a_missing_split(synthetic_fdrd):
    with pytest.raises(FdrdError, match="no split 'nosuch'.*--split all"):
        pretrain_module.load_pairs(synthetic_fdrd, "nosuch")
