"""Categories and meta-categories of a domain, and the sibling categories that negatives swap in.

`Taxonomy` is what every later stage reads (negatives, audit, the benchmark's category weights);
`build_taxonomy` derives one per domain from the domain's own files where they exist:

- oxford_pets: species from `annotations/list.txt` (column SPECIES, 1 = cat, 2 = dog), else the
  dataset's 12 cat breeds are "cat" and every other breed is "dog".
- stanford_cars: the make (the first word after CoOp's leading model year; "Aston Martin",
  "AM General" and "Land Rover" are two-word makes).
- fgvc_aircraft: the family from the dataset's `images_family_*.txt` joined with
  `images_variant_*.txt` on the image id (manufacturer likewise, kept in `levels`); else a variant
  whose name starts with a family's model number from `families.txt`; else text similarity.
- sun397: the second level of the dataset's three-level hierarchy file; else text similarity.
- every other domain: `group_by_text_similarity`.

For the nine CoOp domains a versioned map ships as package data (builders/taxonomies/<domain>.json,
docs/taxonomy.md): from the dataset's own hierarchy where it has one (pets species, car make, aircraft
family/manufacturer, SUN397 level 2, UCF101 action type) and a written semantic grouping where it
has none (Caltech-101, Flowers-102, Food-101, DTD). The dataset's own files in the data root take
precedence when present; the map is used for every class it names. Other domains (image folders,
URL lists) are grouped by a text encoder the user names (`group_by_text_encoder`), else by spelling
with a warning.

`Taxonomy.meta_source` records which rule produced the meta-categories and `Taxonomy.meta_rule` its
kind: "dataset hierarchy", "semantic grouping", "text encoder", "spelling similarity", "user file"
or "none".
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fdrd.errors import FdrdError


@dataclass(frozen=True)
class Taxonomy:
    domain: str
    categories: tuple[str, ...]  # human-readable names; the index is the category_id
    meta_categories: dict[str, str]  # category -> meta-category; "" when the domain has none
    # Which rule produced `meta_categories` ("annotations/list.txt", "text similarity", ...).
    meta_source: str = ""
    # Further grouping levels when the dataset has several (aircraft: {"manufacturer": {...}}).
    levels: dict[str, dict[str, str]] = field(default_factory=dict)
    # The kind of rule behind `meta_source` (RULE_KINDS), for the manifest and the dataset card.
    meta_rule: str = ""

    def category_id(self, category: str) -> int:
        try:
            return self.categories.index(category)
        except ValueError:
            raise KeyError(f"{self.domain}: unknown category {category!r}") from None

    def meta_category(self, category: str) -> str:
        return self.meta_categories.get(category, "")

    def siblings(self, category: str) -> list[str]:
        """Other categories of the same meta-category, in category order; all other categories
        when the domain has no meta-categories."""
        meta = self.meta_category(category)
        return [c for c in self.categories if c != category and self.meta_category(c) == meta]


def name_key(name: str) -> str:
    """The form two spellings of one class name share: "Yorkshire_Terrier" == "yorkshire terrier"."""
    return " ".join(name.replace("_", " ").split()).casefold()


RULE_KINDS = ("dataset hierarchy", "semantic grouping", "text encoder", "spelling similarity", "user file", "none")
# Rules whose groups come from the dataset itself: released files are judged against these only.
NATURAL_RULES = ("dataset hierarchy",)
TAXONOMY_DIR = Path(__file__).with_name("taxonomies")


@lru_cache(maxsize=16)
def shipped_map(domain: str) -> dict[str, Any] | None:
    """The meta-category map shipped for a CoOp domain (builders/taxonomies/<domain>.json), or None."""
    path = TAXONOMY_DIR / f"{domain}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _from_shipped_map(domain: str, names: tuple[str, ...]) -> Taxonomy | None:
    """The taxonomy from the shipped map when it names every class, else None."""
    data = shipped_map(domain)
    if data is None:
        return None
    group_of = {name_key(member): group for group, members in data["groups"].items() for member in members}
    if not all(name_key(n) in group_of for n in names):
        return None
    levels = {
        level: {n: by_key[name_key(n)] for n in names}
        for level, table in data.get("levels", {}).items()
        if (by_key := {name_key(k): v for k, v in table.items()})
    }
    source = f"builders/taxonomies/{domain}.json v{data['version']}: {data['source']}"
    return Taxonomy(domain, names, {n: group_of[name_key(n)] for n in names}, source, levels, data["rule"])


# The 12 cat breeds of the Oxford-IIIT Pet dataset; the other 25 breeds are dogs.
PET_CAT_BREEDS = (
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British Shorthair",
    "Egyptian Mau",
    "Maine Coon",
    "Persian",
    "Ragdoll",
    "Russian Blue",
    "Siamese",
    "Sphynx",
)
CAR_TWO_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")


def build_taxonomy(
    domain: str, class_names: Sequence[str], data_root: Path | None = None, encoder: str | None = None
) -> Taxonomy:
    """The taxonomy of one domain; `class_names` in category_id order, any case, `_` or spaces.

    `data_root` is the folder holding the CoOp domain folders; the domain's own hierarchy files
    are read from `data_root/<domain>/` when present, else the shipped map is used. A domain with
    neither is grouped by meaning with the CLIP text encoder `encoder` (a Hub id or folder), else
    by spelling, with a warning.
    """
    names = tuple(class_names)
    if len({name_key(n) for n in names}) != len(names):
        raise FdrdError(f"{domain}: class names are not unique after normalising case and underscores")
    domain_dir = Path(data_root) / domain if data_root is not None else None
    if domain == "oxford_pets" and domain_dir is not None and (domain_dir / "annotations" / "list.txt").is_file():
        meta, source = _pets_species(names, domain_dir)
        if source == "annotations/list.txt":
            return Taxonomy(domain, names, meta, source, meta_rule="dataset hierarchy")
    if domain == "fgvc_aircraft" and domain_dir is not None and domain_dir.is_dir():
        from_files = _aircraft_from_files(names, domain_dir)
        if from_files is not None:
            return from_files
    if domain == "sun397":
        hierarchy = _sun_hierarchy(domain_dir)
        if hierarchy is not None:
            meta = {n: hierarchy.get(name_key(n), "") for n in names}
            if all(meta.values()):
                return Taxonomy(domain, names, meta, "SUN397 three-level hierarchy (level 2)",
                                meta_rule="dataset hierarchy")
    shipped = _from_shipped_map(domain, names)
    if shipped is not None:
        return shipped
    if domain == "oxford_pets":
        meta, source = _pets_species(names, domain_dir)
        return Taxonomy(domain, names, meta, source, meta_rule="dataset hierarchy")
    if domain == "stanford_cars":
        return Taxonomy(domain, names, {n: car_make(n) for n in names}, "make (first word of the class name)",
                        meta_rule="dataset hierarchy")
    if domain == "fgvc_aircraft" and domain_dir is not None:
        families = _aircraft_by_model_number(names, domain_dir)
        if families is not None:
            return families
    return group_by_meaning(domain, names, encoder)


def group_by_meaning(domain: str, names: tuple[str, ...], encoder: str | None) -> Taxonomy:
    """Meta-categories for classes no map or file groups: by the text encoder's embeddings when one
    is named, else by spelling, which is said in a warning (spelling puts "bonsai" with "brain")."""
    if encoder:
        source = f"text encoder {encoder} (CLIP text embeddings of 'a photo of a <class>.', average linkage)"
        return Taxonomy(domain, names, group_by_text_encoder(names, encoder), source, meta_rule="text encoder")
    if len(names) > 1:
        warnings.warn(
            f"{domain}: no meta-category map for these classes; grouping them by spelling, which groups "
            "names that look alike rather than things that are alike. Name a CLIP text encoder "
            "(--meta-encoder openai/clip-vit-base-patch32) or give a meta-category per class.",
            SpellingGroupsWarning,
            stacklevel=2,
        )
    return Taxonomy(domain, names, group_by_text_similarity(names), "text similarity", meta_rule="spelling similarity")


class SpellingGroupsWarning(UserWarning):
    """Meta-categories were made from spelling because no map, file or text encoder was given."""


def _pets_species(names: tuple[str, ...], domain_dir: Path | None) -> tuple[dict[str, str], str]:
    list_file = domain_dir / "annotations" / "list.txt" if domain_dir is not None else None
    if list_file is not None and list_file.is_file():
        species_by_breed: dict[str, str] = {}
        for line_no, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 3 or fields[2] not in ("1", "2"):
                raise FdrdError(
                    f"{list_file}: line {line_no} is not 'IMAGE CLASS-ID SPECIES BREED-ID' with SPECIES 1 or 2; "
                    "fix or remove the file to fall back to the built-in breed list"
                )
            breed = name_key(fields[0].rsplit("_", 1)[0])
            species_by_breed[breed] = "cat" if fields[2] == "1" else "dog"
        missing = [n for n in names if name_key(n) not in species_by_breed]
        if not missing:
            return {n: species_by_breed[name_key(n)] for n in names}, "annotations/list.txt"
    cats = {name_key(b) for b in PET_CAT_BREEDS}
    return {n: "cat" if name_key(n) in cats else "dog" for n in names}, "built-in list of the 12 cat breeds"


def car_make(name: str) -> str:
    """The make of a Stanford Cars class: "2012 Aston Martin V8 Vantage Coupe" -> "Aston Martin"."""
    words = name.replace("_", " ").split()
    if words and re.fullmatch(r"(19|20)\d\d", words[0]):
        words = words[1:]  # CoOp moves the model year to the front
    if not words:
        return ""
    for make in CAR_TWO_WORD_MAKES:
        if name_key(" ".join(words[:2])) == name_key(make):
            return make
    return words[0]


def _read_id_table(path: Path) -> dict[str, str]:
    """`images_<level>_<split>.txt`: "<image id> <value with spaces>" per line."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        image_id, _, value = line.strip().partition(" ")
        if image_id and value:
            table[image_id] = value.strip()
    return table


def _aircraft_level_by_variant(domain_dir: Path, level: str) -> dict[str, str]:
    """variant name key -> family/manufacturer, joined per image id over every split file present."""
    by_variant: dict[str, str] = {}
    for variant_file in sorted(domain_dir.glob("images_variant_*.txt")):
        level_file = domain_dir / variant_file.name.replace("_variant_", f"_{level}_")
        if not level_file.is_file():
            continue
        levels = _read_id_table(level_file)
        for image_id, variant in _read_id_table(variant_file).items():
            if image_id in levels:
                by_variant.setdefault(name_key(variant), levels[image_id])
    return by_variant


# Canadair is Bombardier's: their single-variant families pool under one maker.
_AIRCRAFT_MAKER_POOLS = {"Canadair": "Bombardier", "Bombardier Aerospace": "Bombardier"}


def _aircraft_from_files(names: tuple[str, ...], domain_dir: Path) -> Taxonomy | None:
    """Families (and manufacturers) read from the FGVC files, grouped by the shipped map's rule:
    the family when it has two or more variants in the dataset, else the manufacturer's pool of
    single-variant families, else the role the shipped map gives."""
    domain = "fgvc_aircraft"
    family = _aircraft_level_by_variant(domain_dir, "family")
    manufacturer = _aircraft_level_by_variant(domain_dir, "manufacturer")
    if not family or not all(name_key(n) in family for n in names):
        return None
    levels = {"family": {n: family[name_key(n)] for n in names}}
    if manufacturer and all(name_key(n) in manufacturer for n in names):
        levels["manufacturer"] = {n: manufacturer[name_key(n)] for n in names}
    shipped = shipped_map(domain) or {"groups": {}, "group_rules": {}}
    roles = {name_key(m): g for g, ms in shipped["groups"].items() if shipped["group_rules"].get(g) == "role" for m in ms}
    members = Counter(family.values())  # variants per family over every variant the files name
    pools = Counter(
        _AIRCRAFT_MAKER_POOLS.get(manufacturer[v], manufacturer[v])
        for v, f in family.items() if members[f] < 2 and v in manufacturer
    )
    meta = {}
    for n in names:
        key = name_key(n)
        maker = _AIRCRAFT_MAKER_POOLS.get(manufacturer.get(key, ""), manufacturer.get(key, ""))
        if members[family[key]] >= 2 or not maker:
            meta[n] = family[key]
        elif pools[maker] >= 2:
            meta[n] = maker
        else:
            meta[n] = roles.get(key, maker)
    source = "images_family_*.txt and images_manufacturer_*.txt joined with images_variant_*.txt"
    return Taxonomy(domain, names, meta, source, levels, "dataset hierarchy")


def _aircraft_by_model_number(names: tuple[str, ...], domain_dir: Path) -> Taxonomy | None:
    families_file = domain_dir / "families.txt"
    if not families_file.is_file():
        return None
    families = [f.strip() for f in families_file.read_text(encoding="utf-8").splitlines() if f.strip()]
    meta = {n: _family_by_model_number(n, families) for n in names}
    if not all(meta.values()):
        return None
    source = "families.txt (variant starts with the family's model number)"
    return Taxonomy("fgvc_aircraft", names, meta, source, meta_rule="dataset hierarchy")


def _family_by_model_number(variant: str, families: list[str]) -> str:
    """The family whose model number (its last word, e.g. "737" of "Boeing 737") begins the
    variant name ("737-300"); the longest such number wins so that "A330" beats "A3"."""
    best = ""
    best_len = 0
    for family in families:
        model = family.split()[-1]
        if name_key(variant).startswith(name_key(model)) and len(model) > best_len:
            best, best_len = family, len(model)
    return best


SUN_HIERARCHY_FILES = ("hierarchy_three_levels/three_levels.csv", "three_levels.csv")


def _sun_hierarchy(domain_dir: Path | None) -> dict[str, str] | None:
    """class name key -> level-2 scene group, from the SUN397 three-level hierarchy CSV.

    The CSV has a header row `category, <3 level-1 columns>, <16 level-2 columns>` and one row per
    scene ("/a/apartment_building/outdoor") with 0/1 flags. A scene flagged in several level-2 groups
    gets the first one, so the result is deterministic.
    """
    if domain_dir is None:
        return None
    path = next((domain_dir / p for p in SUN_HIERARCHY_FILES if (domain_dir / p).is_file()), None)
    if path is None:
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if len(rows) < 2 or len(rows[0]) < 5:
        raise FdrdError(f"{path}: expected a header 'category, <level-1 groups>, <level-2 groups>' and rows")
    level2_names = rows[0][4:]
    hierarchy = {}
    for row_no, row in enumerate(rows[1:], 2):
        flags = (row[4:] + [""] * len(level2_names))[: len(level2_names)]  # short rows: missing flags are 0
        flagged = [g for g, f in zip(level2_names, flags, strict=True) if f.strip() == "1"]
        if not flagged:
            raise FdrdError(f"{path}: row {row_no} ({row[0]}) has no level-2 group flagged")
        hierarchy[name_key(sun_class_name(row[0]))] = flagged[0].strip()
    return hierarchy


def sun_class_name(scene_path: str) -> str:
    """CoOp's SUN397 class name for a scene path: "/a/apartment_building/outdoor" ->
    "outdoor apartment_building" (first letter dropped, words like indoor/outdoor put first)."""
    parts = scene_path.strip().strip("/").split("/")[1:]
    return " ".join(reversed(parts))


# ---------------------------------------------------------------------------------------------
# Text-similarity grouping


# English compound names put the kind last ("red oak", "apple pie"), so the last word counts double.
HEAD_WORD_WEIGHT = 2


def _char_ngram_tfidf(names: Sequence[str], n: int = 3) -> np.ndarray:
    """L2-normalised TF-IDF rows over character n-grams of each padded word ("^pie$")."""
    grams_per_name = []
    for name in names:
        grams: dict[str, int] = {}
        words = name_key(name).replace("-", " ").split()
        for position, word in enumerate(words):
            weight = HEAD_WORD_WEIGHT if position == len(words) - 1 else 1
            padded = f"^{word}$"
            for i in range(max(1, len(padded) - n + 1)):
                gram = padded[i : i + n]
                grams[gram] = grams.get(gram, 0) + weight
        grams_per_name.append(grams)
    vocabulary = sorted({g for grams in grams_per_name for g in grams})
    column = {g: i for i, g in enumerate(vocabulary)}
    counts = np.zeros((len(names), len(vocabulary)))
    for row, grams in enumerate(grams_per_name):
        for gram, count in grams.items():
            counts[row, column[gram]] = count
    document_frequency = (counts > 0).sum(axis=0)
    idf = np.log((1 + len(names)) / (1 + document_frequency)) + 1.0
    weights = counts * idf
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    return weights / np.where(norms == 0, 1.0, norms)


def group_by_text_similarity(names: Sequence[str], group_size: int = 6) -> dict[str, str]:
    """Meta-categories for a domain that has none: class names grouped by spelling similarity.

    Rule: character 3-gram TF-IDF vectors (the last word, the head noun, counted twice), cosine similarity, average-linkage agglomerative
    clustering down to round(len/group_size) groups, never merging past 2*group_size members (which
    stops one long chain from swallowing the domain); ties merge the pair with the lowest indices,
    so the result depends only on the names and their order. Then every singleton group joins
    the group it is most similar to, so each group has >= 2 members whenever len(names) >= 2.
    A group is named by the word most of its members share, else by its most central member.
    """
    names = list(names)
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: name_key(names[0])}
    vectors = _char_ngram_tfidf(names)
    similarity = vectors @ vectors.T
    target = max(1, round(len(names) / group_size))
    clusters = _average_linkage(similarity, target, max_size=2 * group_size)
    clusters = _absorb_singletons(clusters, similarity)
    return _labelled(names, clusters, similarity)


def _labelled(names: list[str], clusters: list[list[int]], similarity: np.ndarray) -> dict[str, str]:
    """Class -> group label, groups in order of their first member."""
    meta: dict[str, str] = {}
    used: dict[str, int] = {}
    for members in sorted(clusters, key=min):
        label = _group_label([names[i] for i in members], similarity[np.ix_(members, members)])
        used[label] = used.get(label, 0) + 1
        if used[label] > 1:
            label = f"{label} ({used[label]})"
        for i in members:
            meta[names[i]] = label
    return meta


def group_by_text_encoder(names: Sequence[str], encoder: str, group_size: int = 6) -> dict[str, str]:
    """Meta-categories by meaning: cosine similarity of a CLIP text encoder's embeddings of
    "a photo of a <class>.", clustered like `group_by_text_similarity` (average linkage down to
    round(len/group_size) groups, none past 2*group_size, singletons absorbed). `encoder` is a Hub id
    or a local folder of a CLIP checkpoint, loaded with transformers (nothing of benchmark/)."""
    names = list(names)
    if len(names) < 2:
        return {n: name_key(n) for n in names}
    similarity = _encoder_similarity(tuple(names), encoder)
    clusters = _average_linkage(similarity, max(1, round(len(names) / group_size)), max_size=2 * group_size)
    clusters = _absorb_singletons(clusters, similarity)
    return _labelled(names, clusters, similarity)


def _encoder_similarity(names: tuple[str, ...], encoder: str) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        # use_safetensors: a folder or repository with only pickled weights is refused, never unpickled.
        model = CLIPTextModelWithProjection.from_pretrained(encoder, use_safetensors=True).eval()
    except (OSError, ValueError) as error:
        raise FdrdError(f"cannot load the CLIP text encoder {encoder!r} ({error}); pass a CLIP checkpoint "
                        "(Hub id or folder) to --meta-encoder") from None
    prompts = [f"a photo of a {' '.join(name_key(n).split())}." for n in names]
    limit = model.config.max_position_embeddings
    with torch.no_grad():
        batch = tokenizer(prompts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        embeddings = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).text_embeds
    vectors = torch.nn.functional.normalize(embeddings.float(), dim=-1).numpy()
    return vectors @ vectors.T


TIE_TOLERANCE = 1e-9


def _average_linkage(similarity: np.ndarray, target: int, max_size: int) -> list[list[int]]:
    n = len(similarity)
    clusters: list[list[int]] = [[i] for i in range(n)]
    linkage = similarity.astype(float).copy()
    active = np.ones(n, dtype=bool)
    sizes = np.ones(n, dtype=int)
    while active.sum() > target:
        allowed = np.outer(active, active) & (sizes[:, None] + sizes[None, :] <= max_size)
        masked = np.where(allowed, linkage, -np.inf)
        np.fill_diagonal(masked, -np.inf)
        best = masked.max()
        if best == -np.inf:
            break  # every remaining merge would exceed max_size
        # Lowest (i, j) among ties (argwhere is row-major); the tolerance makes averages that are
        # equal in exact arithmetic tie even when float rounding of the running means differs.
        i, j = (int(v) for v in np.argwhere(masked >= best - TIE_TOLERANCE)[0])
        i, j = min(i, j), max(i, j)
        size_i, size_j = len(clusters[i]), len(clusters[j])
        merged_row = (linkage[i] * size_i + linkage[j] * size_j) / (size_i + size_j)
        linkage[i, :] = merged_row
        linkage[:, i] = merged_row
        clusters[i] = sorted(clusters[i] + clusters[j])
        clusters[j] = []
        sizes[i] += sizes[j]
        active[j] = False
    return [c for c in clusters if c]


def _absorb_singletons(clusters: list[list[int]], similarity: np.ndarray) -> list[list[int]]:
    clusters = [list(c) for c in clusters]
    while len(clusters) > 1:
        singles = [k for k, c in enumerate(clusters) if len(c) == 1]
        if not singles:
            break
        k = singles[0]
        member = clusters[k][0]
        others = [o for o in range(len(clusters)) if o != k]
        mean_sim = [similarity[member, clusters[o]].mean() for o in others]
        target = others[int(np.argmax(mean_sim))]
        clusters[target] = sorted(clusters[target] + [member])
        del clusters[k]
    return clusters


def _group_label(members: list[str], similarity: np.ndarray) -> str:
    word_count: dict[str, int] = {}
    for name in members:
        for word in set(name_key(name).split()):
            word_count[word] = word_count.get(word, 0) + 1
    best_word = min(word_count, key=lambda w: (-word_count[w], w))
    if word_count[best_word] * 2 > len(members) and len(best_word) > 2:
        return best_word
    central = int(np.argmax(similarity.sum(axis=1)))
    return f"like {name_key(members[central])}"
