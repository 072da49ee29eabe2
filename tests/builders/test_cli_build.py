"""`fdrd build`, `fdrd validate`, `fdrd info` as a user runs them: exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def fdrd(*args) -> subprocess.CompletedProcess:
    """Run the CLI; rich wraps at the terminal width, so give it a wide one (and unwrap anyway)."""
    env = {**os.environ, "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "fdrd.cli", *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )
    result.flat_out, result.flat_err = " ".join(result.stdout.split()), " ".join(result.stderr.split())
    return result


def test_build_validate_info_on_the_coop_fixture(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    built = fdrd("build", "--data-root", coop_root.root, "--out", out, "--captioner", "none", "--workers", "2")
    assert built.returncode == 0, built.stderr
    assert "FDRD build" in built.stdout and "6 rejected inputs" in built.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["build"]["captions"]["captioner"] == "none"

    checked = fdrd("validate", out)
    assert checked.returncode == 1  # the fixture's near duplicate is a train/test leak
    assert "problem: leak" in checked.stdout and "1 problem(s)" in checked.stdout
    allowed = fdrd("validate", out, "--allow-leaks")
    assert allowed.returncode == 0, allowed.stdout
    assert manifest["content_hash"] in allowed.stdout.replace("\n", "")

    info = fdrd("info", out)
    assert info.returncode == 0, info.stderr
    assert "oxford_pets" in info.stdout and "Yorkshire Terrier" in info.stdout


def test_validate_fails_on_a_tampered_synthetic_shard(synthetic_fdrd, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    assert fdrd("validate", copy).returncode == 0
    shard = next(copy.glob("*/test-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-100] + bytes(100))
    result = fdrd("validate", copy)
    assert result.returncode == 1
    assert "sha256 differs" in result.stdout.replace("\n", " ")


@pytest.mark.parametrize(
    "args,message",
    [
        (["build", "--domains", "oxford_cats", "--data-root", "{root}"], "unknown CoOp domain 'oxford_cats'"),
        (["build", "--data-root", "{tmp}/no-such-dir"], "does not exist"),
        (["build", "--source", "telepathy"], "unknown source 'telepathy'"),
        (["build", "--split", "holdout", "--data-root", "{root}"], "unknown split 'holdout'"),
        (["validate", "{tmp}"], "no manifest"),
        (["info", "{tmp}"], "no manifest"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(args, message, coop_root, tmp_path):
    filled = [a.format(root=coop_root.root, tmp=tmp_path) for a in args]
    result = fdrd(*filled, "--out", tmp_path / "out") if args[0] == "build" else fdrd(*filled)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.flat_err
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_different_build_is_refused_without_overwrite(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    common = ["build", "--data-root", coop_root.root, "--out", out, "--captioner", "none", "--domains", "oxford_flowers"]
    assert fdrd(*common).returncode == 0
    refused = fdrd(*common, "--jpeg-quality", "80")
    assert refused.returncode == 2 and "holds a different build" in refused.stderr and "--overwrite" in refused.stderr
    replaced = fdrd(*common, "--jpeg-quality", "80", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "manifest.json").read_text())["build"]["normalize"]["jpeg_quality"] == 80
