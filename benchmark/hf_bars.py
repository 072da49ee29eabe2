"""transformers draws tqdm bars while it copies weights into a model or writes them out. For a local
folder they last a blink and only litter fdrd's own (rich) progress output; downloads keep theirs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers_bars(active: bool = True) -> Iterator[None]:
    """Hide transformers' (and huggingface_hub's) tqdm bars inside the block when `active`, then restore."""
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    if active and was_on:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if active and was_on:
            transformers_logging.enable_progress_bar()
