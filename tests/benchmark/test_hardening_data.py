"""Issue 9, class 3: `fdrd bench` refuses a dataset whose files are not the ones its manifest lists, before
any training, so the content hash a results file cites always describes the data that was read."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import fdrd.manifest as manifest_module
from benchmark.data import check_data_dir, load_split
from builders.writer import write_shard
from fdrd.cli import app
from fdrd.errors import FdrdError


@pytest.fixture
def data_copy(synthetic_fdrd, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(synthetic_fdrd, copy)
    return copy


def manifest_of(directory):
    return json.loads((directory / "manifest.json").read_text())


def a_test_shard(directory, split="test"):
    return next(s for s in manifest_of(directory)["shards"] if s["split"] == split)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_a_caption(path):
    rows = pq.read_table(path).to_pylist()
    rows[0]["caption"] += " (edited)"
    write_shard(path, rows)


def add_a_stray_shard(directory):
    shard = a_test_shard(directory)
    shutil.copy(directory / shard["path"], directory / shard["domain"] / "test-99999-of-99999.parquet")


def point_the_card_elsewhere(directory):
    card = directory / "README.md"
    shard = a_test_shard(directory)
    text = card.read_text().replace(f"path: {shard['domain']}/test-*.parquet", f"path: {shard['domain']}/train-*.parquet", 1)
    card.write_text(text)


def escape_the_folder(directory):
    manifest = manifest_of(directory)
    manifest["shards"][0]["path"] = "../" + manifest["shards"][0]["path"]
    (directory / "manifest.json").write_text(json.dumps(manifest))


def drop_a_script(directory):
    (directory / "data.py").write_text("open('pwned', 'w')\n")


TAMPERING = {
    "flipped byte (same size)": (lambda d: flip_a_byte(d / a_test_shard(d)["path"]), "sha256 differs"),
    "rewritten with an edited caption": (lambda d: edit_a_caption(d / a_test_shard(d)["path"]), "manifest says"),
    "truncated": (lambda d: (d / a_test_shard(d)["path"]).write_bytes((d / a_test_shard(d)["path"]).read_bytes()[:500]),
                  "bytes, manifest says"),
    "deleted": (lambda d: (d / a_test_shard(d)["path"]).unlink(), "listed in manifest.json but missing"),
    "stray shard the card would read": (add_a_stray_shard, "does not list for that split"),
    "card pointing at other files": (point_the_card_elsewhere, "README.md: config"),
    "card deleted": (lambda d: (d / "README.md").unlink(), "README.md: missing"),
    "shard path leaving the folder": (escape_the_folder, "climbs out with '..'"),
    "a loading script": (drop_a_script, "data.py: a Python file"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_bench_refuses_tampered_data_before_training(name, data_copy, tiny_clip_dir, tmp_path):
    tamper, message = TAMPERING[name]
    tamper(data_copy)
    with pytest.raises(FdrdError, match="files differ from manifest.json") as refused:
        check_data_dir(data_copy)
    assert message in str(refused.value)
    result = CliRunner().invoke(app, ["bench", "coop", "--data", str(data_copy), "--model", str(tiny_clip_dir),
                                      "--out", str(tmp_path / "runs"), "--device", "cpu", "--set", "epochs=1"])
    assert isinstance(result.exception, FdrdError) and message in str(result.exception)
    assert not any((tmp_path / "runs").rglob("*.json")) if (tmp_path / "runs").exists() else True


def test_the_cited_hash_is_the_hash_of_what_is_read(synthetic_fdrd):
    """Recomputed here from the loaded rows (canonical JSON of the digest columns, sorted, hashed)."""
    manifest = check_data_dir(synthetic_fdrd)
    columns = ("id", "domain", "split", "category", "category_id", "meta_category", "width", "height",
               "caption", "attributes", "negatives", "source", "sha256", "phash")
    digests = []
    for split in ("train", "val", "test", "pretrain"):
        for row in load_split(synthetic_fdrd, "all", split).remove_columns("image"):
            text = json.dumps({c: row[c] for c in columns}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            digests.append(hashlib.sha256(text.encode()).hexdigest())
    combined = hashlib.sha256()
    for digest in sorted(digests):
        combined.update(digest.encode())
    assert len(digests) == manifest["rows"] and combined.hexdigest() == manifest["content_hash"]


def test_verification_is_reused_until_a_file_changes(data_copy, monkeypatch):
    hashed = []
    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda path: hashed.append(path) or real(path))
    check_data_dir(data_copy)
    first = len(hashed)
    assert first == len(manifest_of(data_copy)["shards"])
    check_data_dir(data_copy)
    assert len(hashed) == first  # the second split of a run does not hash every shard again
    flip_a_byte(data_copy / a_test_shard(data_copy)["path"])
    with pytest.raises(FdrdError, match="sha256 differs"):
        check_data_dir(data_copy)


@pytest.mark.parametrize("ids", ["not json", "[" * 5000 + "]" * 5000, '{"a": 1}', "[[1], [2]]"])
def test_a_feature_cache_file_with_garbage_ids_is_a_named_error(ids, synthetic_fdrd, tiny_backbone, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from benchmark.data import available_domains
    from benchmark.feature_cache import FeatureCache
    from benchmark.methods.base import get_method, resolve_config

    split = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "test").select(range(4))
    method = get_method("zeroshot")(tiny_backbone, resolve_config(get_method("zeroshot")))
    FeatureCache(tmp_path).features(method, split, device=torch.device("cpu"), batch_size=4, precision="fp32")
    (file,) = tmp_path.glob("*.safetensors")
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        key = handle.metadata()["key"]
    save_file(load_file(str(file)), str(file), metadata={"key": key, "ids": ids})
    with pytest.raises(FdrdError, match="metadata 'ids'"):
        FeatureCache(tmp_path).features(method, split, device=torch.device("cpu"), batch_size=4, precision="fp32")
