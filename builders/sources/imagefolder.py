"""The image-folder source: `root/<category>/<image>` (or `root/<split>/<category>/<image>`).

One domain per root, named after the folder (or the `domain` option). Categories are the
sub-folder names in sorted order (category_id = position); an optional `root/meta.json` maps every
category folder name to its meta-category; without it, categories are grouped by the CLIP text
encoder `meta_encoder` names, else by spelling with a warning (builders/taxonomy.py). Without split folders, each image's split follows from a
hash of its path relative to the root: 70% train, 10% val, 20% test, stable when files are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from builders.sources import check_splits
from builders.sources.base import Rejection, SourceItem
from builders.taxonomy import Taxonomy, group_by_meaning
from fdrd.errors import FdrdError
from fdrd.untrusted import read_json_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FOLDER_SPLITS = ("train", "val", "test")
# Cumulative upper bounds of the hash fraction for each split when the root has no split folders.
HASH_SPLIT_BOUNDS = (("train", 0.7), ("val", 0.8), ("test", 1.0))
META_FILE = "meta.json"


def hash_split(relative_path: str) -> str:
    """The split of a file by a hash of its root-relative path: the same file always lands in the
    same split, whatever else the folder holds."""
    fraction = int.from_bytes(hashlib.sha256(relative_path.encode()).digest()[:8], "big") / 2**64
    return next(split for split, bound in HASH_SPLIT_BOUNDS if fraction < bound)


def readable_folder_name(folder: str) -> str:
    return " ".join(folder.replace("_", " ").split())


class ImageFolderSource:
    name = "imagefolder"

    def __init__(self, data_root: Path, domains: Sequence[str] | None = None, domain: str | None = None,
                 meta_encoder: str | None = None):
        self.root = Path(data_root)
        if not self.root.is_dir():
            raise FdrdError(f"{self.root}: not a folder; an image folder is <root>/<category>/<images>")
        self.domain = domain or self.root.resolve().name
        if domains is not None and list(dict.fromkeys(domains)) != [self.domain]:
            raise FdrdError(
                f"unknown domain {', '.join(map(repr, domains))} in image folder {self.root}; known domains: {self.domain}"
            )
        self.split_folders = any((self.root / s).is_dir() for s in FOLDER_SPLITS)
        category_roots = [self.root / s for s in FOLDER_SPLITS] if self.split_folders else [self.root]
        folders = sorted({p.name for r in category_roots if r.is_dir() for p in r.iterdir() if _visible_dir(p)})
        if not folders:
            raise FdrdError(f"{self.root}: no category folders; expected <root>/<category>/<image files>")
        self.folders = folders
        names = tuple(readable_folder_name(f) for f in folders)
        if len(set(names)) != len(names):
            raise FdrdError(f"{self.root}: two category folders give the same name after replacing '_' by spaces")
        meta = self._read_meta(folders)
        if meta:
            self._taxonomy = Taxonomy(self.domain, names, {readable_folder_name(f): meta[f] for f in folders},
                                      META_FILE, meta_rule="user file")
        else:
            self._taxonomy = group_by_meaning(self.domain, names, meta_encoder)
        self._files = self._list_files()

    def _read_meta(self, folders: list[str]) -> dict[str, str]:
        path = self.root / META_FILE
        if not path.is_file():
            return {}
        meta = read_json_file(path, "it maps category folder -> meta-category")
        if not isinstance(meta, dict) or not all(isinstance(v, str) and v for v in meta.values()):
            raise FdrdError(f"{path}: expected an object mapping each category folder to a meta-category name")
        missing = [f for f in folders if f not in meta]
        if missing:
            raise FdrdError(f"{path}: no meta-category for {', '.join(missing[:5])}; add every category folder")
        return meta

    def _list_files(self) -> list[tuple[str, str, Path, str]]:
        """(split, category folder, file, root-relative path) in sorted order; without split folders
        the split comes from the path's hash, computed here once per file."""
        files = []
        if self.split_folders:
            for split in FOLDER_SPLITS:
                for folder in self.folders:
                    for path in _files_in(self.root / split / folder):
                        files.append((split, folder, path, path.relative_to(self.root).as_posix()))
        else:
            for folder in self.folders:
                for path in _files_in(self.root / folder):
                    relative = path.relative_to(self.root).as_posix()
                    files.append((hash_split(relative), folder, path, relative))
        return files

    def domains(self) -> list[str]:
        return [self.domain]

    def taxonomy(self, domain: str) -> Taxonomy:
        self._check_domain(domain)
        return self._taxonomy

    def _check_domain(self, domain: str) -> None:
        if domain != self.domain:
            raise FdrdError(f"unknown domain {domain!r} in image folder {self.root}; known domains: {self.domain}")

    def count_items(self, domain: str, splits: Sequence[str]) -> int:
        return sum(1 for _ in self._selected(domain, splits))

    def _selected(self, domain: str, splits: Sequence[str]) -> Iterator[tuple[str, str, Path, str]]:
        self._check_domain(domain)
        for split in check_splits(splits):  # `pretrain` selects nothing: folders have no such split
            yield from (file for file in self._files if file[0] == split)

    def iter_items(self, domain: str, splits: Sequence[str]) -> Iterator[SourceItem | Rejection]:
        root = self.root.resolve()
        for split, folder, path, relative in self._selected(domain, splits):
            original = f"{self.domain}/{relative}"
            if not path.resolve().is_relative_to(root):
                yield Rejection(domain, split, original, f"{relative} links outside the image folder; refusing")
                continue
            if path.is_dir():  # reported, not skipped: a folder named x.jpg, or images one level too deep
                yield Rejection(domain, split, original, f"{relative} is a folder, not an image file; its files "
                                "are not read (images go directly in <root>/<category>/)")
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                reason = f"not an image file type ({path.suffix or 'no extension'}): {relative}"
                yield Rejection(domain, split, original, reason)
                continue
            category = readable_folder_name(folder)
            yield SourceItem(
                domain=domain,
                split=split,
                category=category,
                category_id=self._taxonomy.category_id(category),
                meta_category=self._taxonomy.meta_category(category),
                original=original,
                dataset=f"imagefolder:{self.root.resolve().name}",
                image_path=str(path),
            )


def _visible_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


def _files_in(folder: Path) -> list[Path]:
    """Entries of a category folder, sorted; hidden ones (.DS_Store) are not inputs. Sub-folders are
    listed too, so that the build reports them instead of skipping them silently."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
