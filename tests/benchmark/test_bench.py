"""`fdrd bench` end to end on the synthetic FDRD with the tiny pretrained CLIP, results files, errors."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from typer.testing import CliRunner

from benchmark.results import RECALL_KEYS, REQUIRED_FIELDS, load_results, summarize, summary_table
from fdrd.cli import app
from fdrd.errors import FdrdError
from fdrd.manifest import read_manifest

# A few epochs at learning rates the tiny model moves with (chosen on this data, figures in
# docs/performance.md); no warm-up epoch, which would spend much of so short a run at 1e-5.
TRAINING = {
    "coop": ["--set", "epochs=6", "--set", "warmup_epochs=0", "--set", "batch_size=8", "--set", "lr=0.005"],
    "clip_adapter": ["--set", "epochs=10", "--set", "warmup_epochs=0", "--set", "batch_size=8",
                     "--set", "optimizer=adamw", "--set", "lr=0.03"],
    "zeroshot": [],
}
SEEDS = "1,2"
SHOTS = "2"


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def bench_runs(synthetic_fdrd, pretrained_tiny_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    outputs = {}
    for method, extra in TRAINING.items():
        result = invoke("bench", method, "--data", synthetic_fdrd, "--model", pretrained_tiny_clip,
                        "--shots", SHOTS, "--seeds", SEEDS, "--out", out, "--device", "cpu", *extra)
        assert result.exit_code == 0, (method, result.output, result.exception)
        outputs[method] = result.output
    return out, outputs


def mean_recall(rows):
    return rows["AVG"]["mean_recall"][0]


@pytest.mark.slow
def test_trained_methods_beat_zero_shot_of_the_same_model(bench_runs, capsys):
    out, _ = bench_runs
    summary = summarize(load_results(out))
    zero = mean_recall(summary["zeroshot"])
    coop = mean_recall(summary["coop"])
    adapter = mean_recall(summary["clip_adapter"])
    with capsys.disabled():  # the numbers the issue asks to report
        print(f"\nmean of R@1/5/10 both ways, AVG over domains: zeroshot {zero:.2f}  coop {coop:.2f}  "
              f"clip_adapter {adapter:.2f}")
    assert coop > zero
    assert adapter > zero


@pytest.mark.slow
def test_results_files_are_complete_and_consistent(bench_runs, synthetic_fdrd, pretrained_tiny_clip):
    out, outputs = bench_runs
    results = load_results(out)
    domains = list(read_manifest(synthetic_fdrd)["domains"])
    assert len(results) == 3 * len(domains) * 2
    content_hash = read_manifest(synthetic_fdrd)["content_hash"]
    for result in results:
        assert set(REQUIRED_FIELDS) <= set(result)
        assert result["dataset"]["content_hash"] == content_hash
        assert result["model"]["id"] == str(pretrained_tiny_clip) and result["model"]["revision"]
        assert result["method_variant"] == "fdrd-toolkit-v1"
        assert result["split"] == "test" and result["seed"] in (1, 2)
        assert all(0.0 <= result["metrics"][key] <= 100.0 for key in RECALL_KEYS)
        assert result["versions"]["torch"] and result["device"]["type"] == "cpu"
        if result["method"] == "zeroshot":
            assert result["shots"] is None and result["training"]["steps"] == 0
        else:
            assert result["shots"] == 2 and result["training"]["epochs"] == result["config"]["epochs"] > 0
            assert result["config"]["warmup_epochs"] == 0 and result["config"]["batch_size"] == 8
            assert result["dataset"]["train_records"] > 0
    # The table printed at the end has every domain and an AVG row per method.
    for method, text in outputs.items():
        assert "AVG" in text and all(domain in text for domain in domains), method


@pytest.mark.slow
def test_zero_shot_does_not_depend_on_the_seed(bench_runs):
    out, _ = bench_runs
    by_domain = {}
    for result in load_results(out):
        if result["method"] == "zeroshot":
            by_domain.setdefault(result["domain"], []).append(result["metrics"])
    for runs in by_domain.values():
        assert runs[0] == runs[1]


@pytest.mark.slow
def test_summary_avg_is_the_plain_mean_over_domains(bench_runs):
    out, _ = bench_runs
    results = [r for r in load_results(out) if r["method"] == "coop"]
    rows = summarize(results)["coop"]
    domains = sorted({r["domain"] for r in results})
    for key in RECALL_KEYS:
        per_domain = [statistics.fmean(r["metrics"][key] for r in results if r["domain"] == d) for d in domains]
        assert rows["AVG"][key][0] == pytest.approx(statistics.fmean(per_domain))
        seeds = [statistics.fmean(r["metrics"][key] for r in results if r["seed"] == s) for s in (1, 2)]
        assert rows["AVG"][key][1] == pytest.approx(statistics.stdev(seeds))
    assert summary_table(results).row_count == len(domains) + 1


@pytest.mark.slow
def test_resume_after_finished_training_reproduces_the_results(bench_runs, synthetic_fdrd, pretrained_tiny_clip):
    out, _ = bench_runs
    domain = next(iter(read_manifest(synthetic_fdrd)["domains"]))
    before = {(r["domain"], r["seed"]): r["metrics"] for r in load_results(out) if r["method"] == "coop"}
    result = invoke("bench", "coop", "--data", synthetic_fdrd, "--model", pretrained_tiny_clip, "--shots", SHOTS,
                    "--seeds", "1", "--domains", domain, "--out", out, "--device", "cpu", "--resume",
                    *TRAINING["coop"])
    assert result.exit_code == 0, result.output
    after = next(r for r in load_results(out) if r["method"] == "coop" and r["domain"] == domain and r["seed"] == 1)
    assert after["training"]["resumed_from_epoch"] == 6
    assert after["metrics"] == before[(domain, 1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown method 'nope'; known methods and variants: .*clip_adapter.*coop.*zeroshot"),
        (["zeroshot", "--domains", "moon"], "no domain 'moon'; available domains"),
        (["coop", "--shots", "50"], "fewer than 50 records"),
        (["zeroshot", "--seeds", "1,x"], "expected comma-separated integers"),
        (["coop", "--set", "lr"], "expected field=value"),
        (["coop", "--set", "warp=9"], "unknown config field 'warp'"),
    ],
)
def test_bad_input_gives_clear_errors(args, message, synthetic_fdrd, tiny_clip_dir, tmp_path):
    result = invoke("bench", *args, "--data", synthetic_fdrd, "--model", tiny_clip_dir, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError), result.output
    assert re.search(message, str(result.exception)), str(result.exception)


def test_missing_dataset_and_non_clip_model(synthetic_fdrd, tmp_path):
    result = invoke("bench", "zeroshot", "--data", tmp_path / "absent", "--model", tmp_path, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError) and "no such dataset directory" in str(result.exception)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = invoke("bench", "zeroshot", "--data", synthetic_fdrd, "--model", bert, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError) and "not CLIP-like" in str(result.exception)


def test_load_results_skips_other_json_and_names_broken_files(tmp_path):
    (tmp_path / "latest.json").write_text(json.dumps({"epoch": 1}))
    assert load_results(tmp_path) == []
    broken = tmp_path / "coop" / "d" / "seed-1.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{ half")
    with pytest.raises(FdrdError, match="seed-1.json: not valid JSON"):
        load_results(tmp_path)
    broken.write_text(json.dumps({"schema": "fdrd-bench-result", "schema_version": 1, "method": "coop"}))
    with pytest.raises(FdrdError, match="seed-1.json: results file misses"):
        load_results(tmp_path)


def fake_result(method, domain, seed, value):
    return {"method": method, "domain": domain, "seed": seed, "metrics": {key: value for key in RECALL_KEYS}}


def test_summary_with_uneven_seeds_reports_avg_without_std():
    results = [fake_result("coop", "a", 1, 10.0), fake_result("coop", "a", 2, 20.0), fake_result("coop", "b", 1, 40.0)]
    rows = summarize(results)["coop"]
    assert rows["a"]["i2t_r1"] == (15.0, pytest.approx(7.0710678))
    assert rows["b"]["i2t_r1"] == (40.0, 0.0)
    mean, std = rows["AVG"]["mean_recall"]
    assert mean == 27.5 and std != std  # NaN: domains ran different seeds, no per-seed average exists


def test_load_results_refuses_another_schema_version(tmp_path):
    (tmp_path / "seed-1.json").write_text(json.dumps({"schema": "fdrd-bench-result", "schema_version": 99}))
    with pytest.raises(FdrdError, match="schema version 99, this reader knows 1"):
        load_results(tmp_path)
