"""manifest.json helpers: row digests, the order-free content hash, atomic writes, clear errors."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from fdrd.errors import FdrdError
from fdrd.manifest import (
    DIGEST_COLUMNS,
    content_hash,
    environment_versions,
    read_json,
    read_manifest,
    row_digest,
    sha256_file,
    write_json_atomic,
    write_manifest,
)


def test_row_digest_ignores_image_and_key_order_but_not_content():
    row = {column: f"value of {column}" for column in DIGEST_COLUMNS}
    shuffled = dict(sorted(row.items(), key=lambda kv: random.Random(3).random()))
    assert row_digest(row) == row_digest({**shuffled, "image": {"bytes": b"anything"}, "_shard": "x"})
    for column in DIGEST_COLUMNS:
        assert row_digest(row) != row_digest({**row, column: "changed"}), column


def test_content_hash_is_order_free_and_sensitive():
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    shuffled = list(digests)
    random.Random(0).shuffle(shuffled)
    assert content_hash(digests) == content_hash(shuffled)
    assert content_hash(digests) != content_hash(digests[:-1])
    assert content_hash(digests) != content_hash(digests + digests[:1])  # a duplicated row changes it


def test_atomic_json_and_manifest_round_trip(tmp_path):
    write_manifest(tmp_path, {"content_hash": "abc", "rows": 3})
    assert read_manifest(tmp_path) == {"content_hash": "abc", "rows": 3}
    write_json_atomic(tmp_path / "x.json", [1, "é"])
    assert read_json(tmp_path / "x.json") == [1, "é"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "x.json"]  # no temp files left
    assert sha256_file(tmp_path / "x.json") == hashlib.sha256((tmp_path / "x.json").read_bytes()).hexdigest()


def test_manifest_errors_are_user_facing(tmp_path):
    with pytest.raises(FdrdError, match="no manifest") as missing:
        read_manifest(tmp_path)
    assert isinstance(missing.value, FileNotFoundError)
    (tmp_path / "manifest.json").write_text("{half")
    with pytest.raises(FdrdError, match="not valid JSON") as broken:
        read_manifest(tmp_path)
    assert isinstance(broken.value, ValueError)
    with pytest.raises(FdrdError, match="x.json"):
        (tmp_path / "x.json").write_text("[")
        read_json(tmp_path / "x.json")


def test_environment_versions_name_what_shapes_the_bytes():
    versions = environment_versions()
    assert set(versions) == {"python", "fdrd", "datasets", "pyarrow", "pillow", "imagehash"}
    assert all(isinstance(v, str) and v for v in versions.values())
    json.dumps(versions)
