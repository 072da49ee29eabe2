"""Session-wide fixtures shared by every test package.

`synthetic_fdrd`: a small synthetic FDRD build (all splits, pretrain included), made once per
session into a temporary directory; returns its Path. Tests must treat it as read-only (copy it
before changing anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: the Hub and `datasets` stay offline, whatever the shell says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

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
