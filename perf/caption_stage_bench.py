"""Caption stage and audit throughput on the released FDRD files (needs ../shared; skips without).

Prints, per released file: records/s of `fdrd audit`, records/s of the caption stage importing it
(fdrd-json: match, repair, attributes, negatives), and the speed-up of the audit's name counter
(a class is searched only when its first word is in the text) over searching every class in
every text, measured in the same run. Usage: .venv/bin/python perf/caption_stage_bench.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from builders.audit import audit_records, released_audit_input
from builders.captions.fdrd_json import read_released
from builders.captions.insert import NameCounter
from builders.captions.stage import CaptionOptions, annotate
from builders.sources.base import SourceItem
from builders.taxonomy import build_taxonomy, name_key

RELEASED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "released-fdrd"


class EveryName(NameCounter):
    """The obvious counter: every class name searched in every text."""

    def candidates(self, text: str) -> list[str]:
        return self.names


def items_for(path: Path, audit_input, taxonomy) -> list[SourceItem]:
    items = []
    for record, audited in zip(read_released(path), audit_input.records, strict=True):
        category = next(c for c in taxonomy.categories if name_key(c) == name_key(audited.true_class))
        prefix = (record.class_name or "").replace(" ", "_") + "_"
        stem = record.file_name.removeprefix(prefix) if record.class_name else record.file_name
        items.append(SourceItem(taxonomy.domain, "test", category, taxonomy.category_id(category),
                                taxonomy.meta_category(category), f"{taxonomy.domain}/images/{stem}.jpg",
                                taxonomy.domain, image_bytes=b""))
    return items


def main() -> None:
    if not RELEASED.is_dir():
        sys.exit(f"{RELEASED} not found: this benchmark reads the released files in ../shared")
    for name in ("flower_test.json", "pets_test.json", "plane_test.json"):
        path = RELEASED / name
        audit_input = released_audit_input(path)
        records = len(audit_input.records)
        start = time.perf_counter()
        fast = audit_records(audit_input)
        fast_s = time.perf_counter() - start

        import builders.audit as audit_module

        original = audit_module.name_counter
        audit_module.name_counter = lambda names: EveryName(names)
        try:
            start = time.perf_counter()
            slow = audit_records(audit_input)
            slow_s = time.perf_counter() - start
        finally:
            audit_module.name_counter = original
        assert {k: v for k, v in fast.items() if k != "examples"} == {k: v for k, v in slow.items() if k != "examples"}

        taxonomy = build_taxonomy(audit_input.domain, audit_input.classes)
        items = items_for(path, audit_input, taxonomy)
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            annotate(items, [b""] * len(items), [str(i) for i in range(len(items))], taxonomy,
                     CaptionOptions(captions_path=str(path)), Path(cache))
            stage_s = time.perf_counter() - start
        print(f"{name}: {records} records | audit {records / fast_s:,.0f} records/s, "
              f"name counter {slow_s / fast_s:.1f}x faster than searching every class | "
              f"caption stage (fdrd-json) {records / stage_s:,.0f} records/s")


if __name__ == "__main__":
    main()
