"""fdrd/untrusted.py and the OSError lines of fdrd/errors.py: the shared rules for hostile files."""

from __future__ import annotations

import errno
import json

import pytest

from fdrd.errors import FdrdError, os_error_message
from fdrd.manifest import ManifestUnreadable, read_manifest
from fdrd.untrusted import (
    contained_path,
    containment_problem,
    find_nul,
    parse_json,
    path_problem,
    read_json_file,
)


@pytest.mark.parametrize(("value", "where"), [
    ({"a": ["ok", {"b": "x\x00"}]}, "$.a[1].b"), ([1, 2, ["\x00"]], "$[2][0]"), ({"k\x00": 1}, "$ (a key)"),
    ({"a": "fine", "b": [1.5, None, True]}, None),
])
def test_find_nul_names_where(value, where):
    assert find_nul(value) == where


def test_find_nul_walks_any_depth_json_returns():
    value = "\x00"
    for _ in range(5000):  # deeper than Python's recursion limit
        value = [value]
    assert find_nul(value) == "$" + "[0]" * 5000


@pytest.mark.parametrize(("text", "words"), [
    ('{"a": 1', "not valid JSON"), ("[" * 100_000, "nested too deeply"), ('"\\u0000"', "NUL"), ('"\x00"', "NUL byte"),
    ("1" * 5000, "not valid JSON"),
])
def test_parse_json_failures_name_the_file_and_the_fix(text, words):
    with pytest.raises(FdrdError, match=f"^f.json: .*{words}.*; do this$"):
        parse_json(text, "f.json", "do this")


def test_read_json_file_reads_and_refuses(tmp_path):
    (tmp_path / "ok.json").write_text(json.dumps({"é": [1, 2.5]}), encoding="utf-8")
    assert read_json_file(tmp_path / "ok.json", "x") == {"é": [1, 2.5]}
    (tmp_path / "latin.json").write_bytes(b'{"\xe9": 1}')
    with pytest.raises(FdrdError, match="not UTF-8"):
        read_json_file(tmp_path / "latin.json", "x")
    with pytest.raises(FdrdError, match="not found"):
        read_json_file(tmp_path / "absent.json", "x")


@pytest.mark.parametrize(("path", "problem"), [
    ("a/b.parquet", None), ("a/..b/c", None), ("../a", "climbs out"), ("a/../../b", "climbs out"), ("/etc/passwd", "absolute"),
    ("C:/x", "Windows"), ("a\\..\\b", "Windows"), ("", "non-empty"), (None, "non-empty"), (3, "non-empty"), ("a\x00b", "NUL"),
])
def test_path_problem(path, problem):
    found = path_problem(path)
    assert (found is None) if problem is None else (problem in found)


def test_contained_path_follows_links(tmp_path):
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert contained_path(root, "inner/x", "w", "f") == root / "inner" / "x"
    with pytest.raises(FdrdError, match="^w: path 'link/x' leads out of the folder through a symbolic link"):
        contained_path(root, "link/x", "w", "f")


@pytest.mark.parametrize(("content", "words"), [
    ("[]", "top level is a JSON list"), ('{"shards": [{"path": "a"}]}', "shards[0] has no 'domain'"),
    ('{"rows": "3"}', "field 'rows' is str"), ('{"shards": [1]}', "shards[0] is int"),
    ('{"domains": {"d": 3}}', "domains.d"), ('{"rejected": {"count": "x"}}', "rejected.count"),
])
def test_read_manifest_checks_the_shape(tmp_path, content, words):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ManifestUnreadable, match="manifest.json: not a build manifest") as error:
        read_manifest(tmp_path)
    assert words in str(error.value)


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
    (errno.ENOTDIR, "is a file"), (errno.EEXIST, "a file stands"),
])
def test_os_errors_a_user_can_act_on_are_one_line(code, words):
    message = os_error_message(OSError(code, "strerror text", "/some/file"))
    assert message.startswith("/some/file: strerror text; ") and words in message and "\n" not in message


def test_other_os_errors_stay_tracebacks():
    assert os_error_message(OSError(errno.EIO, "I/O error")) is None


def test_containment_problem_is_the_rule_of_contained_path(tmp_path):
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert containment_problem(root, "inner/x") is None
    assert "symbolic link" in containment_problem(root, "link/x")
    assert "climbs out" in containment_problem(root, "../x") and "absolute" in containment_problem(root, "/x")
