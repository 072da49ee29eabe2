"""Issue 9, class 2: `--overwrite` deletes only what the previous build's manifest or staging lists;
anything else in --out (however much it looks like a build) is refused and left as it was."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

import builders.stages.write_stage as write_stage
from builders.pipeline import STAGING, BuildOptions, CaptionSettings, build
from fdrd.errors import FdrdError

DOMAIN = "synthetic_flowers"


def synthetic(out, seed=0, overwrite=False):
    options = BuildOptions(out=out, source="synthetic", seed=seed, per_category=1, domains=(DOMAIN,),
                           captions=CaptionSettings(captioner="none"), overwrite=overwrite)
    return build(options, console=Console(quiet=True))


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def built(tmp_path):
    out = tmp_path / "out"
    synthetic(out)
    return out


def test_overwrite_replaces_exactly_the_previous_build(built):
    old = json.loads((built / "manifest.json").read_text())
    new = synthetic(built, seed=1, overwrite=True)
    assert new["content_hash"] != old["content_hash"]
    expected = {"manifest.json", "README.md", "LICENSE.md", "rejected.jsonl", *(s["path"] for s in new["shards"])}
    assert set(files(built)) == expected


@pytest.mark.parametrize("plant", [
    "mine/data.parquet",  # the case: a folder holding only .parquet files
    f"{DOMAIN}/extra-00000-of-00001.parquet",  # a Parquet file the manifest does not list, in a domain folder
    f"{DOMAIN}/notes.txt",
    "mine/.hidden.parquet",
    "notes.md",
])
def test_files_no_build_listed_are_refused_and_kept(built, plant):
    (built / plant).parent.mkdir(parents=True, exist_ok=True)
    (built / plant).write_bytes(b"precious")
    before = files(built)
    with pytest.raises(FdrdError, match="no FDRD build in it wrote"):
        synthetic(built, seed=1, overwrite=True)
    assert files(built) == before


def test_an_unreadable_manifest_vouches_for_nothing(built):
    (built / "manifest.json").write_text("{broken")
    before = files(built)
    with pytest.raises(FdrdError, match=f"no FDRD build in it wrote \\({DOMAIN}/"):
        synthetic(built, seed=1, overwrite=True)
    assert files(built) == before


@pytest.mark.parametrize("content", [b'{"build": "\xff"}', b"[" * 100_000, b"[]", b'{"build": 3}', b"{broken"],
                         ids=["not-utf8", "deep", "list", "build-not-object", "not-json"])
def test_a_damaged_manifest_alone_is_another_build_never_a_traceback(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    with pytest.raises(FdrdError, match="holds a different build.*pass --overwrite"):
        synthetic(out)
    assert (out / "manifest.json").read_bytes() == content
    assert synthetic(out, overwrite=True)["rows"] > 0


@pytest.mark.parametrize("content", [b"{broken", b"[1]"])
def test_a_damaged_staging_config_is_another_build_that_overwrite_replaces(tmp_path, content):
    out = tmp_path / "out"
    (out / STAGING).mkdir(parents=True)
    (out / STAGING / "config.json").write_bytes(content)
    with pytest.raises(FdrdError, match="holds a different build.*pass --overwrite"):
        synthetic(out)
    assert synthetic(out, overwrite=True)["rows"] > 0


@pytest.mark.parametrize("listed", ["../victim/data.parquet", "/tmp/victim.parquet", f"{DOMAIN}/../../victim/data.parquet",
                                    "victim/deeper/data.parquet"])
def test_a_manifest_cannot_make_foreign_files_ours(built, tmp_path, listed):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.parquet").write_bytes(b"someone else's")
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["shards"].append({**manifest["shards"][0], "path": listed})
    (built / "manifest.json").write_text(json.dumps(manifest))
    try:
        synthetic(built, seed=1, overwrite=True)
    except FdrdError:
        pass
    assert (victim / "data.parquet").read_bytes() == b"someone else's"


def test_a_symlinked_domain_folder_is_not_ours(built, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (built / DOMAIN).rename(elsewhere)
    (built / DOMAIN).symlink_to(elsewhere, target_is_directory=True)
    before = files(elsewhere)
    with pytest.raises(FdrdError, match="no FDRD build in it wrote"):
        synthetic(built, seed=1, overwrite=True)
    assert files(elsewhere) == before


def test_a_build_killed_while_writing_is_replaced_by_its_plan(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = write_stage.write_shard
    written = []

    def dies_after_one(path, rows):
        if written:
            raise KeyboardInterrupt("killed")
        written.append(path)
        return real(path, rows)

    monkeypatch.setattr(write_stage, "write_shard", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        synthetic(out)
    monkeypatch.setattr(write_stage, "write_shard", real)
    assert not (out / "manifest.json").exists() and len(list((out / DOMAIN).glob("*.parquet"))) == 1
    (out / "mine").mkdir()
    (out / "mine" / "keep.parquet").write_bytes(b"x")
    with pytest.raises(FdrdError, match="mine/"):
        synthetic(out, seed=1, overwrite=True)
    (out / "mine" / "keep.parquet").unlink()
    (out / "mine").rmdir()
    new = synthetic(out, seed=1, overwrite=True)
    assert set(files(out)) == {"manifest.json", "README.md", "LICENSE.md", "rejected.jsonl", *(s["path"] for s in new["shards"])}
    assert not (out / STAGING).exists()
