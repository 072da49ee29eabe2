"""Fixtures for builder tests: a small CoOp-layout data root drawn with PIL, defects included.

`coop_root` returns `CoopRoot(root, facts)`. `facts` says exactly which split entries are which, so
tests can assert exact counts:

    facts["domains"]                 ["oxford_pets", "oxford_flowers"]
    facts["entries"][domain][split]  number of split-file entries (what the source will yield)
    facts["classes"][domain]         CoOp class names in label order
    facts["good"][domain][split]     entries that are valid, distinct images
    facts["defects"][kind]           {"domain", "split", "entry", "original", ...} for each kind:
        corrupt        truncated JPEG (normalization rejects it)
        zero_byte      empty file named .jpg (normalization rejects it)
        not_image      text file named .jpg (normalization rejects it)
        missing        split entry without a file (the source rejects it: "missing file")
        traversal      entry "../../etc/passwd" (the source refuses it; the target file exists)
        exif_rotated   JPEG stored 120x80 with EXIF Orientation=6: upright it is 80x120
        exact_duplicate  byte-identical copy of facts["defects"]["exact_duplicate"]["of"] in train
        near_duplicate   test image re-encoded and resized from train image ["of"] (a leak)
    facts["source_rejections"][domain]  entries the source itself rejects (missing, traversal)
    facts["decode_rejections"][domain]  entries normalization must reject (corrupt, zero, non-image)

`original` is the path relative to the data root, as in SourceItem.original. Every drawing is
seeded, so the bytes are the same on every run.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from PIL import Image, ImageDraw

PET_CLASSES = ["abyssinian", "bengal", "american_bulldog", "yorkshire_terrier"]
PET_FILE_STEMS = ["Abyssinian", "Bengal", "american_bulldog", "yorkshire_terrier"]  # as the dataset names them
FLOWER_NAMES = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
GOOD_PER_CLASS = {"train": 3, "val": 1, "test": 2}


class CoopRoot(NamedTuple):
    root: Path
    facts: dict[str, Any]


def draw_specimen(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A distinct picture per seed: random coloured shapes on a random background."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0] - 10), rng.randrange(size[1] - 10)
        box = (x0, y0, x0 + rng.randrange(8, size[0] // 2), y0 + rng.randrange(8, size[1] // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 92, **save_args: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **save_args)
    return buffer.getvalue()


def _defect(domain: str, split: str, entry: str, image_dir: str, **more: Any) -> dict[str, Any]:
    return {"domain": domain, "split": split, "entry": entry, "original": f"{domain}/{image_dir}/{entry}", **more}


def make_coop_root(root: Path) -> dict[str, Any]:
    """Draw the data root under `root` and return its facts (see the module docstring)."""
    facts: dict[str, Any] = {
        "domains": ["oxford_pets", "oxford_flowers"],
        "entries": {},
        "classes": {},
        "good": {},
        "defects": {},
        "source_rejections": {},
        "decode_rejections": {},
    }
    seed = 1000

    # --- oxford_pets: images/, annotations/list.txt, split_zhou_OxfordPets.json, every defect.
    pets = root / "oxford_pets"
    images = pets / "images"
    images.mkdir(parents=True)
    split_entries: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
    counter = dict.fromkeys(PET_FILE_STEMS, 0)

    def next_name(label: int) -> str:
        stem = PET_FILE_STEMS[label]
        counter[stem] += 1
        return f"{stem}_{counter[stem]}.jpg"

    good: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, per_class in GOOD_PER_CLASS.items():
        for label, class_name in enumerate(PET_CLASSES):
            for _ in range(per_class):
                name = next_name(label)
                seed += 1
                (images / name).write_bytes(jpeg_bytes(draw_specimen(seed)))
                split_entries[split].append([name, label, class_name])
                good[split].append(name)

    defects = facts["defects"]
    first_train = split_entries["train"][0]

    name = next_name(0)
    whole = jpeg_bytes(draw_specimen(7001))
    (images / name).write_bytes(whole[: len(whole) // 2])
    split_entries["train"].append([name, 0, PET_CLASSES[0]])
    defects["corrupt"] = _defect("oxford_pets", "train", name, "images")

    name = next_name(1)
    (images / name).write_bytes(b"")
    split_entries["val"].append([name, 1, PET_CLASSES[1]])
    defects["zero_byte"] = _defect("oxford_pets", "val", name, "images")

    name = next_name(2)
    (images / name).write_text("this is not a picture\n")
    split_entries["test"].append([name, 2, PET_CLASSES[2]])
    defects["not_image"] = _defect("oxford_pets", "test", name, "images")

    name = next_name(3)  # listed, never written
    split_entries["train"].append([name, 3, PET_CLASSES[3]])
    defects["missing"] = _defect("oxford_pets", "train", name, "images")

    name = "../../etc/passwd"
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")  # exists, so only the path is wrong
    split_entries["test"].append([name, 0, PET_CLASSES[0]])
    defects["traversal"] = _defect("oxford_pets", "test", name, "images", index=len(split_entries["test"]) - 1)

    name = next_name(1)
    rotated = draw_specimen(7002, size=(120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    (images / name).write_bytes(jpeg_bytes(rotated, exif=exif.tobytes()))
    split_entries["train"].append([name, 1, PET_CLASSES[1]])
    defects["exif_rotated"] = _defect(
        "oxford_pets", "train", name, "images", orientation=6, stored_size=(120, 80), upright_size=(80, 120)
    )

    original_name, original_label = first_train[0], first_train[1]
    name = next_name(original_label)
    (images / name).write_bytes((images / original_name).read_bytes())
    split_entries["train"].append([name, original_label, PET_CLASSES[original_label]])
    defects["exact_duplicate"] = _defect(
        "oxford_pets", "train", name, "images", of=f"oxford_pets/images/{original_name}"
    )

    source_image = Image.open(images / original_name).convert("RGB")
    near = source_image.resize((source_image.width * 9 // 10, source_image.height * 9 // 10), Image.BILINEAR)
    name = next_name(original_label)
    (images / name).write_bytes(jpeg_bytes(near, quality=80))
    split_entries["test"].append([name, original_label, PET_CLASSES[original_label]])
    defects["near_duplicate"] = _defect(
        "oxford_pets", "test", name, "images", of=f"oxford_pets/images/{original_name}"
    )

    (pets / "split_zhou_OxfordPets.json").write_text(json.dumps(split_entries, indent=1))
    annotations = pets / "annotations"
    annotations.mkdir()
    lines = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog"]
    for label, stem in enumerate(PET_FILE_STEMS):
        species = 1 if label < 2 else 2
        lines.append(f"{stem}_1 {label + 1} {species} {label + 1}")
    (annotations / "list.txt").write_text("\n".join(lines) + "\n")

    facts["entries"]["oxford_pets"] = {s: len(e) for s, e in split_entries.items()}
    facts["classes"]["oxford_pets"] = list(PET_CLASSES)
    facts["good"]["oxford_pets"] = good
    facts["source_rejections"]["oxford_pets"] = 2  # missing, traversal
    facts["decode_rejections"]["oxford_pets"] = 3  # corrupt, zero_byte, not_image

    # --- oxford_flowers: jpg/, cat_to_name.json, split_zhou_OxfordFlowers.json, all clean.
    flowers = root / "oxford_flowers"
    jpg = flowers / "jpg"
    jpg.mkdir(parents=True)
    flower_entries: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
    flower_good: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    number = 0
    for split, per_class in (("train", 2), ("val", 1), ("test", 2)):
        for label, flower_name in enumerate(FLOWER_NAMES.values()):
            for _ in range(per_class):
                number += 1
                seed += 1
                name = f"image_{number:05d}.jpg"
                (jpg / name).write_bytes(jpeg_bytes(draw_specimen(seed)))
                flower_entries[split].append([name, label, flower_name])
                flower_good[split].append(name)
    (flowers / "split_zhou_OxfordFlowers.json").write_text(json.dumps(flower_entries))
    (flowers / "cat_to_name.json").write_text(json.dumps(FLOWER_NAMES))
    facts["entries"]["oxford_flowers"] = {s: len(e) for s, e in flower_entries.items()}
    facts["classes"]["oxford_flowers"] = list(FLOWER_NAMES.values())
    facts["good"]["oxford_flowers"] = flower_good
    facts["source_rejections"]["oxford_flowers"] = 0
    facts["decode_rejections"]["oxford_flowers"] = 0
    return facts


@pytest.fixture
def coop_root(tmp_path: Path) -> CoopRoot:
    """A CoOp data root with oxford_pets (every defect) and oxford_flowers (clean)."""
    root = tmp_path / "coop-data"
    root.mkdir()
    return CoopRoot(root, make_coop_root(root))


@pytest.fixture
def linked_coop_root(coop_root: CoopRoot, tmp_path: Path) -> CoopRoot:
    """The coop_root datasets reached through symlinks, as CoOp's DATASETS.md has users set them up:
    oxford_pets/ is a link to the whole domain folder, oxford_flowers/ a real folder whose jpg/ is a
    link to the image folder, both pointing outside this data root. Same facts as coop_root."""
    linked = tmp_path / "linked-data"
    linked.mkdir()
    (linked / "oxford_pets").symlink_to(coop_root.root / "oxford_pets", target_is_directory=True)
    flowers = linked / "oxford_flowers"
    flowers.mkdir()
    for path in (coop_root.root / "oxford_flowers").iterdir():
        if path.name == "jpg":
            (flowers / "jpg").symlink_to(path, target_is_directory=True)
        else:
            (flowers / path.name).write_bytes(path.read_bytes())
    return CoopRoot(linked, coop_root.facts)
