"""`validate_build` finds what is wrong with a built directory; `collect_info` counts what is in it."""

from __future__ import annotations

import json
import shutil
import statistics
from collections import Counter

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from builders.info import collect_info, render_info
from builders.pipeline import BuildOptions, CaptionSettings, build
from builders.validate import validate_build
from builders.writer import write_shard
from fdrd.errors import FdrdError


@pytest.fixture
def build_copy(synthetic_fdrd, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    return copy


def first_shard(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    return directory / manifest["shards"][0]["path"]


def test_a_clean_build_validates(synthetic_fdrd):
    report = validate_build(synthetic_fdrd)
    assert report.problems == [] and report.warnings == []
    assert report.rows == json.loads((synthetic_fdrd / "manifest.json").read_text())["rows"]


def test_a_flipped_byte_is_a_checksum_problem(build_copy):
    shard = first_shard(build_copy)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = validate_build(build_copy).problems
    assert any("sha256 differs from manifest.json" in p and shard.name in p for p in problems)


def test_a_rewritten_shard_with_an_edited_caption_is_caught(build_copy):
    shard = first_shard(build_copy)
    rows = pq.read_table(shard).to_pylist()
    rows[0]["caption"] = rows[0]["caption"] + " (edited)"
    rows[1]["id"] = rows[2]["id"]
    rows[3]["image"]["bytes"] = rows[4]["image"]["bytes"]
    rows[5]["attributes"] = [{"name": "colour", "value": "zzz", "char_start": 0, "char_end": 3}]
    rows[6]["split"] = "holdout"
    write_shard(shard, rows)
    problems = "\n".join(validate_build(build_copy).problems)
    assert "sha256 differs" in problems
    assert "content hash of the rows is" in problems
    assert f"row {rows[2]['id']}: id also in" in problems
    assert f"row {rows[3]['id']}: image bytes do not match" in problems
    assert f"row {rows[5]['id']}: attribute colour='zzz' span 0:3 does not slice the caption" in problems
    assert f"row {rows[6]['id']}: {rows[6]['domain']}/holdout row in a" in problems
    assert f"row {rows[6]['id']}: unknown split 'holdout'" in problems


def test_missing_unlisted_and_miscounted_files_are_problems(build_copy):
    manifest = json.loads((build_copy / "manifest.json").read_text())
    shard = first_shard(build_copy)
    shutil.move(shard, build_copy / "stray.parquet")
    manifest["rejected"]["count"] = 5
    (build_copy / "manifest.json").write_text(json.dumps(manifest))
    problems = "\n".join(validate_build(build_copy).problems)
    assert "listed in manifest.json but missing" in problems
    assert "stray.parquet: Parquet file not listed" in problems
    assert "rejected.jsonl: 0 lines, manifest.json says 5" in problems
    assert "rows, manifest.json says" in problems


def test_rejected_lines_without_a_manifest_count_are_a_problem_not_a_crash(build_copy):
    manifest = json.loads((build_copy / "manifest.json").read_text())
    del manifest["rejected"]
    (build_copy / "manifest.json").write_text(json.dumps(manifest))
    (build_copy / "rejected.jsonl").write_text(json.dumps({"original": "x.jpg", "reason": "missing file"}) + "\n")
    problems = validate_build(build_copy).problems
    assert "rejected.jsonl: 1 lines, manifest.json says 0" in problems


def test_a_leak_is_a_problem_unless_allowed(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    build(BuildOptions(out=out, data_root=coop_root.root, captions=CaptionSettings(captioner="template")), console=Console(quiet=True))
    near = coop_root.facts["defects"]["near_duplicate"]
    problems = validate_build(out).problems
    assert len(problems) == 1 and "leak" in problems[0] and near["original"] in problems[0] and near["of"] in problems[0]
    allowed = validate_build(out, allow_leaks=True)
    assert allowed.problems == [] and len(allowed.warnings) == 1


def test_not_a_build_is_a_clear_error(tmp_path):
    with pytest.raises(FdrdError, match="no manifest"):
        validate_build(tmp_path)
    with pytest.raises(FdrdError, match="no manifest"):
        collect_info(tmp_path)


def test_info_counts_match_the_rows(synthetic_fdrd):
    info = collect_info(synthetic_fdrd)
    rows = []
    for path in sorted(synthetic_fdrd.glob("*/*.parquet")):
        rows += pq.read_table(path, columns=["domain", "split", "category", "caption", "attributes", "negatives"]).to_pylist()
    assert info["rows"] == len(rows)
    for domain, d in info["domains"].items():
        mine = [r for r in rows if r["domain"] == domain]
        assert {s: v["rows"] for s, v in d["splits"].items()} == dict(Counter(r["split"] for r in mine))
        assert sum(sum(c.values()) for c in d["category_rows"].values()) == len(mine)
        for split, stats in [(None, d), *d["splits"].items()]:
            chosen = [r for r in mine if split in (None, r["split"])]
            words = [len(r["caption"].split()) for r in chosen]
            assert stats["caption_words"]["mean"] == round(statistics.fmean(words), 2)
            assert (stats["caption_words"]["min"], stats["caption_words"]["max"]) == (min(words), max(words))
            with_colour = sum(1 for r in chosen if any(a["name"] == "colour" for a in r["attributes"]))
            assert stats["attributes"]["by_name"].get("colour", 0) == round(with_colour / len(chosen), 4)
            assert stats["attributes"]["rows_with_any"] == round(sum(1 for r in chosen if r["attributes"]) / len(chosen), 4)
            assert stats["negatives"]["mean"] == round(statistics.fmean(len(r["negatives"]) for r in chosen), 2)
    assert info["domains"]["synthetic_beetles"]["splits"]["pretrain"]["caption_words"]["mean"] < (
        info["domains"]["synthetic_beetles"]["splits"]["train"]["caption_words"]["mean"]
    )  # pretrain captions are the short, noisy ones
    console = Console(record=True, width=160)
    render_info(info, console)
    text = console.export_text()
    assert "rows per category" in text and "rows with each attribute" in text
