"""The output directory: one build at a time (BuildLock), and what a rerun finds there
(prepare_out_dir: resume this build, refuse another, or replace it with --overwrite)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from builders.card import CARD_NAME
from builders.report import REJECTED_NAME
from builders.stages.options import STAGING
from fdrd.errors import FdrdError
from fdrd.manifest import MANIFEST_NAME, read_json, write_json_atomic


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "unknown"


def _is_ours(path: Path) -> bool:
    """Files and folders an FDRD build writes at the top of its output directory."""
    if path.name in (MANIFEST_NAME, CARD_NAME, REJECTED_NAME, STAGING):
        return True
    if path.is_dir():
        return all(p.suffix == ".parquet" or p.name.startswith(".") for p in path.iterdir())
    return path.name.startswith(f".{MANIFEST_NAME}.tmp") or path.name.startswith(f".{REJECTED_NAME}.tmp")


def _holds_build_files(out: Path) -> bool:
    """Anything beyond an empty staging folder (a build killed before writing its config holds just that)."""
    for path in out.iterdir():
        if path.name != STAGING:
            return True
        if any(not p.name.startswith(".") for p in path.iterdir()):
            return True
    return False


def _clear_build(out: Path) -> None:
    # The manifest goes first: a half-cleared directory must never look like a finished build.
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for path in sorted(out.iterdir()):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def prepare_out_dir(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Make `out` ready for this build. Returns the manifest when `out` already holds exactly this
    finished build; refuses (FdrdError) a directory holding something else unless `overwrite`.
    Called under BuildLock, which has already checked and created the directory `out`."""
    strangers = [p.name for p in out.iterdir() if not _is_ours(p)]
    if strangers:
        raise FdrdError(
            f"--out {out} holds files that no FDRD build writes ({', '.join(strangers[:5])}); "
            "choose an empty or new directory (--overwrite only replaces FDRD builds)"
        )
    manifest_path = out / MANIFEST_NAME
    config_path = out / STAGING / "config.json"
    previous = None
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text()).get("build")
        except (json.JSONDecodeError, AttributeError):
            previous = {"unreadable manifest": True}
    elif config_path.is_file():
        previous = read_json(config_path)
    elif _holds_build_files(out):
        previous = {"partial build without a config": True}
    if previous is not None and previous != identity:
        if not overwrite:
            raise FdrdError(
                f"--out {out} holds a different build ({_differences(previous, identity)}); "
                "pass --overwrite to replace it, or choose another --out"
            )
        _clear_build(out)
    elif previous is not None and overwrite:
        _clear_build(out)
    elif manifest_path.is_file():
        shutil.rmtree(out / STAGING, ignore_errors=True)  # killed while tidying up: finish the tidy-up
        return read_json(manifest_path)
    (out / STAGING).mkdir(exist_ok=True)
    if not config_path.is_file():
        write_json_atomic(config_path, identity)
    return None


# Lock descriptors of this process; forked workers close their copies (see close_inherited_locks).
_HELD_LOCK_FDS: set[int] = set()


class BuildLock:
    """One build per output directory at a time: an flock on the directory itself, taken before the
    directory is inspected or cleared; the kernel drops it if the process dies."""

    def __init__(self, out: Path):
        self.out = out

    def __enter__(self) -> BuildLock:
        self.out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise FdrdError(f"another `fdrd build` is writing to {self.out}; wait for it to finish") from None
        _HELD_LOCK_FDS.add(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        _HELD_LOCK_FDS.discard(self.fd)
        os.close(self.fd)


def close_inherited_locks() -> None:
    """Pool initializer: a forked worker shares the parent's lock; if the parent is killed, an
    orphaned worker must not keep the output directory locked against the rerun."""
    for fd in _HELD_LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()
