"""The output directory: one build at a time (BuildLock), and what a rerun finds there
(prepare_out_dir: resume this build, refuse another, or replace it with --overwrite)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from builders.card import CARD_NAME, LICENSE_NAME
from builders.report import REJECTED_NAME
from builders.stages.options import STAGING
from fdrd.errors import FdrdError
from fdrd.manifest import MANIFEST_NAME, read_build_manifest, read_json, write_json_atomic
from fdrd.untrusted import path_problem


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "unknown"


# Where a build records, before writing them, the shard files it is about to write under <out>/<domain>/
# (relative to <out>): with the manifest's list, the only shard files a build may call its own.
PLANNED_NAME = "planned.json"
_TOP_FILES = (MANIFEST_NAME, CARD_NAME, LICENSE_NAME, REJECTED_NAME)


def _temp_of(name: str, owned: set[str] | tuple[str, ...]) -> bool:
    """A temporary file of an atomic write (`.<name>.tmp-<pid>`) of one of `owned`'s names."""
    return name.startswith(".") and ".tmp-" in name and name[1:].rsplit(".tmp-", 1)[0] in owned


def owned_shards(out: Path) -> set[str]:
    """Shard files (relative to `out`) that a build in `out` wrote or was writing: those its manifest
    lists and those its staging planned or finished. Nothing is inferred from names or extensions."""
    owned: set[str] = set()
    lists: list = []
    try:
        lists.append(json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8")).get("shards"))
    except (OSError, ValueError, AttributeError, RecursionError):
        pass  # no readable manifest: only staging can vouch for shard files
    for record in sorted((out / STAGING).glob(f"*/{PLANNED_NAME}")) + sorted((out / STAGING).glob("*/done.json")):
        try:
            value = json.loads(record.read_text(encoding="utf-8"))
            lists.append(value.get("shards") if isinstance(value, dict) else value)
        except (OSError, ValueError, RecursionError):
            continue
    for listed in lists:
        for shard in listed if isinstance(listed, list) else []:
            path = shard.get("path") if isinstance(shard, dict) else shard
            if path_problem(path) is None and path.count("/") == 1:  # <domain>/<file>, never deeper or out
                owned.add(path)
    return owned


def _strangers(out: Path, owned: set[str]) -> list[str]:
    """Entries of `out` that no build wrote: anything but the top-level files, the staging folder, empty
    folders, and domain folders holding only owned shards (and their atomic-write temporaries)."""
    folders = {path.split("/")[0] for path in owned}
    strangers = []
    for path in sorted(out.iterdir()):
        name = path.name
        if name in _TOP_FILES + (STAGING,) and not path.is_symlink():
            continue
        if _temp_of(name, _TOP_FILES):
            continue
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            continue  # holds nothing to lose (a domain that made no row leaves its folder empty); never deleted
        if name in folders and path.is_dir() and not path.is_symlink():
            mine = {shard.split("/")[1] for shard in owned if shard.startswith(name + "/")}
            strangers += [f"{name}/{p.name}" for p in sorted(path.iterdir())
                          if p.is_dir() or p.is_symlink() or not (p.name in mine or _temp_of(p.name, mine))]
            continue
        strangers.append(name + ("/" if path.is_dir() else ""))
    return strangers


def _holds_build_files(out: Path) -> bool:
    """Anything beyond an empty staging folder (a build killed before writing its config holds just that)."""
    for path in out.iterdir():
        if path.name != STAGING:
            return True
        if any(not p.name.startswith(".") for p in path.iterdir()):
            return True
    return False


def _clear_build(out: Path, owned: set[str]) -> None:
    """Delete exactly what the previous build wrote (its files, its shards, its staging); a folder goes
    only once empty."""
    # The manifest goes first: a half-cleared directory must never look like a finished build.
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    folders = {path.split("/")[0] for path in owned}
    for folder in sorted(folders):
        mine = {shard.split("/")[1] for shard in owned if shard.startswith(folder + "/")}
        for path in sorted((out / folder).iterdir()) if (out / folder).is_dir() else []:
            if path.is_file() and (path.name in mine or _temp_of(path.name, mine)):
                path.unlink()
        with contextlib.suppress(OSError):
            (out / folder).rmdir()  # only when empty: anything left there is not ours
    for path in sorted(out.iterdir()):
        if path.name in _TOP_FILES or _temp_of(path.name, _TOP_FILES):
            path.unlink()
    shutil.rmtree(out / STAGING, ignore_errors=True)


def prepare_out_dir(out: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Make `out` ready for this build. Returns the manifest when `out` already holds exactly this
    finished build; refuses (FdrdError) a directory holding something else unless `overwrite`.
    Called under BuildLock, which has already checked and created the directory `out`. A build owns
    only what its manifest or its staging lists (owned_shards); anything else in `out` is refused, with
    or without --overwrite, and never deleted."""
    owned = owned_shards(out)
    strangers = _strangers(out, owned)
    if strangers:
        raise FdrdError(
            f"--out {out} holds files that no FDRD build in it wrote ({', '.join(strangers[:5])}"
            f"{', ...' if len(strangers) > 5 else ''}); choose an empty or new directory (--overwrite only "
            "replaces what a previous build's manifest.json or staging lists)"
        )
    manifest_path = out / MANIFEST_NAME
    config_path = out / STAGING / "config.json"
    previous = None
    if manifest_path.is_file():
        try:  # any damage (not JSON, not UTF-8, too deep, wrong shape) makes it another build
            finished = read_build_manifest(out)
            previous = finished.get("build", {"manifest without a build identity": True})
        except FdrdError:
            previous = {"unreadable manifest": True}
    elif config_path.is_file():
        try:
            previous = read_json(config_path)
        except FdrdError:
            previous = None
        if not isinstance(previous, dict):
            previous = {"unreadable staging config": True}
    elif _holds_build_files(out):
        previous = {"partial build without a config": True}
    if previous is not None and previous != identity:
        if not overwrite:
            raise FdrdError(
                f"--out {out} holds a different build ({_differences(previous, identity)}); "
                "pass --overwrite to replace it, or choose another --out"
            )
        _clear_build(out, owned)
    elif previous is not None and overwrite:
        _clear_build(out, owned)
    elif manifest_path.is_file():
        shutil.rmtree(out / STAGING, ignore_errors=True)  # killed while tidying up: finish the tidy-up
        return finished
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
