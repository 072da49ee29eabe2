"""What a build tells its user: `rejected.jsonl` (every input that did not become a row, and why)
and the summary table printed at the end of `fdrd build` and `fdrd validate`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from fdrd.errors import FdrdError
from fdrd.manifest import write_text_atomic
from fdrd.schema import SPLITS
from fdrd.untrusted import parse_json

REJECTED_NAME = "rejected.jsonl"


def split_order(split: str) -> tuple[int, str]:
    """Splits in reading order (fdrd.schema.SPLITS: train, val, test, pretrain), unknown ones last."""
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


@dataclass(frozen=True)
class RejectedInput:
    domain: str
    split: str
    original: str  # source path or URL, as the source named it
    reason: str
    stage: str  # source, normalize, captions, dedup, annotations

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def write_rejected(directory: str | os.PathLike, rejected: Iterable[RejectedInput]) -> Path:
    """rejected.jsonl, one JSON object per line, in build order; written atomically."""
    path = Path(directory) / REJECTED_NAME
    lines = [json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True) for r in rejected]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def read_rejected(directory: str | os.PathLike) -> list[dict[str, str]]:
    """rejected.jsonl's records; a line that is not a JSON object is a FdrdError naming it."""
    path = Path(directory) / REJECTED_NAME
    if not path.is_file():
        return []
    records = []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            record = parse_json(line, f"{path}: line {number}", "rebuild, or restore the file the build wrote")
            if not isinstance(record, dict):
                raise FdrdError(f"{path}: line {number} is not a JSON object; rebuild, or restore the file")
            records.append(record)
    return records


def summary_table(manifest: Mapping[str, Any], title: str = "FDRD build") -> Table:
    """Per domain and split: images, categories, rejected inputs, near duplicates, leaks."""
    table = Table(title=f"{title}: {manifest.get('rows', 0)} rows, content hash {manifest.get('content_hash', '')[:16]}")
    longest = max((len(d) for d in manifest.get("domains", {})), default=6)
    table.add_column("domain", min_width=longest)  # keep names whole; headers may wrap instead
    table.add_column("split")
    for column in ("images", "categories", "rejected", "near dups", "leaks"):
        table.add_column(column, justify="right")
    for domain, info in manifest.get("domains", {}).items():
        for split, counts in sorted(info.get("splits", {}).items(), key=lambda pair: split_order(pair[0])):
            table.add_row(
                domain,
                split,
                str(counts.get("images", 0)),
                str(counts.get("categories", 0)),
                str(counts.get("rejected", 0)),
                str(counts.get("near_duplicates", 0)),
                str(counts.get("leaks", 0)),
            )
    return table
