"""The record schema: one definition serving Arrow, `datasets` and the row validator."""

from __future__ import annotations

import datasets
import pyarrow as pa

from fdrd.schema import COLUMNS, FEATURES, arrow_schema, record_id, validate_record


def good_row() -> dict:
    caption = "A small red beetle on sand."
    return {
        "id": record_id("beetles", "a/b.jpg"),
        "domain": "beetles",
        "split": "train",
        "category": "red beetle",
        "category_id": 0,
        "meta_category": "",
        "image": {"bytes": b"", "path": None},
        "width": 1,
        "height": 1,
        "caption": caption,
        "attributes": [{"name": "colour", "value": "red", "char_start": 8, "char_end": 11}],
        "negatives": [
            {"text": "A small blue beetle on sand.", "kind": "attribute", "category": "red beetle"},
            {"text": "A small red weevil on sand.", "kind": "category", "category": "weevil"},
        ],
        "source": {"dataset": "synthetic", "original": "a/b.jpg", "license": ""},
        "sha256": "",
        "phash": "",
    }


def test_arrow_schema_carries_features_for_datasets():
    schema = arrow_schema()
    assert tuple(schema.names) == COLUMNS
    assert b"huggingface" in schema.metadata
    assert datasets.Features.from_arrow_schema(schema) == FEATURES
    assert schema.field("attributes").type == pa.list_(
        pa.struct([("name", pa.string()), ("value", pa.string()), ("char_start", pa.int32()), ("char_end", pa.int32())])
    )


def test_a_good_row_round_trips_through_arrow():
    table = pa.Table.from_pylist([good_row()], schema=arrow_schema())
    assert table.to_pylist()[0] == good_row()
    assert validate_record(good_row()) == []


def test_record_id_is_stable_and_depends_on_domain_and_path():
    assert record_id("d", "x.jpg") == record_id("d", "x.jpg")
    assert record_id("d", "x.jpg") != record_id("e", "x.jpg")
    assert record_id("d", "x.jpg") != record_id("d", "y.jpg")
    assert record_id("d", "x.jpg").startswith("d-")


def test_validate_record_names_each_problem():
    row = good_row()
    row["split"] = "holdout"
    row["attributes"][0]["char_end"] = 12
    row["negatives"].append(dict(row["negatives"][0]))
    row["negatives"].append({"text": row["caption"], "kind": "colour", "category": ""})
    problems = validate_record(row)
    assert any("unknown split" in p for p in problems)
    assert any("does not slice the caption" in p for p in problems)
    assert any("two negatives are identical" in p for p in problems)
    assert any("identical to the caption" in p for p in problems)
    assert any("unknown negative kind" in p for p in problems)
    missing = {k: v for k, v in good_row().items() if k != "phash"}
    assert validate_record(missing) == ["missing columns: phash"]
