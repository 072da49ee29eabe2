"""Taxonomy per domain kind: pets species, car makes, aircraft families, SUN397 hierarchy, and the
text-similarity grouping (checked against a slow, obvious average-linkage reference)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from builders.taxonomy import (
    PET_CAT_BREEDS,
    SpellingGroupsWarning,
    Taxonomy,
    _average_linkage,
    build_taxonomy,
    car_make,
    group_by_text_similarity,
    sun_class_name,
)
from fdrd.errors import FdrdError

DOG_BREEDS = ["american_bulldog", "Yorkshire Terrier", "great_pyrenees", "saint bernard", "pug"]


def test_pets_species_fallback_accepts_any_spelling():
    names = ["abyssinian", "BRITISH_SHORTHAIR", "Maine Coon", "sphynx", *DOG_BREEDS]
    taxonomy = build_taxonomy("oxford_pets", names)
    assert taxonomy.meta_source.startswith("builders/taxonomies/oxford_pets.json")
    assert taxonomy.meta_rule == "dataset hierarchy"
    assert [taxonomy.meta_category(n) for n in names] == ["cat"] * 4 + ["dog"] * len(DOG_BREEDS)
    assert taxonomy.siblings("sphynx") == ["abyssinian", "BRITISH_SHORTHAIR", "Maine Coon"]
    assert taxonomy.category_id("pug") == len(names) - 1


def test_pets_full_breed_list_gives_12_cats_and_25_dogs():
    dogs = [f"dog breed {i}" for i in range(25)]
    taxonomy = build_taxonomy("oxford_pets", [*PET_CAT_BREEDS, *dogs])  # not all in the map: built-in list
    assert taxonomy.meta_source == "built-in list of the 12 cat breeds"
    metas = list(taxonomy.meta_categories.values())
    assert metas.count("cat") == 12 and metas.count("dog") == 25


def test_pets_species_come_from_list_txt_when_present(tmp_path):
    annotations = tmp_path / "oxford_pets" / "annotations"
    annotations.mkdir(parents=True)
    # Deliberately unlike the built-in list, so the test proves the file was read.
    (annotations / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\nBengal_3 1 2 1\npug_10 2 1 2\n")
    taxonomy = build_taxonomy("oxford_pets", ["Bengal", "Pug"], tmp_path)
    assert taxonomy.meta_source == "annotations/list.txt"
    assert taxonomy.meta_categories == {"Bengal": "dog", "Pug": "cat"}


def test_pets_list_txt_not_covering_every_breed_falls_back(tmp_path):
    annotations = tmp_path / "oxford_pets" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "list.txt").write_text("Bengal_3 1 2 1\n")
    taxonomy = build_taxonomy("oxford_pets", ["Bengal", "pug"], tmp_path)
    assert taxonomy.meta_source.startswith("builders/taxonomies/oxford_pets.json")
    assert taxonomy.meta_categories == {"Bengal": "cat", "pug": "dog"}


def test_pets_malformed_list_txt_is_a_clear_error(tmp_path):
    annotations = tmp_path / "oxford_pets" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "list.txt").write_text("Bengal_3 1 cat 1\n")
    with pytest.raises(FdrdError, match=r"list.txt: line 1"):
        build_taxonomy("oxford_pets", ["Bengal"], tmp_path)


def test_duplicate_names_after_normalising_are_refused():
    with pytest.raises(FdrdError, match="not unique"):
        build_taxonomy("dtd", ["banded", "Banded"])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("2012 Aston Martin V8 Vantage Coupe", "Aston Martin"),
        ("2000 AM General Hummer SUV", "AM General"),
        ("2012 Land Rover Range Rover SUV", "Land Rover"),
        ("2012 BMW M3 Coupe", "BMW"),
        ("Tesla Model S Sedan 2012", "Tesla"),  # original order: make first
        ("2007 Rolls-Royce Phantom Sedan", "Rolls-Royce"),
    ],
)
def test_car_make(name, make):
    assert car_make(name) == make


def test_cars_taxonomy_groups_by_make():
    names = ["2012 BMW M3 Coupe", "2012 BMW X6 SUV", "2012 Audi R8 Coupe", "2011 Audi TT Hatchback"]
    taxonomy = build_taxonomy("stanford_cars", names)
    assert taxonomy.siblings("2012 BMW M3 Coupe") == ["2012 BMW X6 SUV"]
    assert taxonomy.meta_category("2011 Audi TT Hatchback") == "Audi"


def _write_aircraft_files(domain_dir, with_manufacturer=True):
    domain_dir.mkdir(parents=True, exist_ok=True)
    (domain_dir / "variants.txt").write_text("707-320\n737-300\n737-400\nA300B4\nA310\n")
    rows = {
        "train": [("1001", "707-320", "Boeing 707", "Boeing"), ("1002", "737-300", "Boeing 737", "Boeing")],
        "test": [
            ("1003", "737-400", "Boeing 737", "Boeing"),
            ("1004", "A300B4", "A300", "Airbus"),
            ("1005", "A310", "A310", "Airbus"),
        ],
    }
    for split, items in rows.items():
        (domain_dir / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v, _, _ in items))
        (domain_dir / f"images_family_{split}.txt").write_text("".join(f"{i} {f}\n" for i, _, f, _ in items))
        if with_manufacturer:
            text = "".join(f"{i} {m}\n" for i, _, _, m in items)
            (domain_dir / f"images_manufacturer_{split}.txt").write_text(text)


def test_aircraft_family_and_manufacturer_joined_per_image_id(tmp_path):
    _write_aircraft_files(tmp_path / "fgvc_aircraft")
    names = ["707-320", "737-300", "737-400", "A300B4", "A310"]
    taxonomy = build_taxonomy("fgvc_aircraft", names, tmp_path)
    assert taxonomy.meta_source.startswith("images_family_")
    # A family of two or more variants is the group; single-variant families pool by manufacturer
    # when it has two of them (A300, A310: Airbus), else stay with their manufacturer (Boeing 707).
    assert taxonomy.meta_categories == {
        "707-320": "Boeing",
        "737-300": "Boeing 737",
        "737-400": "Boeing 737",
        "A300B4": "Airbus",
        "A310": "Airbus",
    }
    assert taxonomy.levels["manufacturer"]["A310"] == "Airbus"
    assert taxonomy.levels["family"]["A310"] == "A310"
    assert taxonomy.siblings("737-300") == ["737-400"]


def test_aircraft_files_without_manufacturer_keep_families(tmp_path):
    _write_aircraft_files(tmp_path / "fgvc_aircraft", with_manufacturer=False)
    taxonomy = build_taxonomy("fgvc_aircraft", ["707-320", "737-300", "A310"], tmp_path)
    assert taxonomy.meta_categories == {"707-320": "Boeing 707", "737-300": "Boeing 737", "A310": "A310"}


def test_aircraft_families_txt_by_model_number(tmp_path):
    domain_dir = tmp_path / "fgvc_aircraft"
    domain_dir.mkdir()
    (domain_dir / "families.txt").write_text("A3\nA330\nBoeing 737\nBoeing 747\n")
    # Variants the shipped map does not know (newer than FGVC), so the families file is read.
    taxonomy = build_taxonomy("fgvc_aircraft", ["A330-800", "A330-900", "737-10", "747-8"], tmp_path)
    assert taxonomy.meta_source.startswith("families.txt")
    # The longest matching model number wins: A330-800 is an A330, not an "A3".
    assert taxonomy.meta_categories == {
        "A330-800": "A330",
        "A330-900": "A330",
        "737-10": "Boeing 737",
        "747-8": "Boeing 747",
    }


def test_aircraft_without_files_uses_the_shipped_map(tmp_path):
    taxonomy = build_taxonomy("fgvc_aircraft", ["737-300", "737-400", "A340-300", "A340-500", "An-12", "Il-76"], tmp_path)
    assert taxonomy.meta_source.startswith("builders/taxonomies/fgvc_aircraft.json")
    assert [taxonomy.meta_category(c) for c in taxonomy.categories] == [
        "Boeing 737", "Boeing 737", "A340", "A340",
        "Soviet-era transport and airliner", "Soviet-era transport and airliner",  # lone makers: by role
    ]
    assert taxonomy.levels["manufacturer"]["An-12"] == "Antonov"


def test_sun_class_name_matches_coop():
    assert sun_class_name("/a/apartment_building/outdoor") == "outdoor apartment_building"
    assert sun_class_name("/a/abbey") == "abbey"


def test_sun397_hierarchy_level_two(tmp_path):
    folder = tmp_path / "sun397" / "hierarchy_three_levels"
    folder.mkdir(parents=True)
    header = "category,indoor,outdoor natural,outdoor man-made,shopping and dining,forest field jungle,houses\n"
    rows = [
        "/a/abbey,0,0,1,0,0,1",
        "/b/bakery/shop,1,0,0,1,0,0",
        "/f/forest/broadleaf,0,1,0,0,1,0",
        "/a/apartment_building/outdoor,0,0,1,0,0,1",
        "/f/field/wild,0,1,0,1,1,0",  # flagged twice: the first level-2 group wins
    ]
    (folder / "three_levels.csv").write_text(header + "\n".join(rows) + "\n")
    names = ["abbey", "shop bakery", "broadleaf forest", "outdoor apartment building", "wild field"]
    taxonomy = build_taxonomy("sun397", names, tmp_path)
    assert taxonomy.meta_source.startswith("SUN397 three-level hierarchy")
    assert taxonomy.meta_categories == {
        "abbey": "houses",
        "shop bakery": "shopping and dining",
        "broadleaf forest": "forest field jungle",
        "outdoor apartment building": "houses",
        "wild field": "shopping and dining",
    }


def test_sun397_without_hierarchy_uses_the_shipped_map():
    taxonomy = build_taxonomy("sun397", ["abbey", "airport terminal", "alley", "amphitheater", "bedroom"])
    assert taxonomy.meta_source.startswith("builders/taxonomies/sun397.json")
    assert taxonomy.meta_categories == {
        "abbey": "cultural or historical building/place",
        "airport terminal": "indoor transportation (vehicle interiors, stations, etc.)",
        "alley": "commercial buildings, shops, markets, cities, and towns",
        "amphitheater": "cultural or historical building/place",
        "bedroom": "home or hotel",
    }


def test_text_similarity_groups_similar_names_and_is_deterministic():
    names = ["red oak", "white oak", "pin oak", "sugar maple", "red maple", "silver maple"]
    first = group_by_text_similarity(names, group_size=3)
    assert first == group_by_text_similarity(list(names), group_size=3)
    assert first["red oak"] == first["white oak"] == first["pin oak"] == "oak"
    assert first["sugar maple"] == first["red maple"] == first["silver maple"] == "maple"


@pytest.mark.parametrize("count", [2, 3, 7, 40, 101])
def test_text_similarity_every_group_has_two_members(count):
    rng = random.Random(count)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(count * 2)]
    names = list(dict.fromkeys(words))[:count]
    groups = group_by_text_similarity(names)
    assert set(groups) == set(names)
    sizes = {g: list(groups.values()).count(g) for g in set(groups.values())}
    assert min(sizes.values()) >= 2


def test_text_similarity_edge_cases():
    assert group_by_text_similarity([]) == {}
    assert group_by_text_similarity(["only one"]) == {"only one": "only one"}
    with pytest.warns(SpellingGroupsWarning, match="grouping them by spelling"):
        taxonomy = build_taxonomy("my_textures", ["banded", "blotchy"])
    assert taxonomy.siblings("banded") == ["blotchy"] and taxonomy.meta_rule == "spelling similarity"


def _reference_average_linkage(similarity: np.ndarray, target: int, max_size: int) -> list[list[int]]:
    """Slow and obvious: recompute every cluster pair's mean pairwise similarity each step."""
    clusters = [[i] for i in range(len(similarity))]
    while len(clusters) > target:
        best = None
        for a, b in itertools.combinations(range(len(clusters)), 2):
            if len(clusters[a]) + len(clusters[b]) > max_size:
                continue
            score = float(np.mean([similarity[i, j] for i in clusters[a] for j in clusters[b]]))
            key = (-score, min(clusters[a]), min(clusters[b]))
            # ties (equal in exact arithmetic) go to the lowest pair of cluster minima
            if best is None or key[0] < best[0] - 1e-9 or (abs(key[0] - best[0]) <= 1e-9 and key[1:] < best[1:3]):
                best = (*key, a, b)
        if best is None:
            break
        a, b = best[3], best[4]
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return sorted(clusters)


@pytest.mark.parametrize("seed", range(8))
def test_average_linkage_matches_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 14))
    # Small integers make many exact ties, the case tie-breaking must get right.
    values = rng.integers(0, 4, size=(n, n)).astype(float)
    similarity = (values + values.T) / 2
    target = int(rng.integers(1, n + 1))
    max_size = int(rng.integers(2, n + 2))
    fast = sorted(_average_linkage(similarity, target, max_size))
    assert fast == _reference_average_linkage(similarity, target, max_size)


def test_taxonomy_api_unchanged():
    taxonomy = Taxonomy("d", ("a", "b", "c"), {"a": "x", "b": "x", "c": "y"})
    assert taxonomy.siblings("a") == ["b"] and taxonomy.meta_category("c") == "y"
    with pytest.raises(KeyError):
        taxonomy.category_id("z")
