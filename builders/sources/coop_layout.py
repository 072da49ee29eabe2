"""Where each of the nine CoOp domains keeps its images and its fixed split, as CoOp/MaPLe lay them out.

Facts only (folder names, split files, licence notes), taken from KaiyangZhou/CoOp `datasets/*.py`
and DATASETS.md; `coop.py` reads them. Split-file entries are paths relative to `image_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoopDomainLayout:
    folder: str  # the domain folder under the data root, also the FDRD domain name
    image_dir: str  # image folder inside `folder` ("" = the domain folder itself)
    split_file: str | None  # split_zhou_*.json inside `folder`; None for fgvc_aircraft
    license: str  # short note for the `source.license` column

    def describe(self) -> str:
        """The expected layout in one line, for error messages."""
        images = f"{self.folder}/{self.image_dir}/" if self.image_dir else f"{self.folder}/"
        if self.split_file is None:
            return f"{images} with variants.txt and images_variant_{{train,val,test}}.txt in {self.folder}/"
        return f"{images} and {self.folder}/{self.split_file}"


# Aircraft has no split_zhou file: CoOp reads the dataset's own variant lists.
AIRCRAFT_VARIANTS_FILE = "variants.txt"
AIRCRAFT_SPLIT_FILE = "images_variant_{split}.txt"

LAYOUTS: dict[str, CoopDomainLayout] = {
    layout.folder: layout
    for layout in (
        CoopDomainLayout(
            "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "research use; see the Caltech 101 terms"
        ),
        CoopDomainLayout("oxford_pets", "images", "split_zhou_OxfordPets.json", "CC BY-SA 4.0 (Oxford-IIIT Pet)"),
        CoopDomainLayout(
            "stanford_cars", "", "split_zhou_StanfordCars.json", "non-commercial research use; see the Stanford Cars terms"
        ),
        CoopDomainLayout(
            "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "research use; see the Oxford 102 Flowers terms"
        ),
        CoopDomainLayout(
            "food-101", "images", "split_zhou_Food101.json", "research use; images from foodspotting.com, see Food-101 terms"
        ),
        CoopDomainLayout("fgvc_aircraft", "images", None, "non-commercial research use only; see the FGVC-Aircraft terms"),
        CoopDomainLayout("sun397", "SUN397", "split_zhou_SUN397.json", "research use; see the SUN database terms"),
        CoopDomainLayout("dtd", "images", "split_zhou_DescribableTextures.json", "research use; see the DTD terms"),
        CoopDomainLayout("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "research use; see the UCF101 terms"),
    )
}
