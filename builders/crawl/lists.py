"""Reading URL lists for the crawler: CSV, TSV, Parquet or JSONL with at least `url` and `category`.

Every format becomes the same list of `UrlRow`s, in file order; the row's position is its identity
(shards are ranges of positions), so the list must not change between a crawl and its resumption.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fdrd.errors import FdrdError
from fdrd.schema import SPLITS

REQUIRED_COLUMNS = ("url", "category")
OPTIONAL_COLUMNS = ("caption", "meta_category", "domain", "split", "license")
LIST_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class UrlRow:
    index: int  # position in the list; shard k holds indices [k * shard_size, (k + 1) * shard_size)
    url: str
    category: str
    domain: str  # the `domain` column, else the list file's stem
    caption: str = ""
    meta_category: str = ""
    split: str = ""  # "" = assigned later by a deterministic hash (builders/sources/urls.py)
    license: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def read_url_list(path: str | Path) -> list[UrlRow]:
    path = Path(path)
    if not path.is_file():
        raise FdrdError(f"{path}: URL list not found; pass a CSV, TSV, Parquet or JSONL file")
    kind = LIST_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise FdrdError(f"{path}: unknown URL list format {path.suffix!r}; use one of {', '.join(LIST_SUFFIXES)}")
    records = _read_records(path, kind)
    if not records:
        raise FdrdError(f"{path}: the URL list has no rows")
    columns = list(dict.fromkeys(column for record in records for column in record))
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise FdrdError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}; "
            f"a URL list needs at least {' and '.join(REQUIRED_COLUMNS)}"
        )
    rows = [_to_row(index, record, path.stem) for index, record in enumerate(records)]
    for row in rows:
        if row.split and row.split not in SPLITS:
            raise FdrdError(f"{path}: data row {row.index + 1} ({row.url[:80]}): unknown split {row.split!r}; "
                            f"use one of {', '.join(SPLITS)} or leave it empty for a hash-based split")
    return rows


def _read_records(path: Path, kind: str) -> list[dict]:
    try:
        if kind in ("csv", "tsv"):
            with open(path, newline="", encoding="utf-8-sig") as handle:
                return list(csv.DictReader(handle, delimiter="," if kind == "csv" else "\t"))
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        return _read_jsonl(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FdrdError(f"{path}: cannot read the URL list ({error})") from error
    except Exception as error:  # pyarrow raises its own exception types for damaged files
        if type(error).__module__.startswith("pyarrow"):
            raise FdrdError(f"{path}: not a readable Parquet file ({error})") from error
        raise


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except RecursionError:
                raise FdrdError(f"{path}: line {line_number} is nested too deeply to read; one flat object "
                                "per line") from None
            except ValueError as error:  # JSONDecodeError, or a number past Python's digit limit
                raise FdrdError(f"{path}: line {line_number} is not valid JSON ({str(error)[:200]})") from None
            if not isinstance(record, dict):
                raise FdrdError(f"{path}: line {line_number} is not a JSON object")
            records.append(record)
    return records


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _to_row(index: int, record: dict, default_domain: str) -> UrlRow:
    return UrlRow(
        index=index,
        url=_text(record.get("url")),
        category=_text(record.get("category")),
        domain=_text(record.get("domain")) or default_domain,
        caption=_text(record.get("caption")),
        meta_category=_text(record.get("meta_category")),
        split=_text(record.get("split")),
        license=_text(record.get("license")),
    )
