"""`fdrd info`: what a built FDRD directory holds, read from its shards without decoding images.

`collect_info` returns plain data (tests and other tools use it); `render_info` prints it as tables.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from fdrd.manifest import read_manifest

TEXT_COLUMNS = ["domain", "split", "category", "caption", "attributes", "negatives"]


def _length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
    return {
        "min": min(values),
        "mean": round(statistics.fmean(values), 2),
        "median": float(statistics.median(values)),
        "max": max(values),
    }


def _domain_info(rows: list[dict[str, Any]]) -> dict[str, Any]:
    splits = Counter(r["split"] for r in rows)
    categories: dict[str, Counter] = {}
    for r in rows:
        categories.setdefault(r["category"], Counter())[r["split"]] += 1
    words = [len(r["caption"].split()) for r in rows]
    attribute_names = Counter(name for r in rows for name in {a["name"] for a in r["attributes"] or []})
    negative_counts = [len(r["negatives"] or []) for r in rows]
    kinds = Counter(n["kind"] for r in rows for n in r["negatives"] or [])
    total = len(rows) or 1
    return {
        "rows": len(rows),
        "splits": dict(splits),
        "categories": {c: dict(counts) for c, counts in sorted(categories.items())},
        "caption_words": {**_length_stats(words), "empty": sum(1 for r in rows if not r["caption"])},
        "caption_chars": _length_stats([len(r["caption"]) for r in rows]),
        "attributes": {
            "rows_with_any": round(sum(1 for r in rows if r["attributes"]) / total, 4),
            "by_name": {name: round(n / total, 4) for name, n in sorted(attribute_names.items())},
        },
        "negatives": {**_length_stats(negative_counts), "by_kind": {k: round(n / total, 3) for k, n in sorted(kinds.items())}},
    }


def collect_info(directory: str | os.PathLike) -> dict[str, Any]:
    """Counts per domain/split/category, caption length statistics (words, characters), share of
    rows with at least one attribute (overall and per attribute name), negatives per row."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for shard in manifest.get("shards", []):
        table = pq.read_table(directory / shard["path"], columns=TEXT_COLUMNS)
        for row in table.to_pylist():
            by_domain.setdefault(row["domain"], []).append(row)
    return {
        "directory": str(directory),
        "content_hash": manifest.get("content_hash", ""),
        "rows": sum(len(rows) for rows in by_domain.values()),
        "rejected": manifest.get("rejected", {}).get("count", 0),
        "domains": {domain: _domain_info(rows) for domain, rows in by_domain.items()},
    }


def render_info(info: dict[str, Any], console: Console, categories: bool = True) -> None:
    overview = Table(title=f"{info['directory']}: {info['rows']} rows, {info['rejected']} rejected inputs, content hash {info['content_hash'][:16]}")
    for column in ("domain", "split", "rows", "classes", "words min/mean/max", "with attrs", "negs/row"):
        overview.add_column(column, justify="left" if column in ("domain", "split") else "right")
    for domain, d in info["domains"].items():
        words = d["caption_words"]
        for split, rows in d["splits"].items():
            overview.add_row(
                domain,
                split,
                str(rows),
                str(sum(1 for counts in d["categories"].values() if counts.get(split))),
                f"{words['min']}/{words['mean']}/{words['max']}",
                f"{d['attributes']['rows_with_any']:.0%}",
                f"{d['negatives']['mean']}",
            )
    console.print(overview)
    for domain, d in info["domains"].items():
        if d["attributes"]["by_name"]:
            table = Table(title=f"{domain}: attribute coverage (share of rows)")
            table.add_column("attribute")
            table.add_column("rows", justify="right")
            for name, share in d["attributes"]["by_name"].items():
                table.add_row(name, f"{share:.1%}")
            console.print(table)
        if categories:
            splits = list(d["splits"])
            table = Table(title=f"{domain}: rows per category")
            table.add_column("category")
            for split in splits:
                table.add_column(split, justify="right")
            for category, counts in d["categories"].items():
                table.add_row(category, *(str(counts.get(split, 0)) for split in splits))
            console.print(table)
