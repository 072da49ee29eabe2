"""The CoOp source: the nine downstream datasets laid out as CoOp/MaPLe document them.

Each domain's fixed split (`split_zhou_*.json`, or the variant lists for fgvc_aircraft) gives
`[relative_path, label, class_name]` entries; FDRD train = CoOp train + val (kept as split labels
`train` and `val`), test = CoOp test. The label is the category_id. The source yields image paths;
it refuses entries whose path leaves the image folder (absolute, or with `..`), rejects entries
whose file is missing, and leaves decoding to normalization. Domain and image folders may be
symlinks (CoOp's DATASETS.md suggests them): `original`, and so the record id, is the path as
written under the data root, never where a link points.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from builders.class_names import readable_class_name
from builders.sources import check_splits
from builders.sources.base import Rejection, SourceItem
from builders.sources.coop_layout import (
    AIRCRAFT_SPLIT_FILE,
    AIRCRAFT_VARIANTS_FILE,
    LAYOUTS,
    CoopDomainLayout,
)
from builders.taxonomy import Taxonomy, build_taxonomy
from fdrd.errors import FdrdError
from fdrd.schema import COOP_DOMAINS
from fdrd.untrusted import read_json_file

COOP_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitEntry:
    index: int  # position in its split list, for error messages
    path: str  # relative to the image folder, as written in the split file
    label: int
    class_name: str


@dataclass(frozen=True)
class BadEntry:
    index: int
    reason: str  # why the entry cannot be used at all


@dataclass(frozen=True)
class DomainSplits:
    files: dict[str, str]  # split -> the file its entries came from, for messages
    entries: dict[str, list[SplitEntry | BadEntry]]  # split -> entries in file order
    class_names: tuple[str, ...]  # CoOp class names in label order


class CoopSource:
    name = "coop"

    def __init__(self, data_root: Path, domains: Sequence[str] | None = None):
        self.data_root = Path(data_root)
        if not self.data_root.is_dir():
            raise FdrdError(f"data root {self.data_root} is not a folder; pass the folder holding the CoOp datasets")
        present = [d for d in COOP_DOMAINS if (self.data_root / d).is_dir()]
        if domains is None:
            if not present:
                raise FdrdError(
                    f"{self.data_root}: no CoOp domain folder found; expected one of {', '.join(COOP_DOMAINS)}"
                )
            domains = present
        unknown = [d for d in domains if d not in COOP_DOMAINS]
        if unknown:
            raise FdrdError(
                f"unknown CoOp domain {', '.join(map(repr, unknown))}; known domains: {', '.join(COOP_DOMAINS)}"
            )
        absent = [d for d in domains if d not in present]
        if absent:
            raise FdrdError(
                f"{self.data_root}: no folder for {', '.join(absent)}; expected "
                + "; ".join(LAYOUTS[d].describe() for d in absent)
            )
        self._domains = list(dict.fromkeys(domains))
        # Parsed once per build: count_items, taxonomy and iter_items all need them.
        self._split_cache: dict[str, DomainSplits] = {}
        self._taxonomy_cache: dict[str, Taxonomy] = {}

    def domains(self) -> list[str]:
        return list(self._domains)

    def _layout(self, domain: str) -> CoopDomainLayout:
        if domain not in self._domains:
            raise FdrdError(f"domain {domain!r} is not in this build; domains: {', '.join(self._domains)}")
        return LAYOUTS[domain]

    def taxonomy(self, domain: str) -> Taxonomy:
        if domain not in self._taxonomy_cache:
            names = [readable_class_name(domain, n) for n in self._splits(domain).class_names]
            self._taxonomy_cache[domain] = build_taxonomy(domain, names, self.data_root)
        return self._taxonomy_cache[domain]

    def count_items(self, domain: str, splits: Sequence[str]) -> int:
        entries = self._splits(domain).entries
        return sum(len(entries[s]) for s in _check_splits(splits))

    def iter_items(self, domain: str, splits: Sequence[str]) -> Iterator[SourceItem | Rejection]:
        layout = self._layout(domain)
        domain_splits = self._splits(domain)
        taxonomy = self.taxonomy(domain)
        image_dir = self.data_root / domain / layout.image_dir
        image_prefix = f"{domain}/{layout.image_dir}/" if layout.image_dir else f"{domain}/"
        for split in _check_splits(splits):
            file = domain_splits.files[split]
            for entry in domain_splits.entries[split]:
                if isinstance(entry, BadEntry):
                    yield Rejection(domain, split, f"{domain}/{file}#{split}/{entry.index}", entry.reason)
                    continue
                where = f"{file}: {split} entry {entry.index}"
                relative = inside_path(entry.path)
                if relative is None:
                    reason = f"{where} points outside the data root ({domain}/): {entry.path}; refusing"
                    yield Rejection(domain, split, image_prefix + entry.path, reason)
                    continue
                # Named as written under the data root: links the user placed there are followed
                # when reading, but never decide the name (and so the record id).
                original = image_prefix + relative
                candidate = image_dir / relative
                if not candidate.exists():
                    yield Rejection(domain, split, original, f"missing file ({where})")
                    continue
                if not candidate.is_file():
                    yield Rejection(domain, split, original, f"not a file ({where})")
                    continue
                category = taxonomy.categories[entry.label]
                yield SourceItem(
                    domain=domain,
                    split=split,
                    category=category,
                    category_id=entry.label,
                    meta_category=taxonomy.meta_category(category),
                    original=original,
                    dataset=domain,
                    license=layout.license,
                    image_path=str(candidate),
                )

    def _splits(self, domain: str) -> DomainSplits:
        layout = self._layout(domain)
        if domain not in self._split_cache:
            read = _read_aircraft_splits if layout.split_file is None else _read_split_json
            self._split_cache[domain] = read(self.data_root / domain, layout)
        return self._split_cache[domain]


def inside_path(path: str) -> str | None:
    """`path` from a split file as a clean relative POSIX path ("./a//b.jpg" -> "a/b.jpg"), or None
    when it could leave its folder: absolute (POSIX or Windows), or with a `..` part anywhere.

    Checked on the text, not on the resolved path: CoOp's DATASETS.md has users symlink dataset
    folders into the data root, and a link the user placed there is theirs to follow, while a
    path written in a data file must stay under its folder."""
    if not path or path.startswith(("/", "\\")) or PureWindowsPath(path).drive:
        return None
    if ".." in path.replace("\\", "/").split("/"):  # a Windows-style "..\\" leaves the folder too
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts) or None


def _check_splits(splits: Sequence[str]) -> list[str]:
    """The CoOp splits among `splits`; `pretrain` (synthetic only) selects nothing here."""
    return [s for s in check_splits(splits) if s in COOP_SPLITS]


def _missing_layout(path: Path, layout: CoopDomainLayout) -> FdrdError:
    return FdrdError(f"{path} not found; the CoOp layout for {layout.folder} is {layout.describe()}")


def _read_split_json(domain_dir: Path, layout: CoopDomainLayout) -> DomainSplits:
    assert layout.split_file is not None
    path = domain_dir / layout.split_file
    if not path.is_file():
        raise _missing_layout(path, layout)
    data = read_json_file(path, "restore the file from the CoOp release")  # NUL, deep nesting: named errors
    if not isinstance(data, dict) or any(not isinstance(data.get(s), list) for s in COOP_SPLITS):
        raise FdrdError(f"{path}: expected an object with lists 'train', 'val' and 'test'")
    entries: dict[str, list[SplitEntry | BadEntry]] = {}
    for split in COOP_SPLITS:
        entries[split] = [_parse_entry(layout.split_file, split, i, raw) for i, raw in enumerate(data[split])]
    files = dict.fromkeys(COOP_SPLITS, layout.split_file)
    return DomainSplits(files, entries, _class_names(path, entries))


def _parse_entry(file: str, split: str, index: int, raw: Any) -> SplitEntry | BadEntry:
    ok = (
        isinstance(raw, list)
        and len(raw) == 3
        and isinstance(raw[0], str)
        and raw[0]
        and isinstance(raw[1], int)
        and not isinstance(raw[1], bool)
        and raw[1] >= 0
        and isinstance(raw[2], str)
        and raw[2].strip()
    )
    if not ok:
        return BadEntry(index, f"{file}: {split} entry {index} is not [relative_path, label, class_name]: {str(raw)[:80]}")
    return SplitEntry(index, raw[0], raw[1], raw[2])


def _class_names(path: Path, entries: dict[str, list[SplitEntry | BadEntry]]) -> tuple[str, ...]:
    """Class names in label order; every label 0..K-1 must have exactly one name."""
    by_label: dict[int, str] = {}
    for split, split_entries in entries.items():
        for entry in split_entries:
            if isinstance(entry, BadEntry):
                continue
            known = by_label.setdefault(entry.label, entry.class_name)
            if known != entry.class_name:
                raise FdrdError(
                    f"{path}: {split} entry {entry.index} names label {entry.label} {entry.class_name!r}, "
                    f"elsewhere {known!r}; a label must have one class name"
                )
    gaps = sorted(set(range(len(by_label))) - set(by_label))
    if gaps:
        raise FdrdError(f"{path}: labels must run 0..K-1; no entry has label {', '.join(map(str, gaps[:5]))}")
    return tuple(by_label[i] for i in range(len(by_label)))


def _read_aircraft_splits(domain_dir: Path, layout: CoopDomainLayout) -> DomainSplits:
    variants_path = domain_dir / AIRCRAFT_VARIANTS_FILE
    if not variants_path.is_file():
        raise _missing_layout(variants_path, layout)
    class_names = tuple(v.strip() for v in variants_path.read_text(encoding="utf-8").splitlines() if v.strip())
    label_of = {name: i for i, name in enumerate(class_names)}
    entries: dict[str, list[SplitEntry | BadEntry]] = {}
    for split in COOP_SPLITS:
        file = AIRCRAFT_SPLIT_FILE.format(split=split)
        path = domain_dir / file
        if not path.is_file():
            raise _missing_layout(path, layout)
        split_entries: list[SplitEntry | BadEntry] = []
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for index, line in enumerate(lines):
            image_id, _, variant = line.partition(" ")
            if variant.strip() not in label_of:
                reason = f"{file}: line {index + 1} names variant {variant!r}, not in {AIRCRAFT_VARIANTS_FILE}"
                split_entries.append(BadEntry(index, reason))
                continue
            split_entries.append(SplitEntry(index, f"{image_id}.jpg", label_of[variant.strip()], variant.strip()))
        entries[split] = split_entries
    files = {split: AIRCRAFT_SPLIT_FILE.format(split=split) for split in COOP_SPLITS}
    return DomainSplits(files, entries, class_names)
