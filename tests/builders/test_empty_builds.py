"""A build that makes nothing is a failure: a domain/split with inputs and no row exits non-zero naming
the cause and the count per reason, its card declares no config for it, `fdrd validate` is never ok;
an empty split file is the one legitimate empty result and is noted as such."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from builders.pipeline import BuildOptions, CaptionSettings, EmptyBuildError, build
from builders.report import read_rejected
from builders.stages.outcome import reason_kind
from builders.validate import validate_build
from fdrd.errors import FdrdError

QUIET = Console(quiet=True)


def coop_options(root, out, captioner="template", **overrides):
    return BuildOptions(out=out, data_root=root, captions=CaptionSettings(captioner=captioner), **overrides)


def card_header(out):
    return (out / "README.md").read_text().split("---")[1]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("missing file (split_zhou_OxfordPets.json: train entry 3)", "missing file"),
        ("exact duplicate of oxford_pets-0123456789abcdef (train)", "exact duplicate of …"),
        ("truncated image (file ends before the image data does)", "truncated image"),
        (
            "split_zhou_OxfordPets.json: test entry 12 points outside the data root (oxford_pets/): ../../etc/passwd; refusing",
            "split_zhou_OxfordPets.json: test entry … points outside the data root: …; refusing",
        ),
        ("no caption: captioner 'none' made none and the source gave none", "no caption: captioner … made none and the source gave none"),
        ("zero-byte file", "zero-byte file"),
    ],
)
def test_reason_kind_drops_the_particulars(reason, kind):
    assert reason_kind(reason) == kind


def test_captioner_none_on_a_source_without_captions_fails_naming_each_split(coop_root, tmp_path):
    out = tmp_path / "fdrd"
    options = coop_options(coop_root.root, out, captioner="none", domains=("oxford_flowers",))
    with pytest.raises(EmptyBuildError) as raised:
        build(options, console=QUIET)
    message = str(raised.value)
    good = coop_root.facts["good"]["oxford_flowers"]
    for split in ("train", "val", "test"):
        assert f"oxford_flowers/{split} ({len(good[split])} inputs: {len(good[split])} no caption: captioner" in message
    assert "rejected.jsonl" in message and "--overwrite" in message
    manifest = raised.value.manifest
    assert manifest["rows"] == 0 and manifest["shards"] == []
    assert [(f["domain"], f["split"], f["entries"]) for f in manifest["failures"]] == [
        ("oxford_flowers", s, len(good[s])) for s in ("train", "val", "test")
    ]
    assert len(read_rejected(out)) == sum(len(v) for v in good.values())
    # The card of a build without rows declares no config and says so; validate is not ok.
    assert "configs" not in card_header(out) and "dataset_info" not in card_header(out)
    assert "made no rows" in (out / "README.md").read_text()
    problems = validate_build(out).problems
    assert any("holds no rows" in p for p in problems)
    assert any(p.startswith("oxford_flowers/test: no row from 6 inputs") for p in problems)
    # A rerun finds the finished build and fails again instead of saying "nothing to do".
    with pytest.raises(EmptyBuildError):
        build(options, console=QUIET)


def test_one_domain_rejected_whole_fails_the_build_but_keeps_the_other(coop_root, tmp_path):
    jpg = coop_root.root / "oxford_flowers" / "jpg"
    for image in jpg.iterdir():
        image.write_bytes(b"")  # every flower image is a zero-byte file
    out = tmp_path / "fdrd"
    with pytest.raises(EmptyBuildError, match=r"oxford_flowers/train \(6 inputs: 6 zero-byte file\)") as raised:
        build(coop_options(coop_root.root, out), console=QUIET)
    manifest = raised.value.manifest
    assert {f["domain"] for f in manifest["failures"]} == {"oxford_flowers"}
    assert manifest["domains"]["oxford_pets"]["splits"]["train"]["images"] > 0
    header = card_header(out)
    assert "config_name: oxford_pets" in header and "oxford_flowers" not in header
    assert "Incomplete build" in (out / "README.md").read_text()
    assert any("oxford_flowers/val: no row from 3 inputs (3 zero-byte file)" in p for p in validate_build(out).problems)


def test_an_empty_split_file_is_noted_not_failed(coop_root, tmp_path):
    split_path = coop_root.root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    data = json.loads(split_path.read_text())
    data["val"] = []
    split_path.write_text(json.dumps(data))
    out = tmp_path / "fdrd"
    console = Console(record=True, width=200)
    manifest = build(coop_options(coop_root.root, out, domains=("oxford_flowers",)), console=console)
    assert manifest["failures"] == [] and manifest["rows"] > 0
    assert manifest["domains"]["oxford_flowers"]["empty_splits"] == ["val"]  # pretrain: CoOp has none, not noted
    assert "oxford_flowers/val: the source lists no entries for it" in console.export_text()
    assert validate_build(out).problems == []


def test_a_source_listing_nothing_at_all_is_a_failure(coop_root, tmp_path):
    split_path = coop_root.root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    split_path.write_text(json.dumps({"train": [], "val": [], "test": []}))
    with pytest.raises(FdrdError, match="no rows: the source lists no entries for any split asked for"):
        build(coop_options(coop_root.root, tmp_path / "fdrd", domains=("oxford_flowers",)), console=QUIET)


def test_an_empty_source_caption_is_not_a_row(coop_root, tmp_path, monkeypatch):
    from builders.sources.coop import CoopSource

    real = CoopSource.iter_items

    def blank_captions(self, domain, splits):
        for entry in real(self, domain, splits):
            if hasattr(entry, "caption"):
                entry.caption = "  "  # a source that gives whitespace for a caption
            yield entry

    monkeypatch.setattr(CoopSource, "iter_items", blank_captions)
    out = tmp_path / "fdrd"
    options = BuildOptions(
        out=out, data_root=coop_root.root, domains=("oxford_flowers",), captions=CaptionSettings(captioner="none", negatives=0)
    )
    with pytest.raises(EmptyBuildError, match="empty caption: the source gave an empty one"):
        build(options, console=QUIET)
    assert all(r["stage"] == "captions" for r in read_rejected(out))


def test_validate_flags_a_row_without_caption(synthetic_fdrd, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from builders.writer import write_shard

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_fdrd, copy)
    shard = next(copy.glob("*/test-*.parquet"))
    rows = pq.read_table(shard).to_pylist()
    rows[0]["caption"] = ""
    write_shard(shard, rows)
    assert any("empty caption" in p for p in validate_build(copy).problems)
