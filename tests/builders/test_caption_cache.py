"""The sqlite caption cache: keys, chunked look-ups against a one-by-one reference, several writers."""

from __future__ import annotations

import multiprocessing
import random

import pytest

from builders.captions.cache import CaptionCache, prompt_key
from fdrd.errors import FdrdError


def sha(i: int) -> str:
    return f"{i:064x}"


def test_round_trip_and_keys_are_separate(tmp_path):
    path = tmp_path / "c.sqlite"
    key = prompt_key("describe it", max_new_tokens=60)
    with CaptionCache(path, "model-a", key) as cache:
        cache.put_many({sha(1): "a red cat", sha(2): "a blue dog"})
        assert cache.get_many([sha(1), sha(2), sha(3)]) == {sha(1): "a red cat", sha(2): "a blue dog"}
        cache.put_many({sha(1): "a red cat, sitting"})  # a recaption replaces, never duplicates
        assert cache.get_many([sha(1)]) == {sha(1): "a red cat, sitting"} and len(cache) == 2
    with CaptionCache(path, "model-b", key) as other_model:
        assert other_model.get_many([sha(1)]) == {} and len(other_model) == 0
    with CaptionCache(path, "model-a", prompt_key("describe it", max_new_tokens=20)) as other_prompt:
        assert other_prompt.get_many([sha(1)]) == {}
    with CaptionCache(path, "model-a", key) as reopened:  # persisted across connections
        assert len(reopened) == 2
        (mode,) = reopened._db.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"


def test_prompt_key_depends_on_prompt_and_settings_only():
    base = prompt_key("p", max_new_tokens=60, dtype="auto")
    assert base == prompt_key("p", dtype="auto", max_new_tokens=60)  # keyword order is irrelevant
    assert len({base, prompt_key("q", max_new_tokens=60, dtype="auto"), prompt_key("p", max_new_tokens=61, dtype="auto"),
                prompt_key("p", max_new_tokens=60)}) == 4


def test_chunked_lookup_matches_one_by_one_reference(tmp_path):
    rng = random.Random(3)
    stored = {sha(i): f"caption {i}" for i in rng.sample(range(5000), 1400)}
    with CaptionCache(tmp_path / "c.sqlite", "m", "k") as cache:
        cache.put_many(stored)
        wanted = [sha(i) for i in rng.sample(range(5000), 2300)] + [sha(7)] * 3  # repeats, misses, hits
        reference = {}
        for key in wanted:
            row = cache._db.execute("SELECT caption FROM captions WHERE sha256 = ? AND model = 'm' AND prompt_key = 'k'",
                                    (key,)).fetchone()
            if row:
                reference[key] = row[0]
        assert cache.get_many(wanted) == reference
        assert cache.get_many([]) == {}


def _write_range(path: str, start: int, count: int) -> None:
    with CaptionCache(path, "m", "k") as cache:
        for i in range(start, start + count):  # many small transactions interleave with the others
            cache.put_many({sha(i): f"caption {i}"})


def test_several_processes_write_one_cache(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    CaptionCache(path, "m", "k").close()
    # fork: a spawned child could not import this test module by name (pytest's importlib mode).
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_range, args=(path, index * 100, 100)) for index in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0, 0]
    with CaptionCache(path, "m", "k") as cache:
        assert cache.get_many(sha(i) for i in range(300)) == {sha(i): f"caption {i}" for i in range(300)}


def test_damaged_cache_is_a_named_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(FdrdError, match="bad.sqlite: not a usable caption cache"):
        CaptionCache(path, "m", "k")
