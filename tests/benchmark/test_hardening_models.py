"""Issue 9, classes 2, 5 and 7 for model commands: impossible sizes and rates are one line before any work,
--overwrite replaces only a model folder, and a killed pretraining's staging folders are cleaned."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import benchmark.pretrain as pretrain_module
from benchmark.pretrain import (
    REPORT_NAME,
    PretrainConfig,
    cache_key,
    clean_stale_staging,
    pretrained_tiny_clip,
)
from benchmark.tiny import TinyClipSpec
from fdrd.cli import app
from fdrd.errors import FdrdError


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--patch", "0", "patch_size 0"), ("--width", "0", "vision_width 0"), ("--heads", "-2", "heads -2"),
    ("--layers", "0", "vision_layers 0"), ("--image-size", "0", "image_size 0"), ("--patch", "128", "larger than"),
    ("--lr", "-1", "lr (-1.0)"), ("--lr", "0", "lr (0.0)"), ("--lr", "nan", "lr (nan)"), ("--lr", "inf", "lr (inf)"),
    ("--steps", "0", "steps (0)"), ("--batch-size", "-3", "batch size (-3)"), ("--minutes", "0", "minutes (0.0)"),
])
def test_pretrain_refuses_impossible_settings_in_one_line(option, value, words, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(pretrain_module, "train_and_save", never)
    monkeypatch.setattr(pretrain_module, "pretrained_tiny_clip", never)
    result = invoke("pretrain", "--data", tmp_path / "absent", "--out", tmp_path / "model", option, value)
    assert isinstance(result.exception, FdrdError), result.output
    assert words in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "model").exists()


def test_model_tiny_refuses_zero_sizes(tmp_path):
    captions = tmp_path / "c.txt"
    captions.write_text("a red star\n")
    result = invoke("model", "tiny", "--out", tmp_path / "m", "--captions", captions, "--width", "0")
    assert isinstance(result.exception, FdrdError) and "vision_width 0" in str(result.exception)


def test_pretrain_config_defaults_pass_their_own_checks():
    PretrainConfig()
    TinyClipSpec().check()
    for bad in ({"weight_decay": -0.1}, {"warmup_steps": -1}, {"init_temperature": 0.0}, {"max_logit_scale": 0.5},
                {"max_shift": -1}):
        with pytest.raises(FdrdError, match=next(iter(bad))):
            PretrainConfig(**bad)


@pytest.mark.parametrize("planted", ["thesis.tex", "sub/notes.txt", "data.parquet"])
def test_pretrain_overwrite_replaces_only_a_model_folder(planted, tmp_path):
    out = tmp_path / "model"
    (out / planted).parent.mkdir(parents=True, exist_ok=True)
    (out / planted).write_text("precious")
    (out / "config.json").write_text("{}")
    result = invoke("pretrain", "--data", tmp_path / "absent", "--out", out, "--overwrite")
    assert isinstance(result.exception, FdrdError) and "not a model folder" in str(result.exception)
    assert (out / planted).read_text() == "precious"


@pytest.mark.parametrize("command", [["pretrain", "--data", "absent"], ["model", "tiny", "--captions", "absent"]])
def test_out_that_is_a_file_is_refused(command, tmp_path):
    (tmp_path / "out").write_text("mine")
    result = invoke(*command, "--out", tmp_path / "out")
    assert isinstance(result.exception, FdrdError) and "is a file" in str(result.exception)
    assert (tmp_path / "out").read_text() == "mine"


def test_model_tiny_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "thesis.tex").write_text("precious")
    captions = tmp_path / "c.txt"
    captions.write_text("a red star\n")
    result = invoke("model", "tiny", "--out", tmp_path / "m", "--captions", captions)
    assert isinstance(result.exception, FdrdError) and (tmp_path / "m" / "thesis.tex").read_text() == "precious"


# ---------------------------------------------------------------- stale staging in the cache

HOLD = """
import sys, time
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_stale_staging_is_cleaned_but_a_live_one_is_kept(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text('{"content_hash": "feed"}')
    parent = tmp_path / "cache" / "tiny-clip"
    parent.mkdir(parents=True)
    dead, busy = "a" * 20, "b" * 20
    for key in (dead, busy):
        (parent / f".{key}-x1y2z3").mkdir()
        (parent / f".{key}-x1y2z3" / "model.safetensors").write_bytes(b"half")
    unrelated = parent / ".not-ours"
    unrelated.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(parent / busy) + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"

        def fake_train(data_dir, out, spec, config, progress=True):
            (out / REPORT_NAME).write_text("{}")

        monkeypatch.setattr(pretrain_module, "train_and_save", fake_train)
        target = pretrained_tiny_clip(data, cache_dir=tmp_path / "cache", progress=False)
        assert target.name == cache_key(TinyClipSpec(), PretrainConfig(), "feed")
        assert not (parent / f".{dead}-x1y2z3").exists()  # killed run's leftovers: gone
        assert (parent / f".{busy}-x1y2z3").is_dir()  # someone is training that key right now
        assert unrelated.is_dir()  # not named like our staging
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    assert [p.name for p in clean_stale_staging(parent, holding="c" * 20)] == [f".{busy}-x1y2z3"]
    assert time.monotonic() - started < 10
