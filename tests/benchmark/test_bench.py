"""`fdrd bench` end to end on the synthetic FDRD with the tiny pretrained CLIP: results files (schema v2),
run labels, ablations, the shots actually drawn, the refusals, and the printed table."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from benchmark.methods import base
from benchmark.methods.base import Preset
from benchmark.methods.coop import CoOp, CoOpConfig
from benchmark.results import RECALL_KEYS, load_results, summarize, summary_table, validate_result
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
QUICK = ["--set", "epochs=1", "--set", "warmup_epochs=0", "--set", "batch_size=8", "--set", "n_ctx=2"]


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=True)


def bench(data, model, out, *args, domain=None, seeds="1", shots=SHOTS):
    extra = ["--domains", domain] if domain else []
    return invoke("bench", *args, "--data", data, "--model", model, "--shots", shots, "--seeds", seeds,
                  "--out", out, "--device", "cpu", *extra)


@pytest.fixture(scope="module")
def first_domain(synthetic_fdrd):
    return next(iter(read_manifest(synthetic_fdrd)["domains"]))


@pytest.fixture(scope="module")
def bench_runs(synthetic_fdrd, pretrained_tiny_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    outputs = {}
    for method, extra in TRAINING.items():
        result = bench(synthetic_fdrd, pretrained_tiny_clip, out, method, *extra, seeds=SEEDS)
        assert result.exit_code == 0, (method, result.output, result.exception)
        outputs[method] = result.output
    return out, outputs


def by_method(results, method):
    return [r for r in results if r["method"] == method]


def label_of(results, method):
    (label,) = {r["run_label"] for r in by_method(results, method)}
    return label


@pytest.mark.slow
def test_training_lowers_the_loss_and_changes_what_is_retrieved(bench_runs, capsys):
    """On this tiny split (96 test pairs per domain, 24 training captions) the trained methods' gains over
    zero-shot are inside the noise, so the test asserts what training must do: lower its loss, and
    change the rankings evaluation sees (the trained parameters are used). It prints the figures."""
    out, _ = bench_runs
    results = load_results(out)
    zero = {r["domain"]: r["ranks"] for r in by_method(results, "zeroshot") if r["seed"] == 1}
    for method in ("coop", "clip_adapter"):
        for result in by_method(results, method):
            losses = result["training"]["loss_per_epoch"]
            assert losses[-1] < losses[0], (method, result["domain"], losses)
            assert result["ranks"] != zero[result["domain"]], (method, result["domain"])
    summary = summarize(results)
    with capsys.disabled():  # the numbers docs/performance.md reports
        for method in ("zeroshot", "coop", "clip_adapter"):
            avg = summary[label_of(results, method)]["AVG"]
            low, high = avg["intervals"]["mean_recall"]
            print(f"\n{method}: AVG mean recall {avg['mean_recall'][0]:.2f} [{low:.2f}, {high:.2f}]", end="")


@pytest.mark.slow
def test_results_files_are_complete_and_consistent(bench_runs, synthetic_fdrd, pretrained_tiny_clip):
    out, outputs = bench_runs
    results = load_results(out)  # validates every file against the v2 schema
    domains = list(read_manifest(synthetic_fdrd)["domains"])
    assert len(results) == 3 * len(domains) * 2
    content_hash = read_manifest(synthetic_fdrd)["content_hash"]
    for result in results:
        assert validate_result(result) == []
        assert result["dataset"]["content_hash"] == content_hash and result["dataset"]["verified"] is True
        assert result["model"]["id"] == str(pretrained_tiny_clip) and result["model"]["revision"]
        assert result["method_variant"] == "fdrd-toolkit-v1" and result["recall_backend"] == "torch"
        assert result["split"] == "test" and result["seed"] in (1, 2)
        assert result["path"].endswith(f"{result['run_label']}/{result['domain']}/seed-{result['seed']}.json")
        assert all(0.0 <= result["metrics"][key] <= 100.0 for key in RECALL_KEYS)
        assert result["metrics"]["mean_recall"] == pytest.approx(statistics.fmean(result["metrics"][k] for k in RECALL_KEYS))
        # The per-item ranks give back the recall figures, and each lies inside its interval.
        ranks = result["ranks"]
        assert len(ranks["i2t"]) == len(ranks["t2i"]) == result["dataset"]["test_records"]
        for direction in ("i2t", "t2i"):
            for k in (1, 5, 10):
                share = 100 * sum(r <= k for r in ranks[direction]) / len(ranks[direction])
                assert result["metrics"][f"{direction}_r{k}"] == pytest.approx(share)
                low, high = result["intervals"][f"{direction}_r{k}"]
                assert low <= share <= high
        assert result["intervals"]["resamples"] == 1000 and result["intervals"]["level"] == 0.95
        # Every synthetic test caption has two negatives of each kind.
        for kind in ("category", "attribute"):
            assert result["hard_negatives"][kind]["images"] == result["dataset"]["test_records"]
            assert 0.0 <= result["hard_negatives"][kind]["accuracy"] <= 100.0
        assert result["versions"]["torch"] and result["device"]["type"] == "cpu"
        if result["method"] == "zeroshot":
            assert result["shots"] is None and result["training"]["steps"] == 0
            assert result["timings"]["seconds_per_epoch"] is None and result["training"]["feature_cache"] is False
        else:
            assert result["shots"]["requested"] == 2 and result["shots"]["drawn_min"] == result["shots"]["drawn_max"] == 2
            assert set(result["shots"]["per_category"].values()) == {2}
            assert result["training"]["epochs"] == result["config"]["epochs"] > 0
            assert result["training"]["feature_cache"] is True and result["training"]["augment"] is False
            assert result["timings"]["seconds_per_epoch"] > 0
            assert result["config"]["warmup_epochs"] == 0 and result["config"]["batch_size"] == 8
            assert result["dataset"]["train_records"] == 2 * len(result["shots"]["per_category"])
            assert result["overrides"]["batch_size"] == 8 and result["run_label"].startswith(result["method"] + "+")
    # The table printed at the end has every domain and an AVG row per run, with intervals.
    for method, text in outputs.items():
        assert "AVG" in text and all(domain in text for domain in domains), method
        assert re.search(r"\d+\.\d-\d+\.\d", text), method


@pytest.mark.slow
def test_zero_shot_does_not_depend_on_the_seed(bench_runs):
    out, _ = bench_runs
    by_domain = {}
    for result in by_method(load_results(out), "zeroshot"):
        by_domain.setdefault(result["domain"], []).append(result)
    for first, second in by_domain.values():
        assert first["metrics"] == second["metrics"] and first["ranks"] == second["ranks"]
        assert first["hard_negatives"] == second["hard_negatives"]


@pytest.mark.slow
def test_summary_avg_is_the_plain_mean_over_domains(bench_runs):
    out, _ = bench_runs
    results = by_method(load_results(out), "coop")
    rows = summarize(results)[label_of(results, "coop")]
    domains = sorted({r["domain"] for r in results})
    for key in RECALL_KEYS:
        per_domain = [statistics.fmean(r["metrics"][key] for r in results if r["domain"] == d) for d in domains]
        assert rows["AVG"][key][0] == pytest.approx(statistics.fmean(per_domain))
        seeds = [statistics.fmean(r["metrics"][key] for r in results if r["seed"] == s) for s in (1, 2)]
        assert rows["AVG"][key][1] == pytest.approx(statistics.stdev(seeds))
        low, high = rows["AVG"]["intervals"][key]
        assert low <= rows["AVG"][key][0] <= high
    assert summary_table(results).row_count == len(domains) + 1


@pytest.mark.slow
def test_resume_after_finished_training_reproduces_the_results(bench_runs, synthetic_fdrd, pretrained_tiny_clip, first_domain):
    out, _ = bench_runs
    before = {(r["domain"], r["seed"]): r for r in by_method(load_results(out), "coop")}
    result = bench(synthetic_fdrd, pretrained_tiny_clip, out, "coop", "--resume", *TRAINING["coop"], domain=first_domain)
    assert result.exit_code == 0, result.output
    after = next(r for r in by_method(load_results(out), "coop") if r["domain"] == first_domain and r["seed"] == 1)
    assert after["training"]["resumed_from_epoch"] == 6
    assert after["metrics"] == before[(first_domain, 1)]["metrics"]
    assert after["ranks"] == before[(first_domain, 1)]["ranks"]


def test_two_configurations_of_one_method_give_two_rows_and_two_files(synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    for lr in ("0.01", "0.002"):
        result = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", *QUICK, "--set", f"lr={lr}", domain=first_domain)
        assert result.exit_code == 0, result.output
    results = load_results(tmp_path)
    assert len(results) == 2 and len({r["path"] for r in results}) == 2
    labels = {r["run_label"] for r in results}
    assert len(labels) == 2 and all(label.startswith("coop+") for label in labels)
    assert {r["overrides"]["lr"] for r in results} == {0.01, 0.002}
    assert {r["config"]["lr"] for r in results} == {0.01, 0.002}
    assert set(summarize(results)) == labels
    assert summary_table(results).row_count == 4  # a domain row and an AVG row per configuration
    # A named configuration keeps its own name.
    named = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", *QUICK, "--label", "coop-lr-high", domain=first_domain)
    assert named.exit_code == 0, named.output
    assert (tmp_path / "coop-lr-high" / first_domain / "seed-1.json").is_file()


def test_results_record_the_shots_actually_drawn(synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    # Every category of the test build has 2 training records: asking 3 with --allow-fewer-shots draws 2.
    result = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", *QUICK, "--allow-fewer-shots",
                   domain=first_domain, shots="3")
    assert result.exit_code == 0, result.output
    (written,) = load_results(tmp_path)
    categories = read_manifest(synthetic_fdrd)["domains"][first_domain]["splits"]["train"]
    shots = written["shots"]
    assert shots["requested"] == 3 and shots["allow_fewer"] is True
    assert shots["drawn_min"] == shots["drawn_max"] == 2
    assert sum(shots["per_category"].values()) == written["dataset"]["train_records"]
    assert written["dataset"]["train_records"] == categories["images"]
    assert len(shots["per_category"]) == categories["categories"]


@dataclasses.dataclass
class FamilyConfig(CoOpConfig):
    pass


class CoOpFamily(CoOp):
    name: ClassVar[str] = "coop-family-under-test"
    config_class: ClassVar[type[FamilyConfig]] = FamilyConfig
    named_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "coop-family-under-test": {},
        "coop-family-under-test-short": {"n_ctx": 1},
    }
    presets: ClassVar[dict[str, Preset]] = {"quick": Preset({"epochs": 1, "warmup_epochs": 0}, "test preset")}


@pytest.fixture
def family():
    base._discover()
    base.register_method(CoOpFamily)
    yield CoOpFamily
    base._REGISTRY.pop(CoOpFamily.name)


def test_ablations_run_every_named_variant_as_its_own_row(family, synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    result = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop-family-under-test-short", "--ablations",
                   "--preset", "quick", "--set", "batch_size=8", domain=first_domain)
    assert result.exit_code == 0, result.output
    results = load_results(tmp_path)
    assert len(results) == 2
    for written in results:  # each variant's label: its name, the preset, the hash of the --set values
        variant, preset, digest = written["run_label"].split("+")
        assert (variant, preset) == (written["named_variant"], "quick") and re.fullmatch("[0-9a-f]{8}", digest)
        assert written["method"] == "coop-family-under-test" and written["training"]["epochs"] == 1
        assert written["config"]["n_ctx"] == (1 if variant.endswith("-short") else 16)
    assert {r["named_variant"] for r in results} == {"coop-family-under-test", "coop-family-under-test-short"}
    assert "coop-family-under-test-short+quick+" in result.output
    # One variant alone, by its name.
    one = bench(synthetic_fdrd, tiny_clip_dir, tmp_path / "one", "coop-family-under-test-short", "--preset", "quick",
                domain=first_domain)
    assert one.exit_code == 0, one.output
    (alone,) = load_results(tmp_path / "one")
    assert alone["run_label"] == "coop-family-under-test-short+quick"


def test_a_label_cannot_resume_another_configurations_checkpoint(synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    first = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", *QUICK, "--label", "mine", domain=first_domain)
    assert first.exit_code == 0, first.output
    other = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", *QUICK, "--set", "lr=0.02", "--label", "mine",
                  "--resume", domain=first_domain)
    assert isinstance(other.exception, FdrdError) and "written by a different run" in str(other.exception)


def test_epochs_zero_is_refused_for_a_method_that_trains(synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    result = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "coop", "--set", "epochs=0", domain=first_domain)
    assert isinstance(result.exception, FdrdError), result.output
    assert "epochs=0 trains nothing" in str(result.exception) and "--set epochs=1" in str(result.exception)
    assert not list(tmp_path.rglob("*.json"))
    zeroshot = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "zeroshot", "--set", "epochs=0",
                     "--recall-backend", "torch", domain=first_domain)
    assert zeroshot.exit_code == 0, zeroshot.output
    (written,) = load_results(tmp_path)
    assert written["recall_backend"] == "torch" and written["training"]["epochs"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown method 'nope'; known methods and variants: .*clip_adapter.*coop.*zeroshot"),
        (["zeroshot", "--domains", "moon"], "no domain 'moon'; available domains"),
        (["coop", "--shots", "50"], "fewer than 50 records"),
        (["zeroshot", "--seeds", "1,x"], "expected comma-separated integers"),
        (["coop", "--set", "lr"], "expected field=value"),
        (["coop", "--set", "warp=9"], "unknown config field 'warp'"),
        (["coop", "--ablations"], "method coop has no named variants"),
        (["coop", "--preset", "slowest"], "unknown preset 'slowest'"),
        (["coop", "--label", "../up"], "run label '../up'"),
        (["zeroshot", "--recall-backend", "abacus"], "unknown recall backend 'abacus'"),
    ],
)
def test_bad_input_gives_clear_errors(args, message, synthetic_fdrd, tiny_clip_dir, tmp_path):
    result = invoke("bench", *args, "--data", synthetic_fdrd, "--model", tiny_clip_dir, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError), result.output
    assert re.search(message, str(result.exception)), str(result.exception)
    assert not list(tmp_path.rglob("*.json"))


def test_ablations_refuse_a_label(family, synthetic_fdrd, tiny_clip_dir, tmp_path):
    result = invoke("bench", "coop-family-under-test", "--ablations", "--label", "x", "--data", synthetic_fdrd,
                    "--model", tiny_clip_dir, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError) and "--ablations runs several" in str(result.exception)


def test_missing_dataset_and_non_clip_model(synthetic_fdrd, tmp_path):
    result = invoke("bench", "zeroshot", "--data", tmp_path / "absent", "--model", tmp_path, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError) and "no such dataset directory" in str(result.exception)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = invoke("bench", "zeroshot", "--data", synthetic_fdrd, "--model", bert, "--out", tmp_path)
    assert isinstance(result.exception, FdrdError) and "not CLIP-like" in str(result.exception)


def test_dcar_ablations_run_every_variant_with_its_dcar_variant(synthetic_fdrd, tiny_clip_dir, first_domain, tmp_path):
    result = bench(synthetic_fdrd, tiny_clip_dir, tmp_path, "dcar", "--ablations", "--preset", "quick",
                   "--set", "epochs=1", "--set", "warmup_epochs=0", "--set", "batch_size=12", domain=first_domain)
    assert result.exit_code == 0, (result.output, result.exception)
    results = load_results(tmp_path)
    variants = ["dcar", "dcar-noreweight", "dcar-nonegatives", "dcar-nocatweight", "dcar-novisual", "dcar-shallow"]
    assert sorted(r["named_variant"] for r in results) == sorted(variants)
    for written in results:
        assert written["run_label"].startswith(written["named_variant"] + "+quick+")
        assert written["dcar_variant"] == "fdrd-toolkit-v1/" + written["named_variant"]
        assert written["training"]["epochs"] == 1 and written["training"]["steps"] == 2  # 24 shots, batch 12
        # The image side is prompted: no cache, and training images are augmented as MaPLe's recipe does.
        assert written["training"]["feature_cache"] is False and written["training"]["augment"] is True
    assert len({r["run_label"] for r in results}) == len(variants)
