"""The DCAR paper's main table (Recall@K in %, CLIP ViT-B/32), packaged as benchmark/reference/
dcar_paper_main_table.csv, mapped onto this toolkit's names: the paper's domain names become the CoOp
folder names results files use, its method names our method registry names. FILIP, ALIP and FineCLIP
have no method here: they stay reported-only columns.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fdrd.errors import FdrdError

PAPER_AVG = "AVG"
# The paper's domain names -> the CoOp folder names (results files use these), in the paper's order.
PAPER_DOMAINS = {
    "Caltech101": "caltech-101",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "Flowers102": "oxford_flowers",
    "Food101": "food-101",
    "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397",
    "DTD": "dtd",
    "UCF101": "ucf101",
}
# Our method names -> the paper's column names, in the paper's column order.
PAPER_METHODS = {"zeroshot": "CLIP", "coop": "CoOp", "clip_adapter": "CLIP-Adapter", "maple": "MaPLe", "dcar": "DCAR"}
PAPER_DIRECTIONS = {"image_to_text": "i2t", "text_to_image": "t2i"}
PAPER_BACKBONE = "CLIP ViT-B/32"


@dataclass(frozen=True)
class ReportedTable:
    """values[(paper method, domain or "AVG", direction, K)] = Recall@K in percent."""

    values: dict[tuple[str, str, str, int], float]
    methods: tuple[str, ...]  # the paper's method names in the order the file lists them
    source: str

    def get(self, method: str, domain: str, direction: str, k: int) -> float | None:
        return self.values.get((method, domain, direction, k))


def packaged_table_text() -> str:
    return resources.files("benchmark").joinpath("reference", "dcar_paper_main_table.csv").read_text(encoding="utf-8")


def load_reported(path: str | Path | None = None) -> ReportedTable:
    """The packaged table (or `path`); an unknown domain, direction or method, or a bad number, is an error
    naming the line."""
    name = str(path) if path else "benchmark/reference/dcar_paper_main_table.csv"
    text = Path(path).read_text(encoding="utf-8") if path else packaged_table_text()
    reader = csv.DictReader(io.StringIO(text))
    expected = ["domain", "direction", "k", "method", "recall_percent"]
    if reader.fieldnames != expected:
        raise FdrdError(f"{name}: columns {reader.fieldnames}, expected {expected}")
    values: dict[tuple[str, str, str, int], float] = {}
    methods: list[str] = []
    for line, row in enumerate(reader, start=2):
        domain = PAPER_AVG if row["domain"] == PAPER_AVG else PAPER_DOMAINS.get(row["domain"])
        direction = PAPER_DIRECTIONS.get(row["direction"])
        try:
            k, value = int(row["k"]), float(row["recall_percent"])
        except (TypeError, ValueError):
            raise FdrdError(f"{name}: line {line}: k {row['k']!r} or recall {row['recall_percent']!r} is not a number") from None
        if domain is None or direction is None or not math.isfinite(value) or not 0 <= value <= 100:
            raise FdrdError(f"{name}: line {line}: unknown domain/direction or recall out of 0..100: {row}")
        key = (row["method"], domain, direction, k)
        if key in values:
            raise FdrdError(f"{name}: line {line}: {key} is listed twice")
        values[key] = value
        if row["method"] not in methods:
            methods.append(row["method"])
    return ReportedTable(values=values, methods=tuple(methods), source=name)
