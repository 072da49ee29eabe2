"""Resumable builds: a build SIGKILLed at several points and rerun ends with the same content hash
as an uninterrupted one, no row lost or duplicated; finished units are not redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

import builders.pipeline as pipeline
import builders.stages.normalize_stage as normalize_stage
import builders.stages.out_dir as out_dir
import builders.stages.write_stage as write_stage
from builders.pipeline import STAGING, BuildOptions, CaptionSettings, build
from builders.validate import validate_build
from fdrd.errors import FdrdError

DOMAINS = ("synthetic_flowers", "synthetic_beetles")
PER_CATEGORY = 2


def cli_command(out: Path, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "fdrd.cli", "build", "--source", "synthetic", "--per-category", str(PER_CATEGORY),
        "--domains", ",".join(DOMAINS), "--captioner", "none", "--workers", str(workers), "--out", str(out),
    ]


def norm_chunks(out: Path, domain: str) -> int:
    return len(list((out / STAGING / domain).glob("norm-*.parquet")))


KILL_POINTS = {
    "first chunk of the first domain normalized": lambda out: norm_chunks(out, DOMAINS[0]) >= 1,
    "first domain finished": lambda out: (out / STAGING / DOMAINS[0] / "done.json").is_file(),
    "second domain half normalized": lambda out: norm_chunks(out, DOMAINS[1]) >= 2,
}


def run_until(out: Path, workers: int, moment, timeout: float = 120.0) -> bool:
    """Start a build and SIGKILL it as soon as `moment(out)` holds; True when it was killed mid-build."""
    process = subprocess.Popen(cli_command(out, workers), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if moment(out):
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.002)
        assert process.poll() is not None, "build did not finish in time"
        assert process.returncode == 0, process.stderr.read().decode()
        return False
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()


@pytest.mark.slow
def test_killed_builds_resume_to_the_same_content_hash(tmp_path, synthetic_build):
    reference = synthetic_build(tmp_path / "reference", per_category=PER_CATEGORY, domains=DOMAINS)
    out = tmp_path / "killed"
    for k, (name, moment) in enumerate(KILL_POINTS.items()):
        assert run_until(out, workers=1 + k % 2, moment=moment), f"build finished before: {name}"
        assert not (out / "manifest.json").exists(), name
    assert not run_until(out, workers=2, moment=lambda _: False)  # the rerun completes
    report = validate_build(out)
    assert report.problems == []
    assert report.content_hash == reference["content_hash"]
    assert report.rows == reference["rows"]  # with unique ids (validate checks), no row lost or doubled
    assert not (out / STAGING).exists()


class Crash(Exception):
    pass


def test_resume_redoes_only_missing_units(coop_root, tmp_path, monkeypatch):
    out = tmp_path / "fdrd"
    options = BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template"))
    quiet = Console(quiet=True)
    uninterrupted = build(BuildOptions(**{**options.__dict__, "out": tmp_path / "whole"}), console=quiet)

    real_write = write_stage.write_shard

    def crash_in_second_domain(path, rows):
        if Path(path).parent.name == "oxford_flowers":
            raise Crash("power cut while writing shards")
        return real_write(path, rows)

    monkeypatch.setattr(write_stage, "write_shard", crash_in_second_domain)
    with pytest.raises(Crash):
        build(options, console=quiet)
    monkeypatch.setattr(write_stage, "write_shard", real_write)
    # What a killed writer leaves behind: half-written temp files next to shards and staged chunks.
    assert (out / "oxford_flowers").is_dir()
    (out / "oxford_flowers" / ".train-00000-of-00001.parquet.tmp-999").write_bytes(b"half")
    (out / STAGING / "oxford_flowers" / ".norm-00000.parquet.tmp-999").write_bytes(b"half")

    normalized = []
    real_normalize = normalize_stage.normalize_chunk
    monkeypatch.setattr(normalize_stage, "normalize_chunk", lambda path, items, opts: normalized.append(path) or real_normalize(path, items, opts))
    resumed = build(options, console=quiet)
    assert normalized == []  # every chunk was already staged; pets was not rebuilt either
    assert resumed["content_hash"] == uninterrupted["content_hash"]
    assert validate_build(out, allow_leaks=True).problems == []
    assert sorted(p.name for p in (out / "oxford_flowers").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "val-00000-of-00001.parquet"
    ]


def test_resume_refuses_a_source_that_changed(coop_root, tmp_path, monkeypatch):
    out = tmp_path / "fdrd"
    options = BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template"))

    def crash(self, staged, task):
        raise Crash("killed after normalizing")

    monkeypatch.setattr(pipeline.DomainBuilder, "_dedup", crash)
    with pytest.raises(Crash):
        build(options, console=Console(quiet=True))
    monkeypatch.undo()
    good = coop_root.facts["good"]["oxford_pets"]["train"][1]  # [0] has an exact copy
    (coop_root.root / "oxford_pets" / "images" / good).unlink()
    with pytest.raises(FdrdError, match="oxford_pets: the source yields other items.*--overwrite"):
        build(options, console=Console(quiet=True))
    resumed = build(BuildOptions(**{**options.__dict__, "overwrite": True}), console=Console(quiet=True))
    assert resumed["domains"]["oxford_pets"]["splits"]["train"]["rejected"] == 4


def test_a_second_build_into_the_same_directory_waits_its_turn(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    options = BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template"))
    with pipeline.BuildLock(out):
        with pytest.raises(FdrdError, match="another `fdrd build` is writing"):
            build(BuildOptions(**{**options.__dict__, "overwrite": True}), console=Console(quiet=True))
    assert build(options, console=Console(quiet=True))["rows"] > 0  # the lock went with its holder


def test_forked_workers_do_not_keep_the_directory_locked(tmp_path):
    import multiprocessing

    out = tmp_path / "fdrd"
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()

    def worker():  # what a pool worker does first, then it outlives its parent's lock
        out_dir.close_inherited_locks()
        ready.set()
        stop.wait(30)

    with pipeline.BuildLock(out):
        child = context.Process(target=worker)
        child.start()
        assert ready.wait(30)
    try:
        with pipeline.BuildLock(out):  # free although the child is still alive
            assert child.is_alive()
    finally:
        stop.set()
        child.join(30)
