"""The leaderboard's numbers against values worked out by hand: mean ± std over seeds, AVG over domains,
best per row, the paper's reported numbers and differences, the bootstrap intervals of cells and AVG rows
(the resampling itself is tested in test_bootstrap.py), the refusal to mix datasets or backbones, and every
format parsed back.

Results files are written here by hand in schema v2, never by `fdrd bench`.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.leaderboard import AVG, build_leaderboard
from benchmark.leaderboard_render import render
from benchmark.leaderboard_reported import load_reported
from fdrd.cli import app
from fdrd.errors import FdrdError

PAPER_NINE = ["caltech-101", "oxford_pets", "stanford_cars", "oxford_flowers", "food-101", "fgvc_aircraft", "sun397", "dtd", "ucf101"]


def ranks_with(r1: int, r5: int, r10: int, n: int = 10) -> list[int]:
    """n ranks, exactly r1 of them 1, r5 within 5, r10 within 10."""
    return [1] * r1 + [3] * (r5 - r1) + [7] * (r10 - r5) + [50] * (n - r10)


def write_result(
    root: Path, label: str, domain: str, seed: int, *, i2t=(4, 6, 8), t2i=(3, 5, 7), n: int = 10,
    ranks: bool = True, content_hash: str = "hash-a", model=("tiny-clip", "rev-1"), **fields,
) -> Path:
    """A schema-v2 results file whose metrics are the counts (of n test items within K) given, in percent."""
    metrics = {f"{d}_r{k}": 100.0 * c / n for d, counts in (("i2t", i2t), ("t2i", t2i)) for k, c in zip((1, 5, 10), counts, strict=True)}
    metrics["mean_recall"] = statistics.fmean(metrics.values())
    payload = {
        "schema": "fdrd-bench-result", "schema_version": 2, "run_label": label, "method": label.split("+")[0],
        "named_variant": None, "preset": None, "overrides": {}, "method_variant": "fdrd-toolkit-v1",
        "config": {}, "config_notes": {"choices": {}, "departures": {}},
        "model": {"id": model[0], "revision": model[1]},
        "dataset": {"dir": "data", "content_hash": content_hash, "verified": True, "train_split": "train",
                    "train_records": 0, "test_records": n},
        "domain": domain, "split": "test", "seed": seed, "shots": None, "metrics": metrics,
        "ranks": {"i2t": ranks_with(*i2t, n=n), "t2i": ranks_with(*t2i, n=n)} if ranks else None,
        "recall_backend": "torch", "truncated_captions": {"train": 0, "test": 0}, "timings": {}, "training": {},
        "git": {"sha": "0" * 40, "dirty": False}, "versions": {}, "device": {}, "created": "2025-01-01T00:00:00Z",
    }
    payload.update(fields)
    path = root / label / domain / f"seed-{seed}.json"  # the folder keeps the given label, whatever the payload says
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """coop, seeds 1-3, and zeroshot, seed 1, on oxford_pets and dtd; the expected numbers are in the tests."""
    runs = tmp_path / "runs"
    for seed, pets, dtd in ((1, (4, 6, 8), (2, 4, 6)), (2, (5, 7, 9), (2, 5, 6)), (3, (6, 8, 10), (2, 6, 6))):
        write_result(runs, "coop", "oxford_pets", seed, i2t=pets)
        write_result(runs, "coop", "dtd", seed, i2t=dtd)
    write_result(runs, "zeroshot", "oxford_pets", 1, i2t=(5, 5, 5))
    write_result(runs, "zeroshot", "dtd", 1, i2t=(3, 5, 7))
    return runs


def cells(board, section: str, domain: str, k: int) -> dict:
    (row,) = [r for r in board.rows if (r.section, r.domain, r.k) == (section, domain, k)]
    return row.cells


# ------------------------------------------------------------------------------ numbers by hand
def test_mean_and_std_over_seeds_and_the_avg_rows(two_runs):
    board = build_leaderboard([two_runs])
    assert [c.key for c in board.columns] == ["zeroshot", "coop"]  # the paper's method order
    assert board.domains == ["oxford_pets", "dtd"]  # the paper's domain order
    expected = {  # (domain, K): (mean, std) of coop's image->text recall over seeds 1, 2, 3
        ("oxford_pets", 1): (50, 10), ("oxford_pets", 5): (70, 10), ("oxford_pets", 10): (90, 10),
        ("dtd", 1): (20, 0), ("dtd", 5): (50, 10), ("dtd", 10): (60, 0),
        # AVG: the mean of the domain means; std over seeds of the per-seed average over domains
        (AVG, 1): (35, 5), (AVG, 5): (60, 10), (AVG, 10): (75, 5),
    }
    for (domain, k), (mean, std) in expected.items():
        cell = cells(board, "i2t", domain, k)["coop"]
        assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(std), (domain, k)
        assert cell.seeds == (1, 2, 3)
    zeroshot = {(d, k): cells(board, "i2t", d, k)["zeroshot"] for d in ("oxford_pets", "dtd", AVG) for k in (1, 5, 10)}
    assert [zeroshot["dtd", k].mean for k in (1, 5, 10)] == pytest.approx([30, 50, 70])
    assert [zeroshot[AVG, k].mean for k in (1, 5, 10)] == pytest.approx([40, 50, 60])
    assert all(cell.std is None for cell in zeroshot.values())  # one seed: no spread to show
    assert cells(board, "t2i", AVG, 1)["coop"].mean == pytest.approx(30)


def test_best_per_row_is_bold_and_shown_ties_share_it(two_runs, tmp_path):
    board = build_leaderboard([two_runs])
    best = {(d, k): {key for key, c in cells(board, "i2t", d, k).items() if c.best} for d in ("oxford_pets", "dtd", AVG) for k in (1, 5)}
    assert best["oxford_pets", 1] == {"coop", "zeroshot"}  # 50 and 50
    assert best["oxford_pets", 5] == {"coop"}  # 70 against 50
    assert best["dtd", 1] == {"zeroshot"}  # 30 against 20
    assert best[AVG, 1] == {"zeroshot"} and best[AVG, 5] == {"coop"}  # 40 vs 35; 60 vs 50
    # 50.001 and 50.004 both show as 50.00: both bold; 50.006 shows as 50.01 and wins alone.
    runs = tmp_path / "close"
    for label, value in (("a", 50.001), ("b", 50.004)):
        path = write_result(runs, label, "dtd", 1, ranks=False)
        payload = json.loads(path.read_text())
        payload["metrics"]["i2t_r1"] = value
        path.write_text(json.dumps(payload))
    assert {k for k, c in cells(build_leaderboard([runs]), "i2t", "dtd", 1).items() if c.best} == {"a", "b"}
    write_result(runs, "c", "dtd", 1, ranks=False, metrics={**json.loads(path.read_text())["metrics"], "i2t_r1": 50.006})
    assert {k for k, c in cells(build_leaderboard([runs]), "i2t", "dtd", 1).items() if c.best} == {"c"}


def test_avg_is_left_out_for_a_run_missing_a_domain(two_runs):
    write_result(two_runs, "clip_adapter", "dtd", 1)
    board = build_leaderboard([two_runs])
    assert cells(board, "i2t", AVG, 1)["clip_adapter"].mean is None
    assert cells(board, "i2t", "oxford_pets", 1)["clip_adapter"].mean is None
    assert any("no AVG for clip_adapter" in note and "oxford_pets" in note for note in board.notes)


def test_hard_negative_accuracy_by_kind(tmp_path):
    runs = tmp_path / "runs"
    for seed, pets, dtd in ((1, 80.0, 60.0), (2, 90.0, 70.0)):
        hard = {"category": {"accuracy": pets, "images": 10}, "attribute": {"accuracy": None, "images": 0}}
        write_result(runs, "dcar", "oxford_pets", seed, hard_negatives=hard)
        write_result(runs, "dcar", "dtd", seed, hard_negatives={"category": {"accuracy": dtd, "images": 10}})
    write_result(runs, "zeroshot", "oxford_pets", 1)  # no hard-negative accuracy at all
    write_result(runs, "zeroshot", "dtd", 1)
    board = build_leaderboard([runs])
    rows = {(r.domain, r.kind): r.cells for r in board.hard_negative_rows}
    assert set(rows) == {("oxford_pets", "category"), ("dtd", "category"), (AVG, "category")}  # attribute: all null
    assert rows["oxford_pets", "category"]["dcar"].mean == pytest.approx(85)
    assert rows["oxford_pets", "category"]["dcar"].std == pytest.approx(statistics.stdev([80, 90]))
    assert rows[AVG, "category"]["dcar"].mean == pytest.approx(75)  # (85 + 65) / 2
    assert rows[AVG, "category"]["dcar"].std == pytest.approx(statistics.stdev([70, 80]))  # per-seed averages
    assert rows["dtd", "category"]["zeroshot"].mean is None and rows[AVG, "category"]["dcar"].best
    assert [c.key for c in board.hard_negative_columns] == ["zeroshot", "dcar"]


# ------------------------------------------------------------------------------------ reported
def test_reported_columns_sit_beside_the_published_recipe_with_the_difference(tmp_path):
    runs = tmp_path / "runs"
    write_result(runs, "coop", "oxford_pets", 1, i2t=(5, 8, 9), t2i=(3, 6, 7))
    write_result(runs, "coop", "flowers", 1)  # synthetic: the paper has no such domain
    write_result(runs, "coop+quick", "oxford_pets", 1, preset="quick")
    write_result(runs, "coop+quick", "flowers", 1, preset="quick")
    board = build_leaderboard([runs], reported=True)
    labels = [c.label for c in board.columns]
    assert labels[:4] == ["coop", "CoOp (reported)", "Δ coop", "coop+quick"]
    assert {"CLIP (reported)", "FILIP (reported)", "ALIP (reported)", "FineCLIP (reported)", "DCAR (reported)"} <= set(labels)
    assert "Δ coop+quick" not in labels  # a preset is not the paper's recipe
    row = cells(board, "i2t", "oxford_pets", 1)
    assert row["reported:coop"].mean == pytest.approx(49.88)  # the paper: CoOp, OxfordPets, I2T R@1
    assert row["difference:coop"].mean == pytest.approx(50 - 49.88)
    assert row["reported:FILIP"].mean == pytest.approx(41.97)
    assert cells(board, "t2i", "oxford_pets", 1)["difference:coop"].mean == pytest.approx(30 - 31.59)
    assert not row["reported:coop"].best  # bold is for measured values
    assert cells(board, "i2t", "flowers", 1)["reported:coop"].mean is None
    assert cells(board, "i2t", AVG, 1)["reported:coop"].mean is None  # the paper's AVG is over its nine domains
    assert any("no reported numbers for flowers" in note for note in board.notes)
    assert any("coop+quick is not compared" in note for note in board.notes)


def test_plain_dcar_is_compared_with_the_paper_and_its_ablations_are_not(tmp_path):
    from benchmark.methods.base import resolve_run

    runs = tmp_path / "runs"
    for name in ("dcar", "dcar-novisual"):  # what `fdrd bench NAME` records as its named variant
        write_result(runs, name, "oxford_pets", 1, method="dcar", named_variant=resolve_run(name).named_variant)
    board = build_leaderboard([runs], reported=True)
    labels = [c.label for c in board.columns]
    assert labels[:3] == ["dcar", "DCAR (reported)", "Δ dcar"] and "Δ dcar-novisual" not in labels
    assert cells(board, "i2t", "oxford_pets", 1)["difference:dcar"].mean is not None
    assert [n for n in board.notes if "not compared" in n] == [
        "dcar-novisual is not compared with the paper: it runs a named variant, preset or --set overrides"]


def test_reported_avg_when_the_table_has_the_papers_nine_domains(tmp_path):
    runs = tmp_path / "runs"
    for index, domain in enumerate(PAPER_NINE):
        write_result(runs, "zeroshot", domain, 1, i2t=(index % 3 + 2, 6, 8))  # R@1 20, 30, 40, 20, ...
    board = build_leaderboard([runs], reported=True)
    row = cells(board, "i2t", AVG, 1)
    assert row["zeroshot"].mean == pytest.approx(30)
    assert row["reported:zeroshot"].mean == pytest.approx(27.04)  # CLIP, AVG, I2T R@1
    assert row["difference:zeroshot"].mean == pytest.approx(30 - 27.04)
    assert cells(board, "t2i", AVG, 1)["reported:CoOp"].mean == pytest.approx(18.26)


def test_the_packaged_paper_table_is_whole_and_its_avg_is_the_mean_of_nine():
    table = load_reported()
    assert table.methods == ("CLIP", "CoOp", "CLIP-Adapter", "MaPLe", "FILIP", "ALIP", "FineCLIP", "DCAR")
    assert len(table.values) == 8 * 10 * 2 * 3
    for method in table.methods:
        for direction in ("i2t", "t2i"):
            for k in (1, 5, 10):
                nine = [table.get(method, d, direction, k) for d in PAPER_NINE]
                assert statistics.fmean(nine) == pytest.approx(table.get(method, "AVG", direction, k), abs=0.006)
    assert table.get("DCAR", "fgvc_aircraft", "i2t", 1) is not None


# ------------------------------------------------------------------------------------ intervals
def test_intervals_of_cells_and_of_avg(tmp_path):
    runs = tmp_path / "runs"
    write_result(runs, "coop", "dtd", 1, i2t=(10, 10, 10))  # every item first: no spread at all
    write_result(runs, "coop", "oxford_pets", 1, i2t=(3, 6, 8))
    write_result(runs, "coop", "oxford_pets", 2, i2t=(5, 6, 9))
    board = build_leaderboard([runs])
    assert cells(board, "i2t", "dtd", 1)["coop"].interval == pytest.approx((100.0, 100.0))
    low, high = cells(board, "i2t", "oxford_pets", 1)["coop"].interval
    assert 0 <= low < 40 < high <= 100  # the mean, 40, lies inside
    # Each AVG replicate is the mean of the domain replicates: here (100 + pets) / 2, so its percentiles too.
    assert cells(board, "i2t", AVG, 1)["coop"].interval == pytest.approx(((100 + low) / 2, (100 + high) / 2))
    assert board.interval["level"] == 0.95 and board.interval["resamples"] == 1000


def test_a_single_seed_without_ranks_carries_its_files_interval(tmp_path):
    runs = tmp_path / "runs"
    write_result(runs, "a", "dtd", 1, ranks=False, intervals={"i2t_r1": [31.5, 48.5]})
    write_result(runs, "b", "dtd", 1, ranks=False, intervals={"i2t_r1": [30.0, 50.0]})
    write_result(runs, "b", "dtd", 2, ranks=False)
    row = cells(build_leaderboard([runs]), "i2t", "dtd", 1)
    assert row["a"].interval == (31.5, 48.5)
    assert row["b"].interval is None  # two seeds and no ranks: nothing to bootstrap from


def test_an_interval_rounded_past_its_value_still_draws(tmp_path):
    runs = tmp_path / "runs"
    write_result(runs, "a", "dtd", 1, ranks=False, intervals={"i2t_r1": [40.004, 48.5]})  # R@1 is 40.0
    board = build_leaderboard([runs])
    assert cells(board, "i2t", "dtd", 1)["a"].interval == (40.004, 48.5)
    assert "<img" in render(board, "html")


def test_differences_are_paired_over_the_items_both_runs_were_scored_on(tmp_path):
    runs = tmp_path / "runs"
    # a's rank is at most b's on every item and smaller on eight of ten: a wins in every resample but one
    # that draws only the two shared hits (odds 0.2^10). By hand: a's mean recall is (80 + 90 + 100) / 3
    # = 90 in both directions, b's (20 + 30 + 40) / 3 = 30.
    write_result(runs, "a", "dtd", 1, i2t=(8, 9, 10), t2i=(8, 9, 10))
    write_result(runs, "b", "dtd", 1, i2t=(2, 3, 4), t2i=(2, 3, 4))
    write_result(runs, "twin", "dtd", 1, i2t=(2, 3, 4), t2i=(2, 3, 4))
    write_result(runs, "no-ranks", "dtd", 1, ranks=False)
    board = build_leaderboard([runs])
    found = {tuple(d["runs"]): d for d in board.differences}
    assert set(found) == {("a", "b"), ("a", "twin"), ("b", "twin")}  # the run without ranks is left out
    assert found["a", "b"]["difference"] == pytest.approx(60.0)
    assert found["a", "b"]["interval"][0] > 0 and not found["a", "b"]["inside_noise"]
    # Identical runs: every resample draws the same items for both, so the difference is exactly 0.
    assert found["b", "twin"]["interval"] == [0.0, 0.0] and found["b", "twin"]["inside_noise"]
    markdown = render(board, "md")
    assert "## Which differences are inside the noise" in markdown
    assert "| a − b | +60.00 | [+" in markdown and "| b − twin | +0.00 | [+0.00, +0.00] | inside the noise |" in markdown
    assert 'id="table-differences"' in render(board, "html")
    assert json.loads(render(board, "json"))["differences"][0]["runs"] == ["a", "b"]


def test_many_runs_are_compared_with_the_next_and_with_the_best(tmp_path):
    runs = tmp_path / "runs"
    labels = [f"run{i:02d}" for i in range(14)]
    for i, label in enumerate(labels):  # run00 best, run13 worst
        hits = 10 - i // 2
        write_result(runs, label, "dtd", 1, i2t=(hits - 4, hits - 2, hits), t2i=(hits - 4, hits - 2, hits), n=10)
    pairs = [tuple(d["runs"]) for d in build_leaderboard([runs]).differences]
    expected = {*zip(labels, labels[1:], strict=False), *((labels[0], b) for b in labels[2:])}
    assert len(pairs) == len(expected) == 25 and set(pairs) == expected


def test_the_same_table_in_two_processes(two_runs):
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "fdrd.cli", "leaderboard", str(two_runs), "--format", "json"],
            capture_output=True, text=True, check=True,
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["rows"][0]["cells"]["coop"]["interval"] is not None


def test_the_command_never_loads_torch(two_runs, tmp_path):
    """Tables from JSON files need no torch, whose import alone takes seconds (tested in a fresh process)."""
    script = (
        "import sys\n"
        "from fdrd.cli import app\n"
        f"app(['leaderboard', {str(two_runs)!r}, '--reported', '--out', {str(tmp_path / 'board')!r}], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'fdrd leaderboard imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "board" / "leaderboard.html").is_file()


# --------------------------------------------------------------------------- refusals and errors
def test_results_of_two_datasets_are_refused_unless_allowed(two_runs):
    write_result(two_runs, "maple", "dtd", 1, content_hash="hash-b")
    with pytest.raises(FdrdError) as refused:
        build_leaderboard([two_runs])
    message = str(refused.value)
    assert "hash-a" in message and "hash-b" in message and "maple" in message and "--allow-mixed" in message
    board = build_leaderboard([two_runs], allow_mixed=True)
    assert any(note.startswith("mixed:") and "hash-b" in note for note in board.notes)


def test_results_of_two_backbones_are_refused(two_runs):
    write_result(two_runs, "maple", "dtd", 1, model=("tiny-clip", "rev-2"))
    with pytest.raises(FdrdError, match=r"backbones.*tiny-clip@rev-1.*tiny-clip@rev-2"):
        build_leaderboard([two_runs])


def test_no_results_is_an_error_naming_the_folders(tmp_path):
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    (other / "x").mkdir(parents=True)
    (other / "x" / "manifest.json").write_text("{}")
    result = CliRunner().invoke(app, ["leaderboard", str(empty), str(other)])
    assert result.exit_code != 0
    assert isinstance(result.exception, FdrdError)
    assert str(empty) in str(result.exception) and str(other) in str(result.exception)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"schema_version": 1}, "schema version 1"),
        ({"metrics": {"i2t_r1": 40.0}}, "metrics.i2t_r5"),
        ({"seed": "1"}, "seed"),
        ({"run_label": "../../etc"}, "run_label"),
        ({"ranks": {"i2t": [1, 0], "t2i": [1]}}, "ranks.i2t"),
        ({"hard_negatives": {"category": {"accuracy": 140}}}, "hard_negatives.category.accuracy"),
        # i2t R@1 is 40: an interval that does not hold it (or is upside down) cannot be drawn around it.
        ({"intervals": {"i2t_r1": [60.0, 70.0]}}, "intervals.i2t_r1 [60.0, 70.0] does not hold metrics.i2t_r1 40.0"),
        ({"intervals": {"i2t_r1": [50.0, 30.0]}}, "intervals.i2t_r1 [50.0, 30.0] does not hold"),
    ],
)
def test_a_broken_results_file_is_named(tmp_path, change, complaint):
    path = write_result(tmp_path / "runs", "coop", "dtd", 1)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(FdrdError) as broken:
        build_leaderboard([tmp_path / "runs"])
    assert str(path) in str(broken.value) and complaint in str(broken.value)


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"seed": ' + "1" * 5000 + "}", "{ half",
                                     '{"run_label": "coop\\u0000"}'])
def test_hostile_json_is_named_in_a_results_file_and_skipped_elsewhere(tmp_path, content):
    runs = tmp_path / "runs"
    write_result(runs, "coop", "dtd", 1)
    (runs / "coop" / "latest.json").write_text(content)  # another JSON file of the folder: skipped
    assert cells(build_leaderboard([runs]), "i2t", "dtd", 1)["coop"].mean == pytest.approx(40)
    path = runs / "coop" / "dtd" / "seed-2.json"
    path.write_text(content)
    with pytest.raises(FdrdError, match="seed-2.json: .*rerun that seed"):
        build_leaderboard([runs])


def test_ranks_that_disagree_with_the_metrics_are_refused(tmp_path):
    path = write_result(tmp_path / "runs", "coop", "dtd", 1)
    payload = json.loads(path.read_text())
    payload["ranks"]["i2t"] = ranks_with(9, 9, 9)
    path.write_text(json.dumps(payload))
    with pytest.raises(FdrdError, match="metrics.i2t_r1 is 40.0 but its ranks give 90"):
        build_leaderboard([path])


def test_the_same_seed_in_two_folders_is_refused_and_a_file_named_twice_is_read_once(tmp_path, two_runs):
    copy = tmp_path / "copy"
    write_result(copy, "coop", "dtd", 1)
    with pytest.raises(FdrdError, match="both run 'coop', domain 'dtd', seed 1"):
        build_leaderboard([two_runs, copy])
    board = build_leaderboard([two_runs, two_runs / "coop" / "dtd" / "seed-1.json"])
    assert cells(board, "i2t", "dtd", 1)["coop"].seeds == (1, 2, 3)


def test_a_named_file_must_be_a_results_file(tmp_path):
    other = tmp_path / "manifest.json"
    other.write_text(json.dumps({"format": "fdrd-build"}))
    with pytest.raises(FdrdError, match="not a results file"):
        build_leaderboard([other])


# -------------------------------------------------------------------------------------- formats
def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    tables, title = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("| ") and title:
            tables.setdefault(title, []).append([c.strip().replace("\\_", "_") for c in line.strip("|").split(" | ")])
    return tables


def test_markdown_has_the_papers_layout(two_runs):
    text = render(build_leaderboard([two_runs]), "md")
    table = markdown_tables(text)["Recall@K (%), image → text"]
    assert table[0] == ["domain", "K", "zeroshot", "coop"]
    rows = {(r[0], r[1]): r[2:] for r in table[1:]}
    assert list(rows)[:3] == [("oxford_pets", "R@1"), ("oxford_pets", "R@5"), ("oxford_pets", "R@10")]
    assert rows["oxford_pets", "R@1"] == ["**50.00**", "**50.00 ± 10.00**"]
    assert rows["dtd", "R@10"] == ["**70.00**", "60.00 ± 0.00"]
    assert rows["**AVG**", "R@1"] == ["**40.00**", "35.00 ± 5.00"]
    assert "Recall@K (%), text → image" in markdown_tables(text)


def test_csv_parses_back_to_the_numbers(two_runs):
    rows = list(csv.DictReader(io.StringIO(render(build_leaderboard([two_runs]), "csv"))))
    found = {(r["table"], r["domain"], r["k"], r["column"]): r for r in rows}
    coop = found["i2t", "AVG", "5", "coop"]
    assert float(coop["mean"]) == pytest.approx(60) and float(coop["std"]) == pytest.approx(10)
    assert coop["seeds"] == "1;2;3" and coop["best"] == "true" and coop["column_kind"] == "measured"
    assert float(coop["ci_low"]) <= 60 <= float(coop["ci_high"])
    assert found["i2t", "dtd", "1", "zeroshot"]["std"] == ""


def test_json_parses_back(two_runs):
    payload = json.loads(render(build_leaderboard([two_runs]), "json"))
    assert payload["schema"] == "fdrd-leaderboard" and payload["datasets"] == ["hash-a"]
    assert payload["models"] == [{"id": "tiny-clip", "revision": "rev-1"}]
    row = next(r for r in payload["rows"] if (r["section"], r["domain"], r["k"]) == ("i2t", "AVG", 1))
    assert row["cells"]["coop"]["mean"] == pytest.approx(35) and row["cells"]["coop"]["std"] == pytest.approx(5)
    assert payload["runs"]["coop"] == {"method": "coop", "seeds": [1, 2, 3], "domains": ["oxford_pets", "dtd"], "files": 6}


def test_latex_is_booktabs_with_bold_best_and_escaped_names(two_runs, tmp_path):
    write_result(two_runs, "clip_adapter", "dtd", 1)
    text = render(build_leaderboard([two_runs], reported=True), "latex")
    assert text.count(r"\begin{tabular}") == 1 and r"\toprule" in text and r"\bottomrule" in text
    assert r"oxford\_pets & R@1 & \textbf{50.00} & 40.77 & +9.23 & \textbf{50.00 $\pm$ 10.00}" in text
    assert r"$\Delta$ clip\_adapter" in text and r"Recall@K (\%), image $\to$ text" in text
    assert "_" not in text.replace(r"\_", "")


def test_the_command_writes_every_format_and_the_card(two_runs, tmp_path):
    out = tmp_path / "board"
    result = CliRunner().invoke(app, ["leaderboard", str(two_runs), "--out", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "leaderboard.csv", "leaderboard.html", "leaderboard.json", "leaderboard.md", "leaderboard.tex"]
    assert result.stdout.startswith("table,domain,k,kind,column")
    assert (out / "README.md").read_text().startswith("---\nviewer: false\n")
    bad = CliRunner().invoke(app, ["leaderboard", str(two_runs), "--format", "pdf"])
    assert bad.exit_code != 0 and "md, latex, csv, html, json" in str(bad.exception)


def test_the_command_line_formats_are_the_renderers():
    from benchmark.leaderboard_render import FORMATS
    from fdrd.cli.leaderboard import FORMATS as CLI_FORMATS

    assert CLI_FORMATS == FORMATS


def test_the_leaderboard_reads_the_schema_bench_writes():
    from benchmark import leaderboard_input, results

    assert (leaderboard_input.RESULTS_SCHEMA, leaderboard_input.RESULTS_SCHEMA_VERSION) == (
        results.SCHEMA_NAME, results.SCHEMA_VERSION)


@pytest.mark.parametrize("label", ["coop", "dcar-novisual+quick+1a2b3c4d", "x.y", "_x", "-x", "a" * 100, "a" * 101,
                                   ".hidden", "", "a/b", "a b", "..", "é", "coop\n"])
def test_the_leaderboard_reads_exactly_the_labels_bench_can_write(tmp_path, label):
    from benchmark.methods.base import check_label

    try:
        check_label(label)
        writable = True
    except FdrdError:
        writable = False
    write_result(tmp_path / "runs", "folder", "dtd", 1, run_label=label)
    try:
        board = build_leaderboard([tmp_path / "runs"])
    except FdrdError as error:
        assert not writable and "run_label" in str(error)
    else:
        assert writable and list(board.runs) == [label]
