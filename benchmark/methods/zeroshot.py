"""Zero-shot CLIP: the frozen backbone's own embeddings, no trainable parameters, no training."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from benchmark.methods.base import Method, MethodConfig, Preset, register_method, why


@dataclasses.dataclass
class ZeroShotConfig(MethodConfig):
    """Training fields are inherited but unused: the method has nothing to train."""

    epochs: int = why(0, "nothing to train; evaluation only")


@register_method
class ZeroShot(Method):
    """Captions and images encoded exactly as CLIP does (Method's defaults), L2-normalised."""

    name: ClassVar[str] = "zeroshot"
    config_class: ClassVar[type[MethodConfig]] = ZeroShotConfig
    frozen_prompt_free_images: ClassVar[bool] = True
    # Present so that `--preset quick` runs every method (a loop over methods needs no exception); nothing to shorten.
    presets: ClassVar[dict[str, Preset]] = {"quick": Preset({}, "nothing to train: the plain run")}
