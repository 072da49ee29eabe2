"""`fdrd audit`: planted defects counted exactly, the real released files reproduce the documented
counts, and datasets built by this toolkit audit to zero."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from builders.audit import AUDIT_KEYS, audit_path, class_from_key
from fdrd.cli import app
from fdrd.errors import FdrdError

REPO = Path(__file__).resolve().parents[2]
RELEASED = REPO.parent / "shared" / "reference" / "released-fdrd"
needs_released = pytest.mark.skipif(not RELEASED.is_dir(), reason="needs ../shared (not in a public clone)")

ZERO = {key: 0 for key in AUDIT_KEYS[2:]}


def pets_record(key: str, positive: str, negatives: list[str], folder: str = "oxford_pets") -> dict:
    return {"file_name": key, "file_path": f"/root/DATA/{folder}/images/{key}.jpg", "positive": positive,
            "negative": negatives}


def planted_pets() -> dict:
    """Seven pets records; each defect planted a known number of times (EXPECTED_PLANTED)."""
    return {
        # Clean: sibling swaps of the true class, whole words, same species.
        "Bengal_1": pets_record("Bengal_1", "A Bengal on a sofa.", ["A Sphynx on a sofa.", "A Persian on a sofa."]),
        # One negative identical to the positive, two identical negatives (one record).
        "Sphynx_2": pets_record("Sphynx_2", "A Sphynx sits.", ["A Sphynx sits.", "A Bengal sits.", "A Bengal sits."]),
        # In-word: "cat" in "scattered" became "great pyrenees" in the positive, then was swapped;
        # the swap also names dogs for a dog, fine, but a cat breed (Bengal) for a dog: cross meta.
        "great_pyrenees_3": pets_record(
            "great_pyrenees_3",
            "A great pyrenees near sgreat pyreneestered toys.",
            ["A pug near spugtered toys.", "A Bengal near sBengaltered toys.", "A great pyrenees near scattered toys."],
        ),
        # The positive names a beagle, not the true basset hound; every swap replaces the beagle:
        # the true class "survives" (never swapped). One negative names a cat breed: cross meta.
        "basset_hound_4": pets_record(
            "basset_hound_4", "A brown beagle on grass.", ["A brown pug on grass.", "A brown Persian on grass."]
        ),
        # Plural endings are not in-word: "pugs" -> "beagles".
        "pug_5": pets_record("pug_5", "Two pugs and a pug.", ["Two beagles and a beagle."]),
        # Case and underscores: "Great_Pyrenees" in a negative is still the great pyrenees.
        "Persian_6": pets_record("Persian_6", "A persian cat.", ["A Great_Pyrenees cat.", "A Bengal cat."]),
        # Makes "beagle" a class of the file (classes come from the image keys).
        "beagle_7": pets_record("beagle_7", "A beagle.", []),
    }


EXPECTED_PLANTED = {
    "records": 7,
    "negatives": 13,
    "identical_to_positive": 1,
    "duplicate_negative_records": 1,
    "in_word_replacements": 2,
    "true_class_survives": 1,
    "cross_meta_category": 3,  # Bengal for a great pyrenees, Persian for a basset hound, Great Pyrenees for a Persian
    # "sgreat pyreneestered" (the positive), "spugtered" and "sBengaltered" (two negatives).
    "non_words": 3,
    "repeated_names": 0,
    "names_other_class": 1,  # the basset hound called a beagle
}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_planted_defects_are_counted_exactly(tmp_path):
    path = write_json(tmp_path / "pets_test.json", planted_pets())
    [result] = audit_path(path)
    assert {k: result[k] for k in AUDIT_KEYS} == EXPECTED_PLANTED
    examples = result["examples"]
    assert [e["record"] for e in examples["in_word_replacements"]] == ["great_pyrenees_3", "great_pyrenees_3"]
    assert examples["true_class_survives"][0]["record"] == "basset_hound_4"
    assert examples["true_class_survives"][0]["swapped"] == ["beagle"]
    assert {e["record"] for e in examples["cross_meta_category"]} == {"great_pyrenees_3", "basset_hound_4",
                                                                       "Persian_6"}


def test_examples_are_capped_at_three(tmp_path):
    records = {f"Sphynx_{i}": pets_record(f"Sphynx_{i}", "A Sphynx.", ["A Sphynx."]) for i in range(5)}
    [result] = audit_path(write_json(tmp_path / "pets_test.json", records))
    assert result["identical_to_positive"] == 5
    assert len(result["examples"]["identical_to_positive"]) == 3


def test_domains_without_natural_meta_categories_report_no_cross_meta(tmp_path):
    records = {"rose_image_1": {"file_name": "rose_image_1", "class_name": "rose", "number": "1",
                                "file_path": "/x/flower/test/rose_image_1.jpg", "positive": "This is a rose.",
                                "negative": ["This is a pink primrose.", "This is a lotus."]},
               "lotus_image_2": {"file_name": "lotus_image_2", "class_name": "lotus", "number": "2",
                                 "file_path": "/x/flower/test/lotus_image_2.jpg", "positive": "This is a lotus.",
                                 "negative": ["This is a rose."]},
               "pink_primrose_image_3": {"file_name": "pink_primrose_image_3", "class_name": "pink primrose",
                                         "number": "3", "file_path": "/x/flower/test/x.jpg",
                                         "positive": "This is a pink primrose.", "negative": ["This is a rose."]}}
    [result] = audit_path(write_json(tmp_path / "flower_test.json", records))
    assert result["cross_meta_category"] is None
    # "rose" inside "pink primrose" is part of that name, not an in-word replacement.
    assert result["in_word_replacements"] == 0


@pytest.mark.parametrize(
    ("key", "cls"),
    [("Sphynx_43", "Sphynx"), ("707-320_1514522", "707-320"), ("monkshood_image_06422", "monkshood"),
     ("german_shorthaired_12", "german_shorthaired"), ("Saab 340_2119896", "Saab 340"), ("nodigits", None)],
)
def test_class_from_key(key, cls):
    assert class_from_key(key) == cls


def test_key_spelling_follows_the_captions(tmp_path):
    """Keys cannot hold '/': F-16A_B is written F-16A/B in the captions and must be found there."""
    records = {
        "F-16A_B_1": {"file_name": "1", "file_path": "/r/DATA/fgvc_aircraft/images/1.jpg",
                      "positive": "A gray F-16A/B airplane.", "negative": ["A gray F-16A/B airplane.", "A gray DC-3 airplane."]},
        "DC-3_2": {"file_name": "2", "file_path": "/r/DATA/fgvc_aircraft/images/2.jpg",
                   "positive": "A DC-3 on grass.", "negative": ["A F-16A/B on grass."]},
    }
    [result] = audit_path(write_json(tmp_path / "anything.json", records))
    assert result["identical_to_positive"] == 1
    assert result["true_class_survives"] == 0  # F-16A/B was swapped for DC-3: it did not survive


def test_domain_from_paths_name_or_option(tmp_path):
    record = {"Sphynx_1": {"file_name": "Sphynx_1", "file_path": "/placeholder", "positive": "A Sphynx.",
                           "negative": []}}
    path = write_json(tmp_path / "unnamed.json", record)
    with pytest.raises(FdrdError, match="cannot tell the domain"):
        audit_path(path)
    assert audit_path(path, domain="oxford_pets")[0]["cross_meta_category"] == 0
    with pytest.raises(FdrdError, match="unknown domain"):
        audit_path(path, domain="pets")


def test_class_from_the_coop_split_with_data_root(tmp_path, coop_root):
    images = coop_root.root / "oxford_pets" / "images"
    abyssinian = sorted(p.name for p in images.glob("Abyssinian_*.jpg"))[0]
    bengal = sorted(p.name for p in images.glob("Bengal_*.jpg"))[0]
    # Keys without a class: the class can only come from the split file.
    records = {
        "x1": {"file_name": "x1", "file_path": f"/r/oxford_pets/images/{abyssinian}",
               "positive": "An Abyssinian on a rug.", "negative": ["A Bengal on a rug.", "An Abyssinian on a rug."]},
        "x2": {"file_name": "x2", "file_path": f"/r/oxford_pets/images/{bengal}",
               "positive": "A Bengal on a rug.", "negative": ["A yorkshire terrier on a rug."]},
    }
    path = write_json(tmp_path / "pets_test.json", records)
    [without] = audit_path(path)
    assert without["cross_meta_category"] is None  # no class known at all
    [result] = audit_path(path, data_root=coop_root.root)
    assert result["identical_to_positive"] == 1 and result["cross_meta_category"] == 1


def test_unreadable_inputs_are_named_errors(tmp_path):
    with pytest.raises(FdrdError, match="no such file or folder"):
        audit_path(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FdrdError, match="no <domain>/\\*.parquet"):
        audit_path(tmp_path / "empty")
    (tmp_path / "broken" / "oxford_pets").mkdir(parents=True)
    (tmp_path / "broken" / "oxford_pets" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(FdrdError, match="cannot read the columns"):
        audit_path(tmp_path / "broken")


def write_built(root: Path, domain: str, rows: list[dict]) -> None:
    negative = pa.struct([("text", pa.string()), ("kind", pa.string()), ("category", pa.string())])
    schema = pa.schema([("id", pa.string()), ("category", pa.string()), ("meta_category", pa.string()),
                        ("caption", pa.string()), ("negatives", pa.list_(negative))])
    (root / domain).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / domain / "test-00000-of-00001.parquet")


def test_built_dataset_defects_are_counted_per_domain(tmp_path):
    def row(i, category, meta, caption, negatives):
        return {"id": f"r{i}", "category": category, "meta_category": meta, "caption": caption,
                "negatives": [{"text": t, "kind": "category", "category": c} for t, c in negatives]}

    write_built(tmp_path, "oxford_pets", [
        row(0, "bengal", "cat", "A bengal.", [("A sphynx.", "sphynx"), ("A bengal.", "bengal")]),
        row(1, "sphynx", "cat", "A sphynx.", [("A pug.", "pug"), ("A pug.", "pug")]),
        row(2, "pug", "dog", "A pug.", [("A beagle.", "beagle")]),
        row(3, "beagle", "dog", "A beagle.", [("A pug.", "pug")]),
    ])
    write_built(tmp_path, "dtd", [row(0, "striped", "", "A striped cloth.", [("A dotted cloth.", "dotted")]),
                                  row(1, "dotted", "", "A dotted cloth.", [("A striped cloth.", "striped")])])
    results = {Path(r["file"]).name: r for r in audit_path(tmp_path)}
    pets = results["oxford_pets"]
    assert (pets["records"], pets["negatives"], pets["identical_to_positive"]) == (4, 6, 1)
    assert pets["duplicate_negative_records"] == 1 and pets["cross_meta_category"] == 2
    assert results["dtd"]["cross_meta_category"] is None
    assert {k: results["dtd"][k] for k in AUDIT_KEYS[2:6]} == {k: 0 for k in AUDIT_KEYS[2:6]}


def test_synthetic_build_audits_to_zero(synthetic_fdrd):
    results = audit_path(synthetic_fdrd)
    assert results
    for result in results:
        assert result["records"] > 0 and result["negatives"] > 0
        assert {k: result[k] for k in AUDIT_KEYS[2:]} == ZERO, result["examples"]


@needs_released
@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        # records, negatives, identical, duplicate records, in-word, true class survives, cross meta, non-words,
        # names repeated back to back, positives naming another class; docs/audit.md explains the two
        # differences from shared/docs/fdrd-data.md (43 vs 45, 6342 vs 6336). Aircraft's cross-meta count
        # uses the shipped family map (builders/taxonomies/fgvc_aircraft.json).
        ("flower_test.json", (2463, 9852, 263, 202, 4, 43, None, 14, 73, 59)),
        ("pets_test.json", (3669, 14676, 362, 581, 194, 4, 6342, 243, 100, 19)),
        ("plane_test.json", (3333, 13332, 40, 207, 348, 15, 12924, 491, 17, 23)),
    ],
)
def test_real_released_files(file_name, expected):
    [result] = audit_path(RELEASED / file_name)
    assert tuple(result[k] for k in AUDIT_KEYS) == expected


def test_cli_json_has_exactly_the_documented_keys(tmp_path):
    path = write_json(tmp_path / "pets_test.json", planted_pets())
    result = CliRunner().invoke(app, ["audit", str(path), "--json"])
    assert result.exit_code == 0, result.output
    [line] = result.output.strip().splitlines()
    parsed = json.loads(line)
    assert set(parsed) == {*AUDIT_KEYS, "file", "examples"}
    assert {k: parsed[k] for k in AUDIT_KEYS} == EXPECTED_PLANTED


def test_cli_table_and_examples(tmp_path):
    path = write_json(tmp_path / "pets_test.json", planted_pets())
    result = CliRunner().invoke(app, ["audit", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "pets_test.json" in result.output
    assert "negatives with a class name inside another word (first 2)" in result.output
    assert "A pug near spugtered toys." in result.output


def test_cli_error_is_one_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    # A wide terminal: rich wraps long lines at the terminal width (80 columns when piped).
    env = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run([sys.executable, "-m", "fdrd.cli", "audit", str(tmp_path / "absent.json")],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "absent.json: no such file or folder" in line
