"""Defect counts for FDRD captions: released-format JSON files and datasets built by this toolkit.

The released FDRD files were made by plain substring replacement (shared/docs/fdrd-data.md), and
their defects can be counted from the text alone, by comparing each negative with its positive:

- identical_to_positive:      negatives equal to the positive (whitespace aside)
- duplicate_negative_records: records with two or more equal negatives
- in_word_replacements:       negatives in which a class name stands inside another word more often
                              than in the positive ("sgreat pyreneestered"); a plural ending
                              ("roses", "lilies" aside) does not count as another word
- true_class_survives:        records whose every class swap swapped a class other than the true
                              one, so the true class (if the positive named it) survives in every
                              negative
- cross_meta_category:        negatives that name a class of another meta-category than the true
                              class (when the domain has natural meta-categories and the true
                              class's meta-category has at least two members)
- non_words:                  positives and negatives with a word in no English dictionary and in no
                              class name of the domain ("sdogtered", "Westplane";
                              builders/captions/english.py says what counts as a word)
- repeated_names:             positives and negatives with a class name or generic noun repeated back
                              to back ("lotus lotus", "terrier scottish terrier", "plane airplane")
- names_other_class:          positives that name a class other than their own ("a beagle" for a
                              basset hound)

"Swapped" and "named" are found by counting every class name in both texts (case-insensitive,
spaces and underscores alike, inside words too): a class whose count drops was swapped out, one
whose count rises was swapped in. A dataset built by this toolkit audits to zero on every count.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders.captions.insert import loose_name_pattern, name_counter
from builders.captions.repair import domain_checker

# Groupings of our own (semantic maps, spelling) are not the dataset's: released files are judged
# only against meta-categories the dataset itself defines (NATURAL_RULES).
from builders.taxonomy import NATURAL_RULES, build_taxonomy, name_key
from fdrd.errors import FdrdError
from fdrd.schema import COOP_DOMAINS

AUDIT_KEYS = (
    "records",
    "negatives",
    "identical_to_positive",
    "duplicate_negative_records",
    "in_word_replacements",
    "true_class_survives",
    "cross_meta_category",
    "non_words",
    "repeated_names",
    "names_other_class",
)
EXAMPLES_PER_KIND = 3
# How the released files are named ("pets_test.json") -> CoOp domain folder.
FILE_NAME_DOMAINS = {
    "pet": "oxford_pets",
    "flower": "oxford_flowers",
    "plane": "fgvc_aircraft",
    "aircraft": "fgvc_aircraft",
    "car": "stanford_cars",
    "food": "food-101",
    "caltech": "caltech-101",
    "sun": "sun397",
    "dtd": "dtd",
    "ucf": "ucf101",
}
_KEY_CLASS = re.compile(r"^(?P<cls>.+?)(?:_image)?_\d+$")


@dataclass
class AuditRecord:
    key: str
    positive: str
    negatives: list[str]
    true_class: str | None  # None when no class could be found for the record


@dataclass
class AuditInput:
    name: str  # what the report calls it: a file, or "<dataset dir>/<domain>"
    domain: str
    records: list[AuditRecord]
    classes: tuple[str, ...]  # every class name of the domain, as captions may write it
    meta: dict[str, str] | None  # class name key -> meta-category; None: no natural meta-categories


def _normal(text: str) -> str:
    return " ".join(text.split())


def audit_records(audit_input: AuditInput, advance: Callable[[], None] | None = None) -> dict[str, Any]:
    """The defect counts of one file or built domain, plus the first examples of each defect.
    `advance` is called once per record (a progress bar)."""
    counter = name_counter(tuple(audit_input.classes))
    checker = domain_checker(audit_input.domain, tuple(audit_input.classes))
    meta = audit_input.meta
    meta_size = Counter(meta.values()) if meta is not None else Counter()
    counts = Counter({key: 0 for key in AUDIT_KEYS})
    examples: dict[str, list[dict[str, Any]]] = {key: [] for key in AUDIT_KEYS[2:]}

    def found(kind: str, record: AuditRecord, **detail: Any) -> None:
        counts[kind] += 1
        if len(examples[kind]) < EXAMPLES_PER_KIND:
            examples[kind].append({"record": record.key, "class": record.true_class, **detail})

    for record in audit_input.records:
        if advance is not None:
            advance()
        counts["records"] += 1
        counts["negatives"] += len(record.negatives)
        positive = _normal(record.positive)
        negatives = [_normal(n) for n in record.negatives]
        for negative in negatives:
            if negative == positive:
                found("identical_to_positive", record, negative=negative)
        repeated = [n for n, k in Counter(negatives).items() if k > 1]
        if repeated:
            found("duplicate_negative_records", record, negative=repeated[0])
        true_key = name_key(record.true_class) if record.true_class else None
        true_meta = meta.get(true_key) if meta is not None and true_key else None
        positive_every, positive_inside = counter.counts(positive)
        swapped_out: list[set[str]] = []
        for negative in negatives:
            if negative == positive:
                continue
            every, inside = counter.counts(negative)
            grown = sorted(k for k in inside if inside[k] > positive_inside[k])
            if grown:
                found("in_word_replacements", record, negative=negative, classes=grown)
            removed = {k for k in positive_every if every[k] < positive_every[k]}
            added = sorted(k for k in every if every[k] > positive_every[k])
            if removed:
                swapped_out.append(removed)
            if true_meta and meta_size[true_meta] >= 2:
                other = [k for k in added if meta.get(k) not in (None, true_meta)]
                if other:
                    found("cross_meta_category", record, negative=negative, classes=other, meta=true_meta)
        if true_key and swapped_out and all(true_key not in removed for removed in swapped_out):
            found("true_class_survives", record, positive=positive, swapped=sorted(set().union(*swapped_out)))
        for where, text in [("positive", positive)] + [("negative", n) for n in negatives]:
            words = checker.non_words(text)
            if words:
                found("non_words", record, **{where: text}, words=[w.words for w in words])
            repeats = checker.repeated_names(text)
            if repeats:
                found("repeated_names", record, **{where: text}, words=[r.words for r in repeats])
        if record.true_class:
            others = checker.other_classes(positive, record.true_class)
            if others:
                found("names_other_class", record, positive=positive, classes=others)
    result: dict[str, Any] = {"file": audit_input.name}
    result.update({key: counts[key] for key in AUDIT_KEYS})
    if meta is None:
        result["cross_meta_category"] = None
    result["examples"] = examples
    return result


# --- released-format files -------------------------------------------------------------------


def domain_of_file(path: Path, records: list[Any], given: str | None) -> str:
    """The domain of a released file: --domain, else a domain folder in its paths, else its name."""
    if given:
        if given not in COOP_DOMAINS:
            raise FdrdError(f"unknown domain {given!r} for --domain; use one of {', '.join(COOP_DOMAINS)}")
        return given
    from builders.captions.fdrd_json import relative_to_domain

    folders = Counter(
        relative.split("/", 1)[0]
        for record in records
        if (relative := relative_to_domain(record.file_path, list(COOP_DOMAINS))) is not None
    )
    if folders:
        return folders.most_common(1)[0][0]
    stem = path.stem.lower()
    for word, domain in FILE_NAME_DOMAINS.items():
        if stem.startswith(word):
            return domain
    raise FdrdError(
        f"{path}: cannot tell the domain (no CoOp domain folder in file_path, file name not like "
        f"pets_test.json); pass --domain with one of {', '.join(COOP_DOMAINS)}"
    )


def class_from_key(key: str) -> str | None:
    """`Sphynx_43` -> Sphynx, `707-320_1514522` -> 707-320, `monkshood_image_06422` -> monkshood."""
    match = _KEY_CLASS.match(key)
    return match.group("cls") if match else None


def _spelled_as_in_captions(name: str, texts: str) -> str:
    """Image keys cannot hold '/', so the released keys write "F-16A/B" as "F-16A_B": keep the
    spelling that the captions themselves use more often."""
    if "_" not in name:
        return name
    slash = name.replace("_", "/")
    if len(loose_name_pattern(slash).findall(texts)) > len(loose_name_pattern(name).findall(texts)):
        return slash
    return name


def _classes_from_data_root(domain: str, data_root: Path, records: list[Any]) -> tuple[tuple[str, ...], dict]:
    """Class names of the domain from its CoOp split, and record key -> class by matching paths."""
    from builders.captions.fdrd_json import match_records
    from builders.sources.base import SourceItem
    from builders.sources.coop import CoopSource

    source = CoopSource(data_root, [domain])
    items = [i for i in source.iter_items(domain, ("train", "val", "test")) if isinstance(i, SourceItem)]
    match = match_records(records, [i.original for i in items], [domain], data_root)
    by_key = {record.key: items[index].category for index, record in match.matches.items()}
    return source.taxonomy(domain).categories, by_key


def released_audit_input(path: Path, domain: str | None = None, data_root: Path | None = None) -> AuditInput:
    """A released-format file, with each record's class and the domain's class names and meta-categories."""
    from builders.captions.fdrd_json import read_released

    records = read_released(path)
    domain = domain_of_file(path, records, domain)
    split_classes: tuple[str, ...] = ()
    split_class_of: dict[str, str] = {}
    if data_root is not None:
        split_classes, split_class_of = _classes_from_data_root(domain, Path(data_root), records)
    texts = "\n".join(r.positive + "\n" + "\n".join(r.negatives) for r in records)
    spelling: dict[str, str] = {}
    audit_records_: list[AuditRecord] = []
    for record in records:
        true_class = record.class_name or class_from_key(record.key) or split_class_of.get(record.key)
        if true_class and not record.class_name:
            if true_class not in spelling:
                spelling[true_class] = _spelled_as_in_captions(true_class, texts)
            true_class = spelling[true_class]
        audit_records_.append(AuditRecord(record.key, record.positive, list(record.negatives), true_class))
    names = {name_key(c): c for c in split_classes}
    for record in audit_records_:
        if record.true_class:
            names.setdefault(name_key(record.true_class), record.true_class)
    classes = tuple(names.values())
    meta = None
    if classes:
        taxonomy = build_taxonomy(domain, classes, data_root)
        if taxonomy.meta_rule in NATURAL_RULES and any(taxonomy.meta_categories.values()):
            meta = {name_key(c): taxonomy.meta_category(c) for c in classes}
    return AuditInput(str(path), domain, audit_records_, classes, meta)


# --- built datasets ----------------------------------------------------------------------------

_BUILT_COLUMNS = ["id", "category", "meta_category", "caption", "negatives"]


def built_audit_inputs(root: Path) -> list[AuditInput]:
    """One input per domain folder of a dataset built by this toolkit (<root>/<domain>/*.parquet)."""
    import pyarrow.parquet as pq

    inputs = []
    for domain_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        shards = sorted(domain_dir.glob("*.parquet"))
        if not shards:
            continue
        records: list[AuditRecord] = []
        meta: dict[str, str] = {}
        names: dict[str, str] = {}
        for shard in shards:
            try:
                table = pq.read_table(shard, columns=_BUILT_COLUMNS)
            except Exception as error:  # pyarrow raises several types for a damaged or foreign file
                raise FdrdError(f"{shard}: cannot read the columns {', '.join(_BUILT_COLUMNS)} ({error})") from None
            for row in table.to_pylist():
                negatives = row["negatives"] or []
                records.append(AuditRecord(row["id"], row["caption"], [n["text"] for n in negatives], row["category"]))
                names.setdefault(name_key(row["category"]), row["category"])
                meta[name_key(row["category"])] = row["meta_category"] or ""
                for negative in negatives:
                    if negative["category"]:
                        names.setdefault(name_key(negative["category"]), negative["category"])
        has_meta = any(meta.values())
        inputs.append(
            AuditInput(f"{root}/{domain_dir.name}", domain_dir.name, records, tuple(names.values()), meta if has_meta else None)
        )
    if not inputs:
        raise FdrdError(f"{root}: no <domain>/*.parquet shards found; pass a released .json file or a built dataset folder")
    return inputs


def audit_path(
    path: str | Path, domain: str | None = None, data_root: str | Path | None = None, progress: bool = False
) -> list[dict[str, Any]]:
    """Audit a released-format file, a folder of them, or a built dataset folder: one result each.
    With `progress`, a bar on stderr counts the records (a full build has some 200,000)."""
    path = Path(path)
    root = Path(data_root) if data_root else None
    if path.is_file():
        inputs = [released_audit_input(path, domain, root)]
    elif not path.is_dir():
        raise FdrdError(f"{path}: no such file or folder; pass a released .json file or a built dataset folder")
    else:
        candidates = sorted(p for p in path.glob("*.json") if p.is_file())
        built = any(path.glob("*/*.parquet"))
        released = [p for p in candidates if not built and not _is_build_metadata(p)]
        if released and not built:
            inputs = [released_audit_input(p, domain, root) for p in released]
        else:
            inputs = built_audit_inputs(path)
    if not progress:
        return [audit_records(i) for i in inputs]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        results = []
        for audit_input in inputs:
            task = bar.add_task(f"audit {Path(audit_input.name).name}", total=len(audit_input.records))
            results.append(audit_records(audit_input, lambda task=task: bar.advance(task)))
        return results


def _is_build_metadata(path: Path) -> bool:
    """manifest.json and friends of a built dataset are not caption files: JSON without a record that has
    a `positive` caption. They are skipped, and said so on stderr; a file that is not JSON at all
    (malformed, truncated, not UTF-8) is a named error, never a silent skip."""
    from fdrd.untrusted import read_json_file

    data = read_json_file(path, "fix it, or move it out of the folder being audited")
    if isinstance(data, dict) and any(isinstance(r, dict) and "positive" in r for r in data.values()):
        return False
    from rich.console import Console

    Console(stderr=True).print(f"skipping {path}: JSON without caption records (not a released-format file)",
                               highlight=False, soft_wrap=True)
    return True


def dumps(results: list[dict[str, Any]]) -> str:
    """--json output: one JSON object per line, one per file or built domain."""
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in results)
