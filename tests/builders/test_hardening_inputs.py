"""Issue 9, classes 5-7 on the build side: every hostile input is one named error or a reported rejection,
never a traceback or a silent skip; validate checks every field it can; inputs are size-capped unread."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys

import pytest
from PIL import Image
from rich.console import Console

import builders.normalize as normalize
import builders.stages.write_stage as write_stage
from builders.audit import audit_path
from builders.captions.attributes import load_vocabulary
from builders.captions.fdrd_json import read_released
from builders.info import collect_info
from builders.normalize import ImageRejected, NormalizeOptions, read_image_bytes
from builders.pipeline import BuildOptions, CaptionSettings, build
from builders.report import read_rejected
from builders.sources.coop import CoopSource
from builders.sources.imagefolder import ImageFolderSource
from builders.validate import validate_build
from fdrd.errors import FdrdError

DEEP = "[" * 100_000 + "]" * 100_000
# What each trap is, as the bytes of a whole JSON file, and the words its error must contain.
JSON_TRAPS = {
    "raw NUL byte": (b'{"a": "x\x00y"}', "NUL"),
    "escaped NUL in a string": (b'{"a": "x\\u0000y"}', "NUL"),
    "escaped NUL in a key": (b'{"a\\u0000": 1}', "NUL"),
    "100,000-deep nesting": (DEEP.encode(), "nested too deeply"),
    "not UTF-8": (b'{"a": "\xff\xfe"}', "not UTF-8"),
    "number past the digit limit": (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "truncated": (b'{"a": [1, 2', "not valid JSON"),
}


def caption_file(tmp_path, content):
    path = tmp_path / "oxford_pets.json"
    path.write_bytes(content)
    return lambda: read_released(path), path


def coop_split_file(tmp_path, content, coop_root):
    path = coop_root.root / "oxford_pets" / "split_zhou_OxfordPets.json"
    path.write_bytes(content)
    return lambda: list(CoopSource(coop_root.root, ["oxford_pets"]).iter_items("oxford_pets", ["train"])), path


def meta_file(tmp_path, content):
    root = tmp_path / "birds"
    (root / "wren").mkdir(parents=True)
    (root / "meta.json").write_bytes(content)
    return lambda: ImageFolderSource(root), root / "meta.json"


def vocabulary_file(tmp_path, content):
    path = tmp_path / "vocabulary.json"
    path.write_bytes(content)
    return lambda: load_vocabulary(path), path


@pytest.mark.parametrize("trap", list(JSON_TRAPS))
@pytest.mark.parametrize("kind", ["caption", "coop split", "meta", "vocabulary"])
def test_json_traps_are_one_named_error(kind, trap, tmp_path, request):
    content, words = JSON_TRAPS[trap]
    if kind == "caption":
        load, path = caption_file(tmp_path, content)
    elif kind == "coop split":
        load, path = coop_split_file(tmp_path, content, request.getfixturevalue("coop_root"))
    elif kind == "meta":
        load, path = meta_file(tmp_path, content)
    else:
        load, path = vocabulary_file(tmp_path, content)
    with pytest.raises(FdrdError) as error:
        load()
    assert str(path) in str(error.value) and words in str(error.value)


def test_audit_names_a_malformed_file_in_a_folder_instead_of_skipping_it(tmp_path, capsys):
    good = {"a.jpg": {"file_path": "oxford_pets/images/a.jpg", "positive": "a photo of a bengal cat",
                      "negative": ["a photo of a pug"]}}
    (tmp_path / "oxford_pets.json").write_text(json.dumps(good))
    (tmp_path / "notes.json").write_text(json.dumps({"about": "not captions"}))
    assert len(audit_path(tmp_path)) == 1
    said = capsys.readouterr().err
    assert "skipping" in said and "notes.json" in said
    for name, content in (("truncated.json", b'{"b.jpg": {"positive": "a ph'), ("latin1.json", b'{"\xe9": 1}')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FdrdError, match=name):
            audit_path(tmp_path)
        (tmp_path / name).unlink()


# ---------------------------------------------------------------- manifests, shards, rejected.jsonl


@pytest.fixture
def build_copy(synthetic_fdrd, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    return copy


def edit_manifest(directory, change):
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest = change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


MALFORMED_MANIFESTS = {
    "a list": lambda m: [m],
    "a string": lambda m: "manifest",
    "shards not a list": lambda m: {**m, "shards": {"a": 1}},
    "a shard without sha256": lambda m: {**m, "shards": [{k: v for k, v in s.items() if k != "sha256"} for s in m["shards"]]},
    "bytes as text": lambda m: {**m, "shards": [{**s, "bytes": str(s["bytes"])} for s in m["shards"]]},
    "rows as a bool": lambda m: {**m, "rows": True},
    "no shards": lambda m: {k: v for k, v in m.items() if k != "shards"},
    "domains a list": lambda m: {**m, "domains": ["x"]},
    "another format": lambda m: {**m, "format": "fdrd-crawl/1"},
    "deep": lambda m: json.loads("[" * 500 + "]" * 500),
}


@pytest.mark.parametrize("name", list(MALFORMED_MANIFESTS))
def test_malformed_manifests_are_named_errors_everywhere(name, build_copy):
    from benchmark.data import check_data_dir

    edit_manifest(build_copy, MALFORMED_MANIFESTS[name])
    for reader in (validate_build, collect_info, check_data_dir):
        with pytest.raises(FdrdError, match="manifest.json"):
            reader(build_copy)


def test_a_deeply_nested_manifest_is_a_named_error(build_copy):
    (build_copy / "manifest.json").write_text(DEEP)
    with pytest.raises(FdrdError, match="nested too deeply"):
        collect_info(build_copy)


def first_shard(directory):
    return directory / json.loads((directory / "manifest.json").read_text())["shards"][0]["path"]


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbage"])
def test_info_names_a_damaged_shard(damage, build_copy):
    shard = first_shard(build_copy)
    if damage == "deleted":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:300])
    else:
        shard.write_bytes(b"\0" * shard.stat().st_size)  # same size: only reading tells
    with pytest.raises(FdrdError, match=f"{shard.name}.*fdrd validate"):
        collect_info(build_copy)


def test_a_garbage_line_in_rejected_jsonl_is_named(build_copy):
    (build_copy / "rejected.jsonl").write_text('{"domain": "x", "split": "train"}\nnot json at all\n')
    with pytest.raises(FdrdError, match="rejected.jsonl: line 2"):
        read_rejected(build_copy)
    assert any("rejected.jsonl: line 2" in p for p in validate_build(build_copy).problems)


# ---------------------------------------------------------------- validate checks every field it can

VALIDATE_TAMPERING = {
    "absolute shard path": (lambda d: edit_manifest(d, lambda m: {**m, "shards": [
        {**m["shards"][0], "path": str(d / m["shards"][0]["path"])}, *m["shards"][1:]]}), "is an absolute path"),
    "shard path leaving the folder": (lambda d: edit_manifest(d, lambda m: {**m, "shards": [
        {**m["shards"][0], "path": "../copy/" + m["shards"][0]["path"]}, *m["shards"][1:]]}), "climbs out"),
    "edited top-level row count": (lambda d: edit_manifest(d, lambda m: {**m, "rows": m["rows"] + 1}),
                                   "rows in the shards, manifest.json says"),
    "README deleted": (lambda d: (d / "README.md").unlink(), "README.md: missing"),
    "README config edited": (lambda d: (d / "README.md").write_text(
        (d / "README.md").read_text().replace("/test-*.parquet", "/val-*.parquet", 1)), "README.md: config"),
    "README sizes edited": (lambda d: (d / "README.md").write_text(
        (d / "README.md").read_text().replace("num_examples: ", "num_examples: 1", 1)), "README.md: dataset_info"),
    "README header broken": (lambda d: (d / "README.md").write_text("---\nconfigs: [\n---\n"), "YAML header"),
    "category count edited": (lambda d: edit_manifest(d, lambda m: {**m, "domains": {
        k: {**v, "splits": {s: {**c, "categories": c["categories"] + 1} for s, c in v["splits"].items()}}
        for k, v in m["domains"].items()}}), "categories, manifest.json says"),
    "schema version edited": (lambda d: edit_manifest(d, lambda m: {**m, "schema_version": "0.1"}), "schema_version"),
    "rejected file renamed": (lambda d: edit_manifest(d, lambda m: {**m, "rejected": {"count": 0, "file": "/etc/passwd"}}),
                              "rejected.file"),
}


@pytest.mark.parametrize("name", list(VALIDATE_TAMPERING))
def test_validate_checks_every_field_it_can(name, build_copy):
    tamper, message = VALIDATE_TAMPERING[name]
    tamper(build_copy)
    problems = validate_build(build_copy).problems
    assert any(message in problem for problem in problems), problems


def test_validate_never_reads_a_shard_outside_the_folder(build_copy, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    outside = tmp_path / "outside.parquet"
    shutil.copy(first_shard(build_copy), outside)
    edit_manifest(build_copy, lambda m: {**m, "shards": [{**m["shards"][0], "path": str(outside)}, *m["shards"][1:]]})
    opened = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(str(path)) or real(path, *a, **k))
    validate_build(build_copy)
    assert str(outside) not in opened


# ---------------------------------------------------------------- image folders, size cap


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_folder_named_like_an_image_is_reported(tmp_path):
    root = tmp_path / "birds"
    (root / "wren").mkdir(parents=True)
    # Two categories (a negative needs a sibling) and enough images that every split makes rows: an empty
    # split fails the build.
    for category in ("wren", "robin"):
        (root / category).mkdir(parents=True, exist_ok=True)
        for index in range(12):
            (root / category / f"a{index}.png").write_bytes(png((8 + index, 8 + len(category))))
    (root / "wren" / "b.jpg").mkdir()
    (root / "wren" / "b.jpg" / "inside.png").write_bytes(png())
    out = tmp_path / "out"
    build(BuildOptions(out=out, source="imagefolder", data_root=root, captions=CaptionSettings(captioner="template")),
          console=Console(quiet=True))
    reasons = {r["original"]: r["reason"] for r in read_rejected(out)}
    assert "is a folder, not an image file" in reasons["birds/wren/b.jpg"]


def test_input_size_is_capped_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GB, sparse: no disk used
    opened = []
    monkeypatch.setattr(normalize, "open", lambda *a, **k: opened.append(a) or open(*a, **k), raising=False)
    with pytest.raises(ImageRejected, match="file too large: 3221225472 bytes, over the input limit of 536870912"):
        read_image_bytes(big)
    assert opened == []
    assert NormalizeOptions().max_input_bytes == 512 * 2**20
    with pytest.raises(ImageRejected, match="over the input limit of 100 bytes"):
        normalize.normalize_image(png(), NormalizeOptions(max_input_bytes=100))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_pipe_named_like_an_image_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(ImageRejected, match="not a regular file"):
        read_image_bytes(tmp_path / "x.jpg")


def test_the_size_cap_applies_in_a_build(tmp_path):
    root = tmp_path / "birds"
    (root / "wren").mkdir(parents=True)
    # Two categories (a negative needs a sibling) and enough images that every split makes rows: an empty
    # split fails the build.
    for category in ("wren", "robin"):
        (root / category).mkdir(parents=True, exist_ok=True)
        for index in range(12):
            (root / category / f"small{index}.png").write_bytes(png((8 + index, 8 + len(category))))
    (root / "wren" / "large.png").write_bytes(png((300, 300)) + b"\0" * 5000)
    out = tmp_path / "out"
    options = BuildOptions(out=out, source="imagefolder", data_root=root, captions=CaptionSettings(captioner="template"),
                           normalize=NormalizeOptions(max_input_bytes=4000))
    build(options, console=Console(quiet=True))
    reasons = {r["original"]: r["reason"] for r in read_rejected(out)}
    assert list(reasons) == ["birds/wren/large.png"] and "file too large" in reasons["birds/wren/large.png"]


# ---------------------------------------------------------------- disk full, read-only output


def run_cli(monkeypatch, capsys, *args):
    from fdrd.cli import main

    monkeypatch.setattr(sys, "argv", ["fdrd", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


BUILD_ARGS = ("build", "--source", "synthetic", "--per-category", "1", "--domains", "synthetic_flowers,synthetic_beetles",
              "--captioner", "none")


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                             (errno.EACCES, "permission denied")])
def test_a_full_or_read_only_disk_is_one_line_and_a_rerun_resumes(code, words, tmp_path, monkeypatch, capsys):
    whole = tmp_path / "whole"
    assert run_cli(monkeypatch, capsys, *BUILD_ARGS, "--out", whole)[0] in (0, None)
    out = tmp_path / "out"
    real = write_stage.write_shard
    calls = []

    def fails_on_the_second_shard(path, rows):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, rows)

    monkeypatch.setattr(write_stage, "write_shard", fails_on_the_second_shard)
    status, err = run_cli(monkeypatch, capsys, *BUILD_ARGS, "--out", out)
    assert status == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(write_stage, "write_shard", real)
    assert run_cli(monkeypatch, capsys, *BUILD_ARGS, "--out", out)[0] in (0, None)
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == \
        json.loads((whole / "manifest.json").read_text())["content_hash"]
    assert validate_build(out).problems == []


def test_out_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "out").write_text("mine")
    status, err = run_cli(monkeypatch, capsys, *BUILD_ARGS, "--out", tmp_path / "out")
    assert status == 2 and "is a file" in err and (tmp_path / "out").read_text() == "mine"
