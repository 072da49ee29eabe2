"""Reading the released FDRD caption files, and matching their records to our source items.

Format (shared docs, fdrd-data.md): one JSON object per domain and split, `{image_key: record}`,
a record holding `file_name`, `file_path` (an absolute path on the authors' machine), `positive`,
`negative` (list of str) and, for flowers, `class_name` and `number`. `file_path` is mapped onto
our data root by the part after the domain folder ("/root/.../DATA/oxford_pets/images/Sphynx_43.jpg"
-> "oxford_pets/images/Sphynx_43.jpg"); the flowers files have no domain folder in their paths, so
those records are matched by file name instead. A path that would leave the data root is refused.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fdrd.errors import FdrdError
from fdrd.schema import COOP_DOMAINS
from fdrd.untrusted import read_json_file


@dataclass(frozen=True)
class ReleasedRecord:
    """One record of a released caption file."""

    source_file: str
    key: str  # the image key of the JSON object ("Sphynx_43")
    file_name: str
    file_path: str
    positive: str
    negatives: tuple[str, ...]
    class_name: str | None  # only the flowers files carry it


def released_files(path: str | Path) -> list[Path]:
    """The released-format files at `path`: the file itself, or every *.json in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise FdrdError(f"{path}: folder holds no .json caption files; pass a released-format file or folder")
        return files
    if not path.is_file():
        raise FdrdError(f"{path}: no such caption file or folder; check --captions")
    return [path]


def _field(record: Any, name: str, kind: type, where: str, required: bool = True) -> Any:
    if name not in record:
        if required:
            raise FdrdError(f"{where}: missing field {name!r}; is this a released FDRD caption file?")
        return None
    value = record[name]
    if not isinstance(value, kind):
        raise FdrdError(f"{where}: field {name!r} should be {kind.__name__}, found {type(value).__name__}")
    return value


def read_released(path: str | Path) -> list[ReleasedRecord]:
    """Every record of one released-format file, in file order; malformed input is a named error."""
    path = Path(path)
    data = read_json_file(path, "is this a released FDRD caption file?")  # NUL, deep nesting: named errors
    if not isinstance(data, dict):
        raise FdrdError(f"{path}: top level must be an object {{image_key: record}}, found {type(data).__name__}")
    records = []
    for key, record in data.items():
        where = f"{path}: record {key!r}"
        if not isinstance(record, dict):
            raise FdrdError(f"{where}: should be an object with file_path, positive and negative")
        negatives = _field(record, "negative", list, where)
        if not all(isinstance(n, str) for n in negatives):
            raise FdrdError(f"{where}: every entry of 'negative' should be a string")
        records.append(
            ReleasedRecord(
                source_file=str(path),
                key=str(key),
                file_name=_field(record, "file_name", str, where, required=False) or str(key),
                file_path=_field(record, "file_path", str, where),
                positive=_field(record, "positive", str, where),
                negatives=tuple(negatives),
                class_name=_field(record, "class_name", str, where, required=False),
            )
        )
    return records


@lru_cache(maxsize=16)
def _read_cached(path: str, size: int, mtime_ns: int) -> tuple[ReleasedRecord, ...]:
    return tuple(read_released(path))


def load_released(path: str | Path) -> list[ReleasedRecord]:
    """Every record of the released file(s) at `path`. Parsed once per file version: the build
    calls the caption stage once per domain, each call reads every file of a --captions folder,
    and a released file is megabytes of JSON."""
    records: list[ReleasedRecord] = []
    for file in released_files(path):
        stat = file.stat()
        records.extend(_read_cached(str(file), stat.st_size, stat.st_mtime_ns))
    return records


def _path_parts(file_path: str) -> list[str]:
    """Components of a path written on either Windows or POSIX."""
    parts = PureWindowsPath(file_path).parts if "\\" in file_path else PurePosixPath(file_path).parts
    return [p for p in parts if p not in ("/", "\\")]


def _known_domains(*extra: str) -> list[str]:
    return list(dict.fromkeys((*extra, *COOP_DOMAINS)))


def relative_to_domain(file_path: str, domains: list[str]) -> str | None:
    """The part of `file_path` from the last domain folder on ("oxford_pets/images/x.jpg"), or None
    when no component names one of `domains`. The result may contain '..' (checked by the caller)."""
    parts = _path_parts(file_path)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in domains:
            return "/".join(parts[i:])
    return None


def leaves_root(relative: str) -> bool:
    """True when a relative path would point outside the folder it is relative to."""
    normal = posixpath.normpath(relative)
    return normal == ".." or normal.startswith("../") or posixpath.isabs(relative)


def stays_inside(data_root: Path, relative: str) -> bool:
    """True when data_root/relative resolves (symlinks followed) to a path inside data_root."""
    root = data_root.resolve()
    target = (root / relative).resolve()
    return target == root or root in target.parents


_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|bmp|gif|webp|tiff?)$", re.IGNORECASE)


def stem_candidates(record: ReleasedRecord) -> list[str]:
    """File-name stems that could name this record's image, most specific first.

    Flowers keys glue the class to the CoOp file name ("monkshood_image_06422" is "image_06422.jpg"),
    so every suffix after an underscore is a candidate too."""
    base = _path_parts(record.file_path)[-1] if record.file_path else record.file_name
    stems = [_IMAGE_SUFFIX.sub("", base), _IMAGE_SUFFIX.sub("", record.file_name)]
    if record.class_name:
        for stem in list(stems):
            prefix = record.class_name.replace(" ", "_") + "_"
            if stem.lower().startswith(prefix.lower()):
                stems.append(stem[len(prefix) :])
    for stem in list(stems):
        pieces = stem.split("_")
        stems.extend("_".join(pieces[i:]) for i in range(1, len(pieces)))
    return list(dict.fromkeys(s for s in stems if s))


@dataclass
class MatchResult:
    matches: dict[int, ReleasedRecord]  # item index -> its record
    unmatched: list[ReleasedRecord]  # records with no item (another split, or images not built)
    refused: list[tuple[ReleasedRecord, str]]  # records whose path leaves the data root, with the reason
    ambiguous: list[ReleasedRecord]  # file-name fallback found several items
    duplicates: list[ReleasedRecord]  # a second record for an already matched item


def _image_stem(original: str) -> str:
    return _IMAGE_SUFFIX.sub("", posixpath.basename(original))


def record_level_report(
    records: list[ReleasedRecord], domain: str, data_root: Path | None
) -> tuple[dict[str, int], list[tuple[ReleasedRecord, str]]]:
    """Counts about the released records of one domain that do not depend on which items are being
    captioned, and the records refused because their path leaves the data root."""
    refused = []
    by_domain_path = without_image = other_domain = 0
    for record in records:
        relative = relative_to_domain(record.file_path, _known_domains(domain))
        if relative is None:
            continue
        if relative.split("/", 1)[0] != domain:
            other_domain += 1
            continue
        by_domain_path += 1
        if leaves_root(relative) or (data_root is not None and not stays_inside(data_root, relative)):
            refused.append((record, f"file_path {record.file_path!r} points outside the data root; refusing"))
        elif data_root is not None and not (data_root / relative).is_file():
            without_image += 1
    report = {
        "released_records": len(records),
        "released_records_by_path": by_domain_path,
        "released_records_by_file_name": len(records) - by_domain_path - other_domain,
        "released_records_other_domain": other_domain,
        "refused_records": len(refused),
    }
    if data_root is not None:
        report["released_records_without_image"] = without_image
    return report, refused


def _match_by_file_name(record: ReleasedRecord, by_stem: dict[str, list[int]]) -> tuple[int | None, bool]:
    """(item index or None, whether the first stem that names any item names several)."""
    for stem in stem_candidates(record):
        found = by_stem.get(stem, [])
        if len(found) == 1:
            return found[0], False
        if found:
            return None, True
    return None, False


def match_records(
    records: list[ReleasedRecord], originals: list[str], domains: list[str], data_root: Path | None
) -> MatchResult:
    """Match released records to items by path under the domain folder, else by file name.

    `originals` are the items' paths relative to the data root (SourceItem.original)."""
    by_path = {posixpath.normpath(o): i for i, o in enumerate(originals)}
    by_stem: dict[str, list[int]] = {}
    for i, original in enumerate(originals):
        by_stem.setdefault(_image_stem(original), []).append(i)
    result = MatchResult({}, [], [], [], [])
    for record in records:
        relative = relative_to_domain(record.file_path, _known_domains(*domains))
        index: int | None = None
        if relative is not None and relative.split("/", 1)[0] not in domains:
            continue  # a record of another domain (a folder may hold several domains' files)
        if relative is not None:
            if leaves_root(relative) or (data_root is not None and not stays_inside(data_root, relative)):
                result.refused.append(
                    (record, f"file_path {record.file_path!r} points outside the data root; refusing")
                )
                continue
            index = by_path.get(posixpath.normpath(relative))
        else:
            index, ambiguous = _match_by_file_name(record, by_stem)
            if ambiguous:
                result.ambiguous.append(record)
                continue
        if index is None:
            result.unmatched.append(record)
        elif index in result.matches:
            result.duplicates.append(record)
        else:
            result.matches[index] = record
    return result


def sound_released_negatives(
    positive: str, category: str, released: tuple[str, ...], candidates: list[str]
) -> tuple[list[dict[str, Any]], int]:
    """Released negatives that are exactly what our own category swap would make, and how many
    were not (identical to the positive, a repeat, an in-word replacement, the true class
    surviving, a class outside the candidates, i.e. another meta-category).

    A released negative is kept only if replacing every whole-word occurrence of the true class in
    `positive` by some candidate reproduces it (case aside), so a kept negative meets every
    guarantee of builders/captions/negatives.py."""
    from builders.captions.insert import display_name, find_name
    from builders.captions.negatives import category_negative

    spans = find_name(positive, category)
    kept: list[dict[str, Any]] = []
    seen = {positive.lower()}
    if not spans:
        return kept, len(released)
    start = spans[0][0]
    by_shown = {display_name(c).lower(): c for c in candidates}
    lengths = sorted({len(shown) for shown in by_shown}, reverse=True)
    for text in released:
        lowered = text.lower()
        other = None
        # The swapped name starts where the true one did, give or take an article changing
        # between "a" and "an" in front of it.
        for shift in (0, -1, 1) if lowered not in seen else ():
            for length in lengths:
                guess = by_shown.get(lowered[start + shift : start + shift + length])
                if guess is not None and category_negative(positive, category, guess).lower() == lowered:
                    other = guess
                    break
            if other is not None:
                break
        if other is None:
            continue
        seen.add(lowered)
        kept.append({"text": text, "kind": "category", "category": other})
    return kept, len(released) - len(kept)
