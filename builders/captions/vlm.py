"""The `vlm` captioner: raw captions from any image-text-to-text model that transformers implements.

`caption_images` is the one door (used by builders/captions/stage.py): it returns sha256 -> raw
caption for a list of (sha256, encoded image bytes), captioning only images the cache lacks, in
batches, on one process or split over `procs` processes (one GPU each when there are GPUs, see
vlm_workers.py). A Hub id and a local folder load the same way (AutoProcessor +
AutoModelForImageTextToText); remote code runs only when `trust_remote_code` is asked for, and
`model_provenance` says what was loaded so the manifest can record it. Decoding is greedy, so the
same model, prompt and image always give the same caption.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.captions.cache import CaptionCache, prompt_key
from fdrd.errors import FdrdError

# A small open VLM that transformers implements natively (Idefics3 architecture), ~256M parameters.
DEFAULT_VLM_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
# Asks for what makes the picture distinct, not for the category: the build inserts the category
# name itself (builders/captions), and a VLM guessing a breed or model would be wrong too often.
DEFAULT_PROMPT = (
    "Describe the main object of this photo in one sentence: its colours, pattern or texture, size, "
    "shape and parts, pose or action, how many there are, and the background scene. Refer to it by a "
    "generic word such as 'dog', 'cat', 'flower', 'car', 'plane' or 'dish'; do not name its breed, "
    "species, make, model or class."
)
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


@dataclass
class VLMOptions:
    model: str = DEFAULT_VLM_MODEL  # Hub id or local folder
    prompt: str = DEFAULT_PROMPT
    trust_remote_code: bool = False  # run code shipped with the model; never implied
    batch_size: int = 8
    procs: int = 1  # processes, one per GPU when GPUs exist (`fdrd build --gpus N`)
    device: str = "auto"  # "auto": cuda when present, else cpu; or "cpu", "cuda", "cuda:1"
    max_new_tokens: int = 60
    dtype: str = "auto"  # "auto": bfloat16 on GPU, float32 on CPU
    revision: str | None = None  # Hub branch, tag or commit; None: the default branch

    def cache_model_key(self) -> str:
        return self.model if self.revision is None else f"{self.model}@{self.revision}"

    def cache_prompt_key(self) -> str:
        return prompt_key(self.prompt, max_new_tokens=self.max_new_tokens)

    def validate(self) -> None:
        if self.batch_size < 1 or self.procs < 1 or self.max_new_tokens < 1:
            raise FdrdError(
                f"VLM options: batch_size ({self.batch_size}), procs ({self.procs}) and max_new_tokens "
                f"({self.max_new_tokens}) must all be at least 1"
            )
        if self.dtype != "auto" and self.dtype not in _DTYPES:
            raise FdrdError(f"VLM options: unknown dtype {self.dtype!r}; use auto or one of {sorted(_DTYPES)}")
        if not self.prompt.strip():
            raise FdrdError("VLM options: the prompt is empty; give a prompt that asks for the object's attributes")


def resolve_device(device: str, shard_index: int = 0) -> str:
    """The torch device for one shard: shard i gets cuda:i (modulo the GPU count) under "auto"/"cuda"."""
    import torch

    if device in ("auto", "cuda"):
        if torch.cuda.is_available():
            return f"cuda:{shard_index % torch.cuda.device_count()}"
        if device == "cuda":
            raise FdrdError("VLM options: device 'cuda' asked for but torch sees no GPU; use --device cpu")
        return "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, _DTYPES[dtype])


def model_provenance(options: VLMOptions) -> dict[str, Any]:
    """What the manifest records about the captioner: model id, revision, the commit the files came
    from (Hub models), architecture, whether remote code was trusted, and the prompt's cache key."""
    config = _load_config(options)
    return {
        "model": options.model,
        "revision": options.revision,
        "commit_hash": getattr(config, "_commit_hash", None),
        "architectures": list(getattr(config, "architectures", None) or []),
        "model_type": getattr(config, "model_type", None),
        "trust_remote_code": options.trust_remote_code,
        "prompt": options.prompt,
        "prompt_key": options.cache_prompt_key(),
        "max_new_tokens": options.max_new_tokens,
        "decoding": "greedy",
    }


def _load_config(options: VLMOptions):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            options.model, revision=options.revision, trust_remote_code=options.trust_remote_code
        )
    except (OSError, ValueError, KeyError) as error:
        raise FdrdError(_load_failure(options, error)) from error


def _load_failure(options: VLMOptions, error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "trust_remote_code" in str(error) and not options.trust_remote_code:
        return (f"VLM {options.model}: needs code shipped with the model, which is not run by default; "
                f"pass --trust-remote-code if you trust it (recorded in the manifest), or pick a model "
                f"transformers implements natively ({text})")
    return (f"VLM {options.model}: could not be loaded as an image-text-to-text model ({text}); give a Hub "
            f"id or a local folder with config.json, processor and weights")


class Captioner:
    """A loaded model + processor that turns batches of images into raw captions, greedily."""

    def __init__(self, options: VLMOptions, device: str):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.options = options
        self.device = device
        self.dtype = resolve_dtype(options.dtype, device)
        _load_config(options)  # named error for missing models and for remote code not trusted
        try:
            self.processor = AutoProcessor.from_pretrained(
                options.model, revision=options.revision, trust_remote_code=options.trust_remote_code
            )
            # use_safetensors: weights that exist only as pickles (pytorch_model.bin) are refused, never unpickled.
            self.model = AutoModelForImageTextToText.from_pretrained(
                options.model, revision=options.revision, trust_remote_code=options.trust_remote_code,
                dtype=self.dtype, use_safetensors=True,
            )
        except ImportError as error:  # e.g. SmolVLM2's processor needs num2words
            raise FdrdError(f"VLM {options.model}: its processor or model needs a package that is not "
                            f"installed ({error}); install it and rerun") from error
        except (OSError, ValueError, KeyError) as error:
            raise FdrdError(_load_failure(options, error)) from error
        self.model.to(device).eval()
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            # Decoder-only models continue the prompt: padding must sit on the left in a batch.
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        self.prompt_text = self._prompt_text()

    def _prompt_text(self) -> str:
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.options.prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        # Without a chat template, processors that expand an image placeholder still need one.
        image_token = getattr(self.processor, "image_token", None)
        return f"{image_token}{self.options.prompt}" if image_token else self.options.prompt

    def caption_batch(self, images: list) -> list[str]:
        import torch

        # One list per prompt: processors that allow several images per sample (Idefics3, SmolVLM)
        # would read a flat list as one sample with many images.
        inputs = self.processor(
            images=[[image] for image in images], text=[self.prompt_text] * len(images), return_tensors="pt",
            padding=True,
        )
        inputs = inputs.to(self.device, dtype=self.dtype)  # casts floating tensors only
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False, num_beams=1
            )
        if not self.model.config.is_encoder_decoder:
            generated = generated[:, inputs["input_ids"].shape[1]:]  # drop the echoed prompt
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]


def decode_image(sha256: str, data: bytes):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise FdrdError(f"image {sha256}: cannot be decoded for captioning ({error}); it should have been "
                        f"rejected by normalization, please report this") from error


def caption_batches(captioner: Captioner, items: list[tuple[str, bytes]], cache: CaptionCache, on_batch) -> None:
    """Caption `items` batch by batch, storing each batch in the cache as soon as it is done, so an
    interruption loses at most one batch."""
    size = captioner.options.batch_size
    for start in range(0, len(items), size):
        batch = items[start:start + size]
        texts = captioner.caption_batch([decode_image(sha, data) for sha, data in batch])
        cache.put_many({sha: text for (sha, _), text in zip(batch, texts, strict=True)})
        on_batch(len(batch))


def caption_images(
    images: list[tuple[str, bytes]], options: VLMOptions, cache_path: Path, progress: bool = True
) -> dict[str, str]:
    """sha256 -> raw caption for every image, captioning only those the cache at `cache_path` lacks."""
    options.validate()
    unique = dict(images)  # the same image twice is captioned once
    with CaptionCache(cache_path, options.cache_model_key(), options.cache_prompt_key()) as cache:
        captions = cache.get_many(unique)
        todo = [(sha, data) for sha, data in unique.items() if sha not in captions]
        if todo:
            if options.procs > 1 and len(todo) > 1:
                from builders.captions.vlm_workers import caption_in_processes

                caption_in_processes(todo, options, Path(cache_path), progress)
            else:
                _caption_here(todo, options, cache, progress)
            captions = cache.get_many(unique)
    missing = [sha for sha in unique if sha not in captions]
    if missing:
        raise FdrdError(f"{cache_path}: {len(missing)} images have no caption after captioning "
                        f"(first: {missing[0]}); rerun to caption the rest")
    return {sha: captions[sha] for sha in unique}


def _caption_here(todo: list[tuple[str, bytes]], options: VLMOptions, cache: CaptionCache, progress: bool) -> None:
    from rich.progress import Progress

    captioner = Captioner(options, resolve_device(options.device))
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"captioning with {options.model}", total=len(todo))
        caption_batches(captioner, todo, cache, lambda n: bar.advance(task, n))

