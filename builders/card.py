"""The dataset card (README.md) of a built FDRD directory.

Its YAML header is what makes `datasets.load_dataset(out_dir, "oxford_pets", split="test")` work:
`configs` maps each config (one per domain, plus `all`) to its shard files per split, and
`dataset_info` declares the typed features (fdrd.schema.FEATURES) with split sizes.
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


def _configs(split_rows: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """`configs` entries: per domain its own files, and `all` gathering every domain per split."""
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
        }
    )
    return configs


def _infos(split_rows: Mapping[str, Mapping[str, int]]):
    """`dataset_info` per config as `datasets` writes it; imported here because `datasets` is slow
    to import and only the end of a build needs it."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    from fdrd.schema import FEATURES as features

    totals: dict[str, int] = {}
    infos = DatasetInfosDict()
    for domain, splits in split_rows.items():
        split_dict = SplitDict({s: SplitInfo(name=s, num_examples=n) for s, n in splits.items()})
        infos[domain] = DatasetInfo(features=features, splits=split_dict, config_name=domain)
        for split, rows in splits.items():
            totals[split] = totals.get(split, 0) + rows
    all_splits = SplitDict({s: SplitInfo(name=s, num_examples=totals[s]) for s in sorted(totals, key=split_order)})
    infos[ALL_CONFIG] = DatasetInfo(features=features, splits=all_splits, config_name=ALL_CONFIG)
    return infos


def card_text(split_rows: Mapping[str, Mapping[str, int]], manifest: Mapping[str, Any]) -> str:
    """README.md for a build whose shards hold `split_rows[domain][split]` rows."""
    # A domain whose every input was rejected has no files; a config without files would break loading.
    split_rows = {domain: splits for domain, splits in split_rows.items() if splits}
    data = DatasetCardData(license="other", task_categories=["image-to-text"])
    if split_rows:
        data.configs = _configs(split_rows)
        _infos(split_rows).to_dataset_card_data(data)
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        "# FDRD (built locally with `fdrd build`)",
        "",
        "Fine-grained image-text retrieval pairs: one row per image with its category, meta-category,",
        "caption, attribute spans and hard negatives. Load one domain or all of them:",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("path/to/this/dir", "{next(iter(split_rows), ALL_CONFIG)}", split="test")',
        "```",
        "",
        f"Content hash: `{manifest.get('content_hash', '')}` (see manifest.json).",
        "",
        "| domain | split | rows |",
        "|---|---|---|",
    ]
    for domain, splits in split_rows.items():
        for split, rows in splits.items():
            lines.append(f"| {domain} | {split} | {rows} |")
    lines.append("")
    lines.append("Images keep the licences of their source datasets (see the `source.license` column).")
    return "\n".join(lines) + "\n"


def write_card(directory: str | os.PathLike, split_rows: Mapping[str, Mapping[str, int]], manifest: Mapping[str, Any]) -> Path:
    path = Path(directory) / CARD_NAME
    write_text_atomic(path, card_text(split_rows, manifest))
    return path
