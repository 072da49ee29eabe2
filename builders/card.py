"""The dataset card (README.md) and licence notes (LICENSE.md) of a built FDRD directory.

The card's YAML header is what makes `datasets.load_dataset(out_dir)` work: `configs` maps each
config (one per domain, plus `all`, the default) to its shard files per split, and `dataset_info`
declares the typed features (fdrd.schema.FEATURES) with each split's rows and Arrow size. The
licence is `other`: images keep their source datasets' terms, listed per domain in LICENSE.md,
which `license_link` names as the Hub asks. A build that made nothing somewhere says so at the top;
one that made no row at all declares no configs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCardData

from builders.report import split_order
from fdrd.manifest import write_text_atomic

ALL_CONFIG = "all"
CARD_NAME = "README.md"
LICENSE_NAME = "LICENSE.md"
LICENSE_ID = "fdrd-source-licenses"  # the Hub's `license_name` for `license: other`: a slug
# datasets' size_categories buckets (datasets/utils/resources/size_categories.json), upper bounds.
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "1M<n<10M"


def _configs(split_rows: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """`configs` entries: per domain its own files, and `all` (the default) gathering every domain per split."""
    configs = []
    for domain, splits in split_rows.items():
        configs.append(
            {
                "config_name": domain,
                "data_files": [{"split": s, "path": f"{domain}/{s}-*.parquet"} for s in splits],
            }
        )
    every_split = sorted({s for splits in split_rows.values() for s in splits}, key=split_order)
    configs.append(
        {
            "config_name": ALL_CONFIG,
            "data_files": [
                {"split": s, "path": [f"{d}/{s}-*.parquet" for d, splits in split_rows.items() if s in splits]}
                for s in every_split
            ],
            "default": True,
        }
    )
    return configs


def _split_sizes(manifest: Mapping[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    """(domain, split) -> (Arrow bytes, file bytes), summed over the manifest's shards."""
    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    for shard in manifest.get("shards", []):
        arrow, files = sizes.get((shard["domain"], shard["split"]), (0, 0))
        sizes[shard["domain"], shard["split"]] = (arrow + shard.get("num_bytes", 0), files + shard.get("bytes", 0))
    return sizes


def _infos(split_rows: Mapping[str, Mapping[str, int]], manifest: Mapping[str, Any]):
    """`dataset_info` per config as `datasets` writes it; imported here because `datasets` is slow
    to import and only the end of a build needs it."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    from fdrd.schema import FEATURES as features

    sizes = _split_sizes(manifest)

    def info(config: str, per_split: dict[str, tuple[int, int, int]]) -> DatasetInfo:
        splits = SplitDict(
            {s: SplitInfo(name=s, num_examples=n, num_bytes=b) for s, (n, b, _) in per_split.items()}
        )
        return DatasetInfo(
            features=features,
            splits=splits,
            config_name=config,
            download_size=sum(f for _, _, f in per_split.values()),
            dataset_size=sum(b for _, b, _ in per_split.values()),
        )

    totals: dict[str, tuple[int, int, int]] = {}
    infos = DatasetInfosDict()
    for domain, splits in split_rows.items():
        per_split = {s: (n, *sizes.get((domain, s), (0, 0))) for s, n in splits.items()}
        infos[domain] = info(domain, per_split)
        for split, (n, b, f) in per_split.items():
            before = totals.get(split, (0, 0, 0))
            totals[split] = (before[0] + n, before[1] + b, before[2] + f)
    infos[ALL_CONFIG] = info(ALL_CONFIG, {s: totals[s] for s in sorted(totals, key=split_order)})
    return infos


def _failure_lines(manifest: Mapping[str, Any]) -> list[str]:
    failures = manifest.get("failures", [])
    if manifest.get("rows", 0) == 0:
        return ["**This build made no rows**: nothing here can be loaded; see `rejected.jsonl` for why.", ""]
    if not failures:
        return []
    named = ", ".join(f"{f['domain']}/{f['split']}" for f in failures)
    return [
        f"**Incomplete build**: no row was made for {named} (see `failures` in manifest.json and `rejected.jsonl`).",
        "",
    ]


def _grouping_lines(manifest: Mapping[str, Any]) -> list[str]:
    """How each domain's meta-categories (the sibling sets of category-swap negatives) were made."""
    domains = {d: info.get("meta_categories") for d, info in manifest.get("domains", {}).items()}
    domains = {d: rule for d, rule in domains.items() if rule}
    if not domains:
        return []
    lines = ["## Meta-categories", "", "Category-swap negatives swap a category for a sibling of the same "
             "meta-category; the groups of each domain come from:", ""]
    for domain, rule in domains.items():
        line = f"- {domain}: {rule.get('rule') or 'unstated rule'}"
        if rule.get("source"):
            line += f" ({rule['source']})"
        if rule.get("rule") == "spelling similarity":
            line += "; these groups follow spelling, not meaning (name a CLIP text encoder with --meta-encoder)"
        lines.append(line)
    return [*lines, ""]


def card_text(split_rows: Mapping[str, Mapping[str, int]], manifest: Mapping[str, Any]) -> str:
    """README.md for a build whose shards hold `split_rows[domain][split]` rows."""
    # A domain whose every input was rejected has no files; a config without files would break loading.
    split_rows = {domain: {s: n for s, n in splits.items() if n} for domain, splits in split_rows.items()}
    split_rows = {domain: splits for domain, splits in split_rows.items() if splits}
    rows = sum(n for splits in split_rows.values() for n in splits.values())
    data = DatasetCardData(
        license="other",
        license_name=LICENSE_ID,
        license_link=LICENSE_NAME,
        task_categories=["image-to-text"],
        language=["en"],
        pretty_name="FDRD (local build)",
        size_categories=[size_category(rows)],
    )
    if split_rows:
        data.configs = _configs(split_rows)
        _infos(split_rows, manifest).to_dataset_card_data(data)
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        "# FDRD (built locally with `fdrd build`)",
        "",
        *_failure_lines({**manifest, "rows": rows}),
        "Fine-grained image-text retrieval pairs: one row per image with its category, meta-category,",
        "caption, attribute spans and hard negatives. Load all domains (the default config) or one:",
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("path/to/this/dir", split="test")',
        f'ds = datasets.load_dataset("path/to/this/dir", "{next(iter(split_rows), ALL_CONFIG)}", split="test")',
        "```",
        "",
        f"Content hash: `{manifest.get('content_hash', '')}` (see manifest.json).",
        "",
        "| domain | split | rows |",
        "|---|---|---|",
    ]
    for domain, splits in split_rows.items():
        for split, count in splits.items():
            lines.append(f"| {domain} | {split} | {count} |")
    lines.append("")
    lines += _grouping_lines(manifest)
    lines.append(f"Images keep the licences of their source datasets: see {LICENSE_NAME} and the `source.license` column.")
    return "\n".join(lines) + "\n"


def license_text(manifest: Mapping[str, Any]) -> str:
    """LICENSE.md: the terms each domain's images come under, as the sources state them."""
    lines = [
        "# Licences of this FDRD build",
        "",
        "This folder was built with `fdrd build`; it has no licence of its own. Each image, and the row",
        "describing it, stays under the terms of the dataset it came from (the `source.license` column",
        "of every row says which):",
        "",
        "| domain | source terms |",
        "|---|---|",
    ]
    for domain, info in manifest.get("domains", {}).items():
        terms = "; ".join(info.get("licenses", [])) or "not stated by the source"
        lines.append(f"| {domain} | {terms} |")
    return "\n".join(lines) + "\n"


def write_card(directory: str | os.PathLike, split_rows: Mapping[str, Mapping[str, int]], manifest: Mapping[str, Any]) -> Path:
    """README.md and the LICENSE.md its `license_link` names."""
    path = Path(directory) / CARD_NAME
    write_text_atomic(Path(directory) / LICENSE_NAME, license_text(manifest))
    write_text_atomic(path, card_text(split_rows, manifest))
    return path
