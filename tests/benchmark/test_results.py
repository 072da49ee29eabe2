"""Results files v2: the schema check, the reader, summaries keyed by run label (duplicates refused,
intervals over items and seeds), the noise notes and the printed table. Records are written by hand."""

from __future__ import annotations

import copy
import json
import math
import statistics

import pytest
from rich.console import Console

from benchmark.results import (
    load_results,
    noise_notes,
    summarize,
    summary_table,
    validate_result,
    write_result,
)
from fdrd.errors import FdrdError

SIX = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def record(label="coop", domain="flowers", seed=1, ranks=(1, 3, 7, 20), method="coop", hard=(50.0, 25.0)):
    """A v2 results record as /work/briefs/results-v2.md spells it; the figures follow from `ranks`
    (used both ways) by hand: R@K is the percent of ranks <= K."""
    ranks = list(ranks)
    recall = {k: 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in (1, 5, 10)}
    metrics = {f"{d}_r{k}": recall[k] for d in ("i2t", "t2i") for k in (1, 5, 10)}
    metrics.update({"mean_recall": statistics.fmean(recall.values()), "i2t_mean_rank": statistics.fmean(ranks),
                    "t2i_mean_rank": statistics.fmean(ranks), "i2t_median_rank": statistics.median(ranks),
                    "t2i_median_rank": statistics.median(ranks)})
    return {
        "schema": "fdrd-bench-result", "schema_version": 2, "run_label": label, "method": method,
        "named_variant": None, "preset": None, "overrides": {}, "method_variant": "fdrd-toolkit-v1",
        "config": {"epochs": 2}, "config_notes": {"choices": {}, "departures": {}},
        "model": {"id": "tiny", "revision": "sha256:0"},
        "dataset": {"dir": "/d", "content_hash": "h", "verified": True, "train_split": "train",
                    "train_records": 8, "test_records": len(ranks)},
        "domain": domain, "split": "test", "seed": seed,
        "shots": {"requested": 2, "allow_fewer": False, "drawn_min": 2, "drawn_max": 2, "per_category": {"a": 2}},
        "metrics": metrics,
        "intervals": {"level": 0.95, "resamples": 1000, "method": "percentile bootstrap over test items",
                      **{key: [0.0, 100.0] for key in (*SIX, "mean_recall")}},
        "ranks": {"i2t": ranks, "t2i": ranks},
        "hard_negatives": {"category": {"accuracy": hard[0], "images": 4}, "attribute": {"accuracy": hard[1], "images": 4}},
        "recall_backend": "torch",
        "truncated_captions": {"train": 0, "test": 0},
        "timings": {"train_seconds": 1.0, "seconds_per_epoch": 0.5, "train_images_per_second": 16.0,
                    "eval_seconds": 0.1, "eval_images_per_second": 40.0, "feature_cache_seconds": 0.0},
        "training": {"epochs": 2, "steps": 2, "loss_per_epoch": [1.0, 0.9], "resumed_from_epoch": None,
                     "precision": "fp32", "augment": False, "feature_cache": True},
        "git": {"sha": None, "dirty": None}, "versions": {}, "device": {"type": "cpu"}, "created": "2026-01-01T00:00:00+00:00",
    }


def test_a_hand_written_v2_record_validates():
    assert validate_result(record()) == []
    assert validate_result({**record(), "shots": None}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("run_label"), "misses run_label"),
        (lambda r: r.update(schema_version=1), "schema version 1, this reader knows 2"),
        (lambda r: r["metrics"].pop("mean_recall"), "metrics misses mean_recall"),
        (lambda r: r["metrics"].update(i2t_r1="high"), "not numbers"),
        (lambda r: r["ranks"].update(t2i=[1, 0]), "ranks must hold"),
        (lambda r: r["ranks"].update(i2t=[]), "ranks must hold"),
        (lambda r: r["intervals"].pop("t2i_r5"), "intervals must give"),
        (lambda r: r["hard_negatives"].pop("attribute"), "hard_negatives must give"),
        (lambda r: r["shots"].pop("per_category"), "shots must be null or hold"),
        (lambda r: r["training"].pop("feature_cache"), "training misses feature_cache"),
        (lambda r: r["timings"].pop("seconds_per_epoch"), "timings misses seconds_per_epoch"),
        (lambda r: r.update(seed="1"), "seed is not an integer"),
    ],
)
def test_validate_names_what_is_wrong(change, message):
    broken = copy.deepcopy(record())
    change(broken)
    assert any(message in problem for problem in validate_result(broken)), validate_result(broken)


def test_write_then_load_keys_files_by_run_label(tmp_path):
    first = write_result(tmp_path, record(label="coop+1a2b3c4d"))
    second = write_result(tmp_path, record(label="coop+99999999"))
    assert first == tmp_path / "coop+1a2b3c4d" / "flowers" / "seed-1.json"
    assert first != second
    loaded = load_results(tmp_path)
    assert [r["run_label"] for r in loaded] == ["coop+1a2b3c4d", "coop+99999999"]
    assert loaded[0]["path"] == str(first)
    with pytest.raises(ValueError, match="not schema v2"):
        write_result(tmp_path, {**record(), "ranks": {}})


def test_load_results_skips_other_json_and_names_broken_or_old_files(tmp_path):
    (tmp_path / "latest.json").write_text(json.dumps({"epoch": 1}))
    assert load_results(tmp_path) == []
    broken = tmp_path / "coop" / "d" / "seed-1.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{ half")
    with pytest.raises(FdrdError, match="seed-1.json: not valid JSON"):
        load_results(tmp_path)
    broken.write_text(json.dumps({"schema": "fdrd-bench-result", "schema_version": 2, "method": "coop"}))
    with pytest.raises(FdrdError, match="seed-1.json: not a usable results file: misses"):
        load_results(tmp_path)
    broken.write_text(json.dumps({**record(), "schema_version": 1}))
    with pytest.raises(FdrdError, match="schema version 1, this reader knows 2"):
        load_results(tmp_path)
    with pytest.raises(FdrdError, match="no such results directory"):
        load_results(tmp_path / "absent")


# JSON that json.loads cannot take without a RecursionError or a ValueError other than JSONDecodeError.
HOSTILE_JSON = {"deep": "[" * 100_000 + "]" * 100_000, "huge number": '{"seed": ' + "1" * 5000 + "}",
                "NUL": '{"run_label": "coop\\u0000"}', "not UTF-8": b'{"\xe9": 1}'}


@pytest.mark.parametrize("name", HOSTILE_JSON)
def test_hostile_json_is_a_named_error_or_skipped(tmp_path, name):
    content = HOSTILE_JSON[name]
    other = tmp_path / "latest.json"
    other.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert load_results(tmp_path) == []  # not a results file: skipped, whatever it holds
    seed = tmp_path / "coop" / "d" / "seed-1.json"
    seed.parent.mkdir(parents=True)
    seed.write_bytes(other.read_bytes())
    with pytest.raises(FdrdError, match="seed-1.json: .*; delete it and rerun that seed"):
        load_results(tmp_path)


def test_two_results_for_one_label_domain_and_seed_are_named_not_dropped(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_result(a, record())
    write_result(b, record(ranks=(2, 2, 2, 2)))
    with pytest.raises(FdrdError, match=r"two results for run 'coop', domain 'flowers', seed 1: .*a/coop.* and .*b/coop"):
        summarize(load_results(a) + load_results(b))


def test_seeds_ranked_on_different_test_splits_are_refused():
    with pytest.raises(FdrdError, match="ranks 4 test images but .* ranks 3; seeds of one run must share a test split"):
        summarize([record(seed=1), record(seed=2, ranks=(1, 2, 3))])


def test_rows_are_means_over_seeds_and_avg_the_mean_over_domains():
    results = [
        record(seed=1, ranks=(1, 3, 7, 20)),  # R@1 25, R@5 50, R@10 75
        record(seed=2, ranks=(1, 1, 30, 30)),  # R@1 50, R@5 50, R@10 50
        record(domain="beetles", seed=1, ranks=(40, 40, 40, 2), hard=(100.0, None)),  # 0, 25, 25
        record(domain="beetles", seed=2, ranks=(40, 40, 4, 2), hard=(0.0, None)),  # 0, 50, 50
        record(label="other", domain="beetles", seed=3),
    ]
    summary = summarize(results)
    assert set(summary) == {"coop", "other"}
    rows = summary["coop"]
    assert list(rows) == ["beetles", "flowers", "AVG"]
    assert rows["flowers"]["i2t_r1"] == (37.5, pytest.approx(statistics.stdev([25, 50])))
    assert rows["beetles"]["t2i_r10"] == (37.5, pytest.approx(statistics.stdev([25, 50])))
    assert rows["flowers"]["mean_recall"][0] == pytest.approx((50 + 50) / 2)
    assert rows["AVG"]["i2t_r5"][0] == pytest.approx((50 + 37.5) / 2)
    # AVG std: over seeds of the per-seed domain average (seed 1: (25 + 0) / 2, seed 2: (50 + 0) / 2).
    assert rows["AVG"]["i2t_r1"][1] == pytest.approx(statistics.stdev([12.5, 25.0]))
    assert rows["AVG"]["seeds"] == [1, 2] and rows["flowers"]["seeds"] == [1, 2]
    assert rows["beetles"]["hard_negatives"] == {"category": 50.0, "attribute": None}
    assert rows["AVG"]["hard_negatives"] == {"category": pytest.approx((50 + 50) / 2), "attribute": None}
    assert rows["AVG"]["method"] == "coop"


def test_uneven_seeds_leave_the_avg_std_undefined():
    results = [record(seed=1), record(seed=2), record(domain="beetles", seed=1)]
    mean, std = summarize(results)["coop"]["AVG"]["mean_recall"]
    assert math.isnan(std) and mean == pytest.approx(50.0)


def test_intervals_resample_seeds_items_and_every_domain():
    hits, misses = (1, 1, 1), (50, 50, 50)
    results = [
        record(domain="flowers", seed=1, ranks=hits),
        record(domain="beetles", seed=1, ranks=misses),
        record(label="mixed", domain="flowers", seed=1, ranks=hits),
        record(label="mixed", domain="flowers", seed=2, ranks=misses),
    ]
    summary = summarize(results)
    assert summary["coop"]["flowers"]["intervals"]["i2t_r1"] == (100.0, 100.0)
    assert summary["coop"]["beetles"]["intervals"]["t2i_r10"] == (0.0, 0.0)
    assert summary["coop"]["AVG"]["intervals"]["mean_recall"] == (50.0, 50.0)
    # One seed all hits, one all misses: resampled seed means are 0, 50, 100 with odds 1:2:1.
    assert summary["mixed"]["flowers"]["intervals"]["i2t_r5"] == (0.0, 100.0)


def test_noise_notes_pair_the_runs_on_their_shared_test_items():
    # best and close differ on one item of eight: a resample misses it with odds (7/8)^8 = 0.34, so the
    # difference's interval reaches 0; every other pair differs on six items or more (7 and 6 of 8 hits at
    # every K against none: +87.5 and +75 points of mean recall).
    strong, weak = (1, 1, 1, 1, 1, 1, 1, 40), (40,) * 8
    results = [record(label=label, ranks=ranks) for label, ranks in
               (("best", strong), ("close", strong[1:] + (40,)), ("worst", weak))]
    inside, apart = noise_notes(summarize(results))
    assert inside == "AVG mean recall, difference inside the noise (paired bootstrap): best ~ close"
    assert apart.startswith("AVG mean recall, difference outside the noise: best > worst (+87.50 [")
    assert ", close > worst (+75.00 [" in apart
    assert noise_notes(summarize([record()])) == []


def test_noise_notes_see_a_difference_that_overlapping_intervals_hide():
    """Eight items of mixed difficulty, one run better by one rank everywhere: each run's own interval
    is wide and the two overlap, but the better run wins in every resample of the shared items."""
    ranks = (1, 2, 4, 6, 9, 11, 30, 60)
    better = tuple(max(1, r - 1) for r in ranks)
    summary = summarize([record(label="a", ranks=better), record(label="b", ranks=ranks)])
    (a_low, a_high), (b_low, b_high) = (summary[x]["AVG"]["intervals"]["mean_recall"] for x in ("a", "b"))
    assert a_low <= b_high and b_low <= a_high  # the old rule (overlap) would call this noise
    (note,) = noise_notes(summary)
    assert note.startswith("AVG mean recall, difference outside the noise: a > b (")


def test_table_shows_means_intervals_hard_negatives_and_the_notes():
    results = [record(seed=1, ranks=(1,) * 4), record(seed=2, ranks=(30,) * 4), record(label="zeroshot", ranks=(1, 1, 30, 30))]
    table = summary_table(results)
    assert table.row_count == 4  # flowers + AVG per run label
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "coop" in text and "zeroshot" in text and "AVG" in text
    assert "50.0" in text and "0.0-100.0" in text  # coop: seeds of 100 and 0, resampled 0, 50 or 100
    assert "25.0" in text  # hard-negative accuracy, attribute kind
    assert "difference inside the noise (paired bootstrap): coop ~ zeroshot" in text
