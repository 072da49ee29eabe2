"""Session-wide fixtures shared by every test package.

`synthetic_fdrd`: a small synthetic FDRD build (all splits, pretrain included), made once per
session into a temporary directory; returns its Path. Tests must treat it as read-only (copy it
before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


# Tests never touch the network: the Hub and `datasets` stay offline, whatever the shell says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# Triton decorates its own library functions when it is first imported, in interpreter mode only if
# TRITON_INTERPRET is set then; transformers imports it as a side effect, so a test file that loads a model
# before the Triton kernel's CPU tests in the same process would leave them a library that only runs on a
# GPU. On a machine without one, the interpreter is the only mode that can run; set it before anything.
if os.environ.get("FDRD_RECALL_TEST_DEVICE", "cpu") == "cpu" and not _cuda_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SYNTHETIC_PER_CATEGORY = 2  # images per category and split: a few hundred rows, a few seconds


def build_synthetic(out: Path, seed: int = 0, per_category: int = SYNTHETIC_PER_CATEGORY, **overrides) -> dict:
    """Build the synthetic source into `out` (the source is already captioned: no caption stage)."""
    from rich.console import Console

    from builders.pipeline import BuildOptions, CaptionSettings, build

    options = BuildOptions(
        out=out,
        source="synthetic",
        seed=seed,
        per_category=per_category,
        captions=CaptionSettings(captioner="none"),
        **overrides,
    )
    return build(options, console=Console(quiet=True))


@pytest.fixture(scope="session")
def synthetic_fdrd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished synthetic FDRD directory (train, val, test, pretrain), built once per session."""
    out = tmp_path_factory.mktemp("synthetic-fdrd") / "fdrd"
    build_synthetic(out)
    return out


@pytest.fixture(scope="session")
def synthetic_build():
    """The function behind `synthetic_fdrd`, for tests that need their own build (other seed, ...)."""
    return build_synthetic
