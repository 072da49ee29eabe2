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

from builders.report import split_order
from fdrd.errors import FdrdError
from fdrd.manifest import read_build_manifest, shard_file

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


def _text_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Caption lengths, attribute coverage and negatives of a set of rows."""
    total = len(rows) or 1
    attribute_names = Counter(name for r in rows for name in {a["name"] for a in r["attributes"] or []})
    kinds = Counter(n["kind"] for r in rows for n in r["negatives"] or [])
    return {
        "rows": len(rows),
        "categories": len({r["category"] for r in rows}),
        "caption_words": {
            **_length_stats([len(r["caption"].split()) for r in rows]),
            "empty": sum(1 for r in rows if not r["caption"]),
        },
        "caption_chars": _length_stats([len(r["caption"]) for r in rows]),
        "attributes": {
            "rows_with_any": round(sum(1 for r in rows if r["attributes"]) / total, 4),
            "by_name": {name: round(n / total, 4) for name, n in sorted(attribute_names.items())},
        },
        "negatives": {
            **_length_stats([len(r["negatives"] or []) for r in rows]),
            "by_kind": {k: round(n / total, 3) for k, n in sorted(kinds.items())},
        },
    }


def _domain_info(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whole-domain statistics, the same per split, and rows per category and split."""
    by_split: dict[str, list[dict[str, Any]]] = {}
    categories: dict[str, Counter] = {}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r)
        categories.setdefault(r["category"], Counter())[r["split"]] += 1
    ordered = sorted(by_split, key=split_order)
    return {
        **_text_stats(rows),
        "splits": {split: _text_stats(by_split[split]) for split in ordered},
        "category_rows": {c: {s: counts[s] for s in ordered if counts[s]} for c, counts in sorted(categories.items())},
    }


def collect_info(directory: str | os.PathLike) -> dict[str, Any]:
    """Counts per domain/split/category, caption length statistics (words, characters), share of
    rows with at least one attribute (overall and per attribute name), negatives per row."""
    directory = Path(directory)
    manifest = read_build_manifest(directory)
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for shard in manifest["shards"]:
        for row in _read_shard(directory, shard).to_pylist():
            by_domain.setdefault(row["domain"], []).append(row)
    return {
        "directory": str(directory),
        "content_hash": manifest.get("content_hash", ""),
        "rows": sum(len(rows) for rows in by_domain.values()),
        "rejected": manifest.get("rejected", {}).get("count", 0),
        "domains": {domain: _domain_info(rows) for domain, rows in by_domain.items()},
        # Domain/splits that had inputs and made no row (the build failed there), from the manifest.
        "failures": manifest.get("failures", []),
    }


def _read_shard(directory: Path, shard: dict[str, Any]):
    """A listed shard's text columns; a missing, truncated or unreadable shard is a named error."""
    path = shard_file(directory, shard)
    fix = f"run `fdrd validate {directory}` for every problem, and rebuild the dataset"
    if not path.is_file():
        raise FdrdError(f"{path}: listed in manifest.json but missing; {fix}")
    if path.stat().st_size != shard["bytes"]:
        raise FdrdError(f"{path}: {path.stat().st_size} bytes, manifest.json says {shard['bytes']} (truncated or "
                        f"changed after the build); {fix}")
    try:
        return pq.read_table(path, columns=TEXT_COLUMNS)
    except (OSError, ValueError, KeyError) as error:  # pyarrow: ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise FdrdError(f"{path}: not a readable FDRD shard ({str(error)[:200]}); {fix}") from error


def render_info(info: dict[str, Any], console: Console, categories: bool = True) -> None:
    overview = Table(
        title=f"{info['directory']}: {info['rows']} rows, {info['rejected']} rejected inputs, "
        f"content hash {info['content_hash'][:16]}"
    )
    longest = max((len(d) for d in info["domains"]), default=6)
    overview.add_column("domain", min_width=longest)
    overview.add_column("split")
    for column in ("rows", "classes", "words", "attrs", "negs"):
        overview.add_column(column, justify="right")
    overview.caption = "words: caption length min/mean/max; attrs: rows with an attribute; negs: negatives per row"
    for domain, d in info["domains"].items():
        for split, s in d["splits"].items():
            words = s["caption_words"]
            overview.add_row(
                domain,
                split,
                str(s["rows"]),
                str(s["categories"]),
                f"{words['min']}/{words['mean']:.1f}/{words['max']}",
                f"{s['attributes']['rows_with_any']:.0%}",
                f"{s['negatives']['mean']:.1f}",
            )
    console.print(overview)
    for failure in info.get("failures", []):
        console.print(
            f"[red]no rows:[/] {failure['domain']}/{failure['split']} made no row from {failure['entries']} inputs "
            f"({', '.join(f'{n} {kind}' for kind, n in failure['reasons'].items())})",
            highlight=False,
        )
    for domain, d in info["domains"].items():
        if d["attributes"]["by_name"]:
            table = Table(title=f"{domain}: rows with each attribute")
            table.add_column("attribute")
            for split in d["splits"]:
                table.add_column(split, justify="right")
            for name in d["attributes"]["by_name"]:
                shares = [d["splits"][split]["attributes"]["by_name"].get(name, 0.0) for split in d["splits"]]
                table.add_row(name, *(f"{share:.1%}" for share in shares))
            console.print(table)
        if categories:
            splits = list(d["splits"])
            table = Table(title=f"{domain}: rows per category")
            table.add_column("category")
            for split in splits:
                table.add_column(split, justify="right")
            for category, counts in d["category_rows"].items():
                table.add_row(category, *(str(counts.get(split, 0)) for split in splits))
            console.print(table)
