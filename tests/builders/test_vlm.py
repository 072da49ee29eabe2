"""The VLM captioner with a tiny LLaVA built offline from a config: loading path, greedy determinism,
the cache (generate is never called for a cached image), and multi-process shards on CPU."""

from __future__ import annotations

import hashlib
import io
import json
import random

import pytest
from PIL import Image

from builders.captions.cache import CaptionCache
from builders.captions.vlm import Captioner, VLMOptions, caption_images, model_provenance
from builders.tiny_vlm import build_tiny_vlm
from fdrd.errors import FdrdError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm")))


def drawn(seed: int) -> tuple[str, bytes]:
    """A (sha256, PNG bytes) pair; sizes vary so the processor's resizing is exercised."""
    rng = random.Random(seed)
    image = Image.new("RGB", (rng.randrange(20, 60), rng.randrange(20, 60)), tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(20):
        image.putpixel((rng.randrange(image.width), rng.randrange(image.height)),
                       tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def options(model: str, **overrides) -> VLMOptions:
    settings = dict(model=model, prompt="describe the main object and the scene", batch_size=4, max_new_tokens=6,
                    device="cpu")
    settings.update(overrides)
    return VLMOptions(**settings)


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts model.generate calls (and images per call) in this process."""
    from transformers import LlavaForConditionalGeneration

    calls: list[int] = []
    original = LlavaForConditionalGeneration.generate

    def counting(self, *args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlavaForConditionalGeneration, "generate", counting)
    return calls


def test_folder_loads_like_a_hub_id_and_captions_are_deterministic(tiny_model, tmp_path, generate_calls):
    images = [drawn(i) for i in range(6)]
    first = caption_images(images, options(tiny_model), tmp_path / "a.sqlite", progress=False)
    second = caption_images(images, options(tiny_model, batch_size=1), tmp_path / "b.sqlite", progress=False)
    assert list(first) == [sha for sha, _ in images]
    assert first == second  # greedy decoding; batch size does not change a caption
    assert all(text.strip() for text in first.values())
    assert generate_calls == [4, 2] + [1] * 6


def test_a_rerun_never_captions_an_image_twice(tiny_model, tmp_path, generate_calls):
    images = [drawn(i) for i in range(10)]
    cache = tmp_path / "captions.sqlite"
    first = caption_images(images + images[:3], options(tiny_model), cache, progress=False)  # repeats once
    assert sum(generate_calls) == 10 and len(generate_calls) == 3
    generate_calls.clear()
    assert caption_images(images, options(tiny_model), cache, progress=False) == first
    assert generate_calls == []
    more = [drawn(i) for i in range(10, 13)]
    caption_images(images + more, options(tiny_model), cache, progress=False)
    assert generate_calls == [3]  # only the new images
    generate_calls.clear()
    caption_images(images[:2], options(tiny_model, prompt="another prompt"), cache, progress=False)
    assert generate_calls == [2]  # another prompt is another cache key


def test_chat_template_and_left_padding(tiny_model):
    captioner = Captioner(options(tiny_model), "cpu")
    assert captioner.processor.tokenizer.padding_side == "left"
    assert captioner.prompt_text.startswith("user:<image> describe the main object") and captioner.prompt_text.endswith(
        "assistant:")


@pytest.mark.slow
def test_two_processes_match_one_and_a_failed_shard_resumes_only_its_uncached_images(tiny_model, tmp_path):
    good = [drawn(i) for i in range(8)]
    one_process = caption_images(good, options(tiny_model), tmp_path / "one.sqlite", progress=False)
    broken = ("f" * 64, b"not an image at all")
    # Shards of 5 and 4; shard 1 = [5, broken, 6, 7] has image 5 cached when it fails.
    order = good[:6] + [broken] + good[6:]
    cache = tmp_path / "two.sqlite"
    settings = dict(batch_size=1, procs=2)
    with pytest.raises(FdrdError, match=r"caption shard 1 of 2 failed .*image f{64}: cannot be decoded"):
        caption_images(order, options(tiny_model, **settings), cache, progress=False)
    key = options(tiny_model)
    with CaptionCache(cache, key.cache_model_key(), key.cache_prompt_key()) as db:
        before = dict(db._db.execute("SELECT sha256, created FROM captions"))
    assert set(before) == {sha for sha, _ in good[:6]}  # shard 0 finished, shard 1 got one image done
    two_processes = caption_images(good, options(tiny_model, **settings), cache, progress=False)
    with CaptionCache(cache, key.cache_model_key(), key.cache_prompt_key()) as db:
        after = dict(db._db.execute("SELECT sha256, created FROM captions"))
    assert {sha: after[sha] for sha in before} == before  # finished work was not redone
    assert set(after) == {sha for sha, _ in good}
    assert two_processes == one_process


def test_provenance_records_what_was_loaded(tiny_model):
    record = model_provenance(options(tiny_model))
    assert record["model"] == tiny_model and record["architectures"] == ["LlavaForConditionalGeneration"]
    assert record["trust_remote_code"] is False and record["decoding"] == "greedy" and record["commit_hash"] is None
    assert record["prompt_key"] == options(tiny_model).cache_prompt_key()


def test_remote_code_is_refused_unless_asked(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "fdrd_custom_vlm", "architectures": ["CustomVLM"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModelForImageTextToText": "modeling_custom.CustomVLM"},
    }))
    with pytest.raises(FdrdError, match="--trust-remote-code"):
        model_provenance(options(str(folder)))
    with pytest.raises(FdrdError, match="--trust-remote-code"):
        caption_images([drawn(0)], options(str(folder)), tmp_path / "c.sqlite", progress=False)


def test_bad_inputs_are_named_errors(tiny_model, tmp_path):
    with pytest.raises(FdrdError, match="could not be loaded"):
        caption_images([drawn(0)], options(str(tmp_path / "nowhere")), tmp_path / "c.sqlite", progress=False)
    with pytest.raises(FdrdError, match="batch_size"):
        caption_images([drawn(0)], options(tiny_model, batch_size=0), tmp_path / "c.sqlite", progress=False)
    with pytest.raises(FdrdError, match="unknown dtype"):
        options(tiny_model, dtype="int3").validate()
    with pytest.raises(FdrdError, match=r"image 0{64}: cannot be decoded"):
        caption_images([("0" * 64, b"<html>")], options(tiny_model), tmp_path / "c.sqlite", progress=False)
    assert caption_images([], options(tiny_model), tmp_path / "c.sqlite", progress=False) == {}


def test_bfloat16_path_runs_and_keys_share_the_cache(tiny_model, tmp_path):
    """The GPU dtype (bfloat16) on CPU: inputs are cast with the model, captions come back; dtype is
    not part of the cache key, so float32 finds them (the key is model + prompt + length only)."""
    import torch

    images = [drawn(i) for i in range(3)]
    captioner = Captioner(options(tiny_model, dtype="bfloat16"), "cpu")
    assert next(captioner.model.parameters()).dtype == torch.bfloat16
    half = caption_images(images, options(tiny_model, dtype="bfloat16"), tmp_path / "c.sqlite", progress=False)
    assert set(half) == {sha for sha, _ in images} and all(half.values())
    assert caption_images(images, options(tiny_model), tmp_path / "c.sqlite", progress=False) == half


def test_idefics3_prompts_of_different_lengths_batch_like_single_images(tmp_path):
    """The default captioner's architecture (SmolVLM = Idefics3) tiles images by aspect ratio, so a
    batch holds prompts of different lengths: with left padding, batched captions equal unbatched."""
    model = str(build_tiny_vlm(tmp_path / "idefics3", architecture="idefics3"))
    images = []
    for index, size in enumerate([(40, 30), (90, 60), (20, 70), (64, 64), (33, 31)]):
        buffer = io.BytesIO()
        Image.new("RGB", size, (index * 50, 120, 255 - index * 50)).save(buffer, "PNG")
        images.append((hashlib.sha256(buffer.getvalue()).hexdigest(), buffer.getvalue()))
    captioner = Captioner(options(model, batch_size=5), "cpu")
    inputs = captioner.processor(images=[[Image.open(io.BytesIO(data)).convert("RGB")] for _, data in images],
                                 text=[captioner.prompt_text] * len(images), return_tensors="pt", padding=True)
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) > 1 and inputs["attention_mask"][:, -1].all()  # padded, and on the left
    batched = caption_images(images, options(model, batch_size=5), tmp_path / "a.sqlite", progress=False)
    single = caption_images(images, options(model, batch_size=1), tmp_path / "b.sqlite", progress=False)
    assert batched == single and all(batched.values())
    assert model_provenance(options(model))["architectures"] == ["Idefics3ForConditionalGeneration"]
