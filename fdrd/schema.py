"""The FDRD record: one definition of every column, shared by the writer, the reader and the validator.

One row is one image-caption pair. The schema is data (a `datasets.Features`), and the Arrow schema
written into every shard is derived from it, so the two can never drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import datasets
import pyarrow as pa

SCHEMA_VERSION = "1.0"

# Splits as stored in the `split` column. FDRD train = CoOp train + val; both keep their own label so
# that a user can still hold out CoOp's val. `pretrain` exists for the synthetic source only.
SPLITS = ("train", "val", "test", "pretrain")
SPLIT_CHOICES = ("all", "train", "val", "test")

# The nine CoOp downstream domains, by CoOp folder name, in the order of the paper's table.
COOP_DOMAINS = (
    "caltech-101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food-101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "ucf101",
)

NEGATIVE_KINDS = ("category", "attribute")

# Attribute types that captions are annotated with (builders/captions/attributes.py); the synthetic
# source also uses position and rotation, which it draws.
ATTRIBUTE_TYPES = ("colour", "pattern", "size", "shape", "pose", "count", "background", "position", "rotation")

ATTRIBUTE_FEATURE = {
    "name": datasets.Value("string"),
    "value": datasets.Value("string"),
    "char_start": datasets.Value("int32"),
    "char_end": datasets.Value("int32"),
}
NEGATIVE_FEATURE = {
    "text": datasets.Value("string"),
    "kind": datasets.Value("string"),
    "category": datasets.Value("string"),
}
SOURCE_FEATURE = {
    "dataset": datasets.Value("string"),
    "original": datasets.Value("string"),
    "license": datasets.Value("string"),
}

# A python list around a dict is `datasets`' spelling of Arrow list<struct> (Sequence(dict) would
# turn into a struct of lists instead).
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "split": datasets.Value("string"),
        "category": datasets.Value("string"),
        "category_id": datasets.Value("int32"),
        "meta_category": datasets.Value("string"),
        "image": datasets.Image(),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "caption": datasets.Value("string"),
        "attributes": [ATTRIBUTE_FEATURE],
        "negatives": [NEGATIVE_FEATURE],
        "source": SOURCE_FEATURE,
        "sha256": datasets.Value("string"),
        "phash": datasets.Value("string"),
    }
)

COLUMNS = tuple(FEATURES)


def arrow_schema() -> pa.Schema:
    """The Arrow schema of a shard, carrying the `huggingface` metadata that lets
    `load_dataset("parquet", ...)` decode the image column."""
    return FEATURES.arrow_schema


def record_id(domain: str, original: str) -> str:
    """Stable id of a record: the same source file or URL in the same domain always gets the same id."""
    digest = hashlib.sha1(f"{domain}\x00{original}".encode()).hexdigest()
    return f"{domain}-{digest[:16]}"


def validate_record(row: Mapping[str, Any]) -> list[str]:
    """Problems with one row in plain words; an empty list means the row is well formed.

    Checks what the type system cannot: known split and negative kinds, attribute spans that slice
    the caption, negatives that differ from the caption and from each other.
    """
    problems: list[str] = []
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        return [f"missing columns: {', '.join(missing)}"]
    if row["split"] not in SPLITS:
        problems.append(f"unknown split {row['split']!r}")
    if not row["id"]:
        problems.append("empty id")
    caption = row["caption"] or ""
    for attr in row["attributes"] or []:
        start, end = attr["char_start"], attr["char_end"]
        if not (0 <= start < end <= len(caption)) or caption[start:end] != attr["value"]:
            problems.append(f"attribute {attr['name']}={attr['value']!r} span {start}:{end} does not slice the caption")
    texts = [neg["text"] for neg in row["negatives"] or []]
    for neg in row["negatives"] or []:
        if neg["kind"] not in NEGATIVE_KINDS:
            problems.append(f"unknown negative kind {neg['kind']!r}")
        if neg["text"] == caption:
            problems.append("a negative is identical to the caption")
    if len(set(texts)) != len(texts):
        problems.append("two negatives are identical")
    return problems
