"""How noisy `fdrd bench` is on the synthetic build, per size of its test split: the measurement behind the
default synthetic sizes (docs/benchmark.md, "Noise and the size of the default synthetic build").

    .venv/bin/python perf/synthetic_noise.py --out /tmp/noise [--test-shares 0.5 2 4 8] [--seeds 1,2,3] [--epochs 200]
        [--pretrain-steps 500]

Builds the synthetic source with per_category 16 once per test share (test = share x 16 pairs per
category; every other split is the same in all builds, so are the few-shot draws), pretrains the tiny
CLIP once (`fdrd pretrain`'s defaults, on the first build's pretrain split), trains zeroshot, CoOp and
CLIP-Adapter (CoOp's schedule: --epochs, batch 32, SGD lr 0.002, one warm-up epoch) on the first
build, and evaluates the same trained checkpoints on every other build (--resume). Prints, per test
size and method: AVG mean recall, its std over seeds, and the 95% half-widths of the mean recall
interval per results file (items), per domain row (items and seeds) and for AVG.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from rich.console import Console

import builders.sources.synthetic as synthetic
from benchmark.bench import BenchOptions, run_bench
from benchmark.pretrain import PretrainConfig, pretrained_tiny_clip
from benchmark.results import load_results, summarize
from benchmark.tiny import TinyClipSpec
from builders.pipeline import BuildOptions, CaptionSettings, build

PER_CATEGORY = 16
METHODS = ("zeroshot", "coop", "clip_adapter")


def build_with_test_share(out: Path, share: float) -> Path:
    if not (out / "manifest.json").is_file():
        saved = dict(synthetic.SPLIT_SHARE)
        synthetic.SPLIT_SHARE["test"] = share
        try:
            build(BuildOptions(out=out, source="synthetic", per_category=PER_CATEGORY,
                               captions=CaptionSettings(captioner="none")), console=Console(quiet=True))
        finally:
            synthetic.SPLIT_SHARE.clear()
            synthetic.SPLIT_SHARE.update(saved)
    return out


def half_width(interval) -> float:
    return (interval[1] - interval[0]) / 2


def report(runs: Path) -> None:
    results = load_results(runs)
    print(f"test pairs per domain: {results[0]['dataset']['test_records']}  ({runs})")
    for label, rows in summarize(results).items():
        avg = rows["AVG"]
        files = [r for r in results if r["run_label"] == label]
        per_file = statistics.fmean(half_width(r["intervals"]["mean_recall"]) for r in files)
        per_domain = statistics.fmean(half_width(rows[d]["intervals"]["mean_recall"]) for d in rows if d != "AVG")
        print(f"  {label:14s} AVG mean recall {avg['mean_recall'][0]:6.2f}  std over seeds {avg['mean_recall'][1]:5.2f}  "
              f"half-width: file {per_file:5.2f}  domain {per_domain:5.2f}  AVG {half_width(avg['intervals']['mean_recall']):5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-shares", type=float, nargs="+", default=[0.5, 2.0, 4.0, 8.0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--pretrain-steps", type=int, default=PretrainConfig.steps, help="fewer for a smoke check")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    builds = [build_with_test_share(args.out / f"build-test{share:g}", share) for share in args.test_shares]
    model = pretrained_tiny_clip(builds[0], TinyClipSpec(), PretrainConfig(steps=args.pretrain_steps), progress=True)
    console = Console(stderr=True)
    first_runs = args.out / f"runs-test{args.test_shares[0]:g}"
    for index, (share, data) in enumerate(zip(args.test_shares, builds, strict=True)):
        runs = args.out / f"runs-test{share:g}"
        for method in METHODS:
            overrides = {} if method == "zeroshot" else {"epochs": str(args.epochs)}
            if index and method != "zeroshot" and not (runs / method).exists():
                # The same trained checkpoints, evaluated on this build's test split.
                shutil.copytree(first_runs / method, runs / method, ignore=shutil.ignore_patterns("seed-*.json"))
            run_bench(BenchOptions(method=method, data=data, model=str(model), seeds=seeds, overrides=overrides,
                                   label=method, out=runs, device="cpu", resume=index > 0), console=console)
    for share in args.test_shares:
        report(args.out / f"runs-test{share:g}")


if __name__ == "__main__":
    main()
