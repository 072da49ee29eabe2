"""`fdrd build`, `fdrd validate`, `fdrd info` as a user runs them: exit codes, tables, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def flat_out(self) -> str:  # rich wraps long lines; compare text with whitespace collapsed
        return " ".join(self.stdout.split())

    @property
    def flat_err(self) -> str:
        return " ".join(self.stderr.split())


@pytest.fixture
def fdrd(capsys, monkeypatch):
    """Run `fdrd ...` through fdrd.cli.main in this process (a subprocess per call would spend
    seconds importing), with a wide terminal so that one-line errors stay on one line."""
    from fdrd.cli import main

    monkeypatch.setenv("COLUMNS", "400")

    def run(*args) -> Ran:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["fdrd", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def test_the_console_entry_point_runs_as_a_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fdrd.cli", "validate", str(tmp_path)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert result.returncode == 2 and "no manifest" in result.stderr and "Traceback" not in result.stderr


def test_build_validate_info_on_the_coop_fixture(fdrd, coop_root, tmp_path):
    out = tmp_path / "fdrd"
    built = fdrd("build", "--data-root", coop_root.root, "--out", out, "--captioner", "template", "--workers", "2")
    assert built.returncode == 0, built.stderr
    assert "FDRD build" in built.stdout and "6 rejected inputs" in built.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["build"]["captions"]["captioner"] == "template"

    checked = fdrd("validate", out)
    assert checked.returncode == 1  # the fixture's near duplicate is a train/test leak
    assert "problem: leak" in checked.stdout and "1 problem(s)" in checked.stdout
    allowed = fdrd("validate", out, "--allow-leaks")
    assert allowed.returncode == 0, allowed.stdout
    assert manifest["content_hash"] in allowed.flat_out

    info = fdrd("info", out)
    assert info.returncode == 0, info.stderr
    assert "oxford_pets" in info.stdout and "Yorkshire Terrier" in info.stdout


def test_a_build_that_makes_no_row_exits_2_with_one_red_line(fdrd, coop_root, tmp_path):
    out = tmp_path / "fdrd"
    result = fdrd("build", "--data-root", coop_root.root, "--domains", "oxford_flowers", "--captioner", "none", "--out", out)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()  # the progress bar, then the error
    assert "Traceback" not in result.stderr and [line for line in lines if "error" in line] == lines[-1:]
    assert lines[-1].startswith("error: the build made no rows for oxford_flowers/train")
    assert "FDRD build: 0 rows" in result.flat_out  # the summary table of what was made
    checked = fdrd("validate", out)
    assert checked.returncode == 1 and "holds no rows" in checked.flat_out


def test_validate_fails_on_a_tampered_synthetic_shard(fdrd, synthetic_fdrd, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    assert fdrd("validate", copy).returncode == 0
    shard = next(copy.glob("*/test-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-100] + bytes(100))
    result = fdrd("validate", copy)
    assert result.returncode == 1
    assert "sha256 differs" in result.flat_out


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
def test_bad_input_is_one_red_line_and_exit_2(fdrd, args, message, coop_root, tmp_path):
    filled = [a.format(root=coop_root.root, tmp=tmp_path) for a in args]
    result = fdrd(*filled, "--out", tmp_path / "out") if args[0] == "build" else fdrd(*filled)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.flat_err
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_different_build_is_refused_without_overwrite(fdrd, coop_root, tmp_path):
    out = tmp_path / "fdrd"
    common = ["build", "--data-root", coop_root.root, "--out", out, "--captioner", "template", "--domains", "oxford_flowers"]
    assert fdrd(*common).returncode == 0
    refused = fdrd(*common, "--jpeg-quality", "80")
    assert refused.returncode == 2 and "holds a different build" in refused.stderr and "--overwrite" in refused.stderr
    replaced = fdrd(*common, "--jpeg-quality", "80", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "manifest.json").read_text())["build"]["normalize"]["jpeg_quality"] == 80


def test_cli_defaults_agree_with_build_options():
    import typer.main

    from builders.normalize import NormalizeOptions
    from builders.pipeline import BuildOptions, CaptionSettings
    from fdrd.cli import app

    command = typer.main.get_command(app).commands["build"]
    defaults = {param.name: param.default for param in command.params}
    options, normalize, captions = BuildOptions(), NormalizeOptions(), CaptionSettings()
    assert defaults["out"] == options.out and defaults["workers"] == options.workers
    assert (defaults["split"], defaults["source"], defaults["seed"]) == (options.split, options.source, options.seed)
    assert defaults["phash_threshold"] == options.phash_threshold
    assert (defaults["short_side"], defaults["jpeg_quality"]) == (normalize.short_side, normalize.jpeg_quality)
    assert defaults["max_input_mb"] * 2**20 == normalize.max_input_bytes
    assert defaults["meta_encoder"] == options.meta_encoder
    assert (defaults["captioner"], defaults["negatives"]) == (captions.captioner, captions.negatives)
