import pytest
from transformers.utils import logging as transformers_logging

from benchmark.hf_bars import quiet_transformers_bars


def test_bars_are_hidden_inside_and_restored_after_even_on_error():
    transformers_logging.enable_progress_bar()
    with pytest.raises(RuntimeError), quiet_transformers_bars():
        assert not transformers_logging.is_progress_bar_enabled()
        raise RuntimeError("boom")
    assert transformers_logging.is_progress_bar_enabled()


def test_inactive_leaves_bars_alone_and_a_user_choice_to_hide_them_stands():
    transformers_logging.enable_progress_bar()
    with quiet_transformers_bars(active=False):
        assert transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with quiet_transformers_bars():
            pass
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
