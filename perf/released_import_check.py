"""Import the released FDRD test files through the real `fdrd build --captioner fdrd-json`, and audit
the raw files and the build (needs ../shared; exits without it).

There are no real images here, so a scratch CoOp data root is drawn: one small distinct picture at
every path a released record names, and the domain's split files listing them as the test split.
Prints the `fdrd audit` counts of each raw file and of its imported domain side by side.

Usage: [FDRD_RELEASED=DIR] .venv/bin/python perf/released_import_check.py [--work DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# ../shared of a main checkout; FDRD_RELEASED points elsewhere (a worktree has no ../shared).
RELEASED = Path(os.environ.get("FDRD_RELEASED", REPO.parent / "shared" / "reference" / "released-fdrd"))
FILES = {"flower_test.json": "oxford_flowers", "pets_test.json": "oxford_pets", "plane_test.json": "fgvc_aircraft"}
AUDIT_ROWS = ("records", "negatives", "identical_to_positive", "duplicate_negative_records", "in_word_replacements",
              "true_class_survives", "cross_meta_category", "non_words", "repeated_names", "names_other_class")


def picture(seed: int, path: Path) -> None:
    """A distinct 32x32 picture per seed (random pixels: no two are near-duplicates)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (32, 32))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(32 * 32)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def aircraft_class(key: str) -> str:
    cls = re.match(r"^(.+)_\d+$", key).group(1)
    return {"F-16A_B": "F-16A/B", "F_A-18": "F/A-18"}.get(cls, cls)


def draw_root(root: Path, limit: int | None) -> None:
    seed = 0
    for file_name, domain in FILES.items():
        records = list(json.loads((RELEASED / file_name).read_text()).items())[:limit]
        entries, classes = [], {}
        for key, record in records:
            seed += 1
            if domain == "oxford_flowers":
                cls, name = record["class_name"], key.removeprefix(record["class_name"].replace(" ", "_") + "_")
                picture(seed, root / domain / "jpg" / f"{name}.jpg")
                entries.append((f"{name}.jpg", cls))
            elif domain == "oxford_pets":
                cls = re.match(r"^(.+)_\d+$", key).group(1).lower()
                picture(seed, root / domain / "images" / f"{key}.jpg")
                entries.append((f"{key}.jpg", cls))
            else:
                image_id = Path(record["file_path"]).stem
                picture(seed, root / domain / "images" / f"{image_id}.jpg")
                entries.append((image_id, aircraft_class(key)))
            classes.setdefault(entries[-1][1], len(classes))
        if domain == "fgvc_aircraft":
            (root / domain / "variants.txt").write_text("".join(f"{c}\n" for c in classes))
            (root / domain / "images_variant_test.txt").write_text("".join(f"{i} {c}\n" for i, c in entries))
            for split in ("train", "val"):
                (root / domain / f"images_variant_{split}.txt").write_text("")
        else:
            split_file = {"oxford_flowers": "split_zhou_OxfordFlowers.json", "oxford_pets": "split_zhou_OxfordPets.json"}
            test = [[path, classes[cls], cls] for path, cls in entries]
            (root / domain / split_file[domain]).write_text(json.dumps({"train": [], "val": [], "test": test}))


def audit(path: Path) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "fdrd.cli", "audit", str(path), "--json"], capture_output=True,
                         text=True, check=True).stdout
    return {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--limit", type=int, help="records per file (default: all)")
    args = parser.parse_args()
    if not RELEASED.is_dir():
        sys.exit(f"{RELEASED} not found: this check reads the released files in ../shared")
    work = args.work or Path(tempfile.mkdtemp(prefix="fdrd-released-"))
    root, out, captions = work / "data", work / "built", work / "captions"
    draw_root(root, args.limit)
    captions.mkdir(parents=True, exist_ok=True)
    for file_name in FILES:  # the build reads every *.json of --captions; --limit applies there too
        records = dict(list(json.loads((RELEASED / file_name).read_text()).items())[: args.limit])
        (captions / file_name).write_text(json.dumps(records))
    subprocess.run([sys.executable, "-m", "fdrd.cli", "build", "--source", "coop", "--data-root", str(root),
                    "--split", "test", "--captioner", "fdrd-json", "--captions", str(captions), "--out", str(out),
                    "--overwrite"], check=True)
    raw, built = audit(captions), audit(out)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{'count':<28}" + "".join(f"{f:>20}{d:>16}" for f, d in FILES.items()))
    for row in AUDIT_ROWS:
        cells = "".join(f"{str(raw[f][row]):>20}{str(built[d][row]):>16}" for f, d in FILES.items())
        print(f"{row:<28}{cells}")
    for domain in FILES.values():
        captions_report = manifest["domains"][domain]["captions"]
        print(domain, {k: v for k, v in sorted(captions_report.items()) if v})


if __name__ == "__main__":
    main()
