"""Reading a built folder's README.md the way `datasets.load_dataset` does, to check it against the manifest.

The card's YAML header decides which files `load_dataset(dir, config, split=...)` reads: `configs` maps
each config and split to file patterns. `card_problems` resolves those patterns in the folder and checks
that a domain's config reads exactly that domain's listed shards of the split, any other config (`all`,
`default`) only listed shards of the split, and that `dataset_info` split sizes are the manifest's; a
missing or unparsable card is a problem too (loading would fail, or read what the folder happens to hold).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdrd.untrusted import path_problem

CARD_NAME = "README.md"


def _front_matter(text: str) -> dict[str, Any] | str:
    """The card's YAML header as a dict, or why it cannot be read."""
    import yaml  # a dependency of huggingface_hub and datasets

    if not text.startswith("---"):
        return "has no YAML header (--- ... ---)"
    end = text.find("\n---", 3)
    if end < 0:
        return "YAML header is not closed by ---"
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError as error:
        return f"YAML header does not parse ({str(error).splitlines()[0]})"
    except RecursionError:
        return "YAML header is nested too deeply"
    return data if isinstance(data, dict) else "YAML header is not a mapping"


def _data_files(entry: Any) -> list[tuple[str, list[Any]]] | None:
    """(split, patterns) pairs of one config's `data_files`, in the spellings `datasets` accepts."""
    files = entry.get("data_files") if isinstance(entry, dict) else None
    if isinstance(files, (str, list)) and not (isinstance(files, list) and all(isinstance(f, dict) for f in files)):
        return [("train", files if isinstance(files, list) else [files])]
    if isinstance(files, dict):
        files = [{"split": split, "path": path} for split, path in files.items()]
    if not isinstance(files, list):
        return None
    pairs = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("split"), str):
            return None
        path = item.get("path")
        pairs.append((item["split"], path if isinstance(path, list) else [path]))
    return pairs


def _matches(directory: Path, pattern: str) -> set[str]:
    # `datasets` skips hidden files and folders and those starting with "__" when resolving patterns.
    found = set()
    for path in directory.glob(pattern):
        relative = path.relative_to(directory).as_posix()
        if path.is_file() and not any(part.startswith((".", "__")) for part in relative.split("/")):
            found.add(relative)
    return found


def card_problems(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> list[str]:
    """What in README.md would make `datasets` read other files than the manifest lists, or fail."""
    directory = Path(directory)
    path = directory / CARD_NAME
    if not path.is_file():
        return [f"{CARD_NAME}: missing; `datasets.load_dataset` needs its configs to load the domains "
                "(rebuild, or restore it)"]
    header = _front_matter(path.read_bytes().decode("utf-8", errors="replace"))
    if isinstance(header, str):
        return [f"{CARD_NAME}: {header}; rebuild, or restore it"]
    shards = manifest.get("shards", [])
    domains = {shard["domain"] for shard in shards}
    listed = {(shard["split"], shard["path"]) for shard in shards}
    problems = []
    configs = header.get("configs")
    if not isinstance(configs, list) or not configs:
        problems.append(f"{CARD_NAME}: no `configs` list; `datasets` could not load the domains by name")
        configs = []
    seen = set()
    reads: dict[tuple[str, str], set[str]] = {}  # (config, split) -> listed shards it reads
    for config in configs:
        name = config.get("config_name") if isinstance(config, dict) else None
        pairs = _data_files(config)
        if not isinstance(name, str) or pairs is None:
            problems.append(f"{CARD_NAME}: a `configs` entry without config_name or readable data_files: {str(config)[:120]}")
            continue
        seen.add(name)
        for split, patterns in pairs:
            matched: set[str] = set()
            for pattern in patterns:
                problem = path_problem(pattern)
                if problem is not None:
                    problems.append(f"{CARD_NAME}: config {name!r} split {split!r}: pattern {str(pattern)[:120]!r} {problem}")
                    continue
                matched |= _matches(directory, pattern)
            reads[name, split] = {f for f in matched if (split, f) in listed}
            strays = sorted(f for f in matched if (split, f) not in listed)
            if strays:
                problems.append(f"{CARD_NAME}: config {name!r} split {split!r} reads {', '.join(strays[:3])}, "
                                "which manifest.json does not list for that split")
            if name in domains:
                wanted = {shard["path"] for shard in shards if shard["domain"] == name and shard["split"] == split}
                missed = sorted(wanted - matched)
                if missed:
                    problems.append(f"{CARD_NAME}: config {name!r} split {split!r} does not read {', '.join(missed[:3])}")
    for domain in sorted(domains - seen):
        problems.append(f"{CARD_NAME}: no config for domain {domain!r}; `load_dataset(dir, {domain!r})` would fail")
    rows = {shard["path"]: shard["rows"] for shard in shards}
    sizes = {key: sum(rows[f] for f in files) for key, files in reads.items()}
    problems.extend(_size_problems(header.get("dataset_info"), sizes))
    return problems


def _size_problems(infos: Any, sizes: Mapping[tuple[str, str], int]) -> list[str]:
    """dataset_info split sizes against the rows of the listed shards each (config, split) reads."""
    if infos is None:
        return []
    infos = [infos] if isinstance(infos, dict) else infos
    if not isinstance(infos, list):
        return [f"{CARD_NAME}: dataset_info is neither a mapping nor a list"]
    problems = []
    for info in infos:
        if not isinstance(info, dict) or not isinstance(info.get("splits", []), list):
            problems.append(f"{CARD_NAME}: a dataset_info entry is malformed: {str(info)[:120]}")
            continue
        name = info.get("config_name", "default")
        for split in info.get("splits", []):
            if not isinstance(split, dict):
                problems.append(f"{CARD_NAME}: dataset_info of {name!r}: a split entry is not a mapping")
                continue
            expected = sizes.get((name, split.get("name")))
            if expected is not None and split.get("num_examples") != expected:
                problems.append(f"{CARD_NAME}: dataset_info says config {name!r} split {split.get('name')!r} has "
                                f"{split.get('num_examples')} rows, the listed shards it reads hold {expected}")
    return problems
