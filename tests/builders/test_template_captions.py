"""The template captioner for items without attribute labels: category captions that name the
category once and its meta-category when that is a plain name of no class, in varied, stable forms."""

from __future__ import annotations

import re
import subprocess
import sys

from builders.captions.stage import CaptionOptions, annotate
from builders.captions.template import category_caption
from builders.sources.base import SourceItem
from builders.taxonomy import Taxonomy

PETS = ("Abyssinian", "Bengal", "Beagle", "Pug")


def mentions(text: str, name: str) -> int:
    return len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, flags=re.IGNORECASE))


def test_names_the_category_once_and_its_group_when_readable():
    keys = [f"oxford_pets-{k:04d}" for k in range(40)]
    captions = [category_caption("oxford_pets", "Abyssinian", "cat", PETS, key) for key in keys]
    for caption in captions:
        assert mentions(caption, "Abyssinian") == 1 and mentions(caption, "cat") == 1, caption
        assert "an Abyssinian" in caption or "An Abyssinian" in caption  # the article agrees
        assert caption[0].isupper() and caption.endswith(".")
    assert len({c.replace("Abyssinian", "X") for c in captions}) >= 3  # several sentence forms


def test_a_group_that_names_a_class_or_is_no_plain_name_is_left_out():
    flowers = ("pink primrose", "canterbury bells", "moon orchid")
    for meta in ("like canterbury bells", "pink primrose", ""):
        for k in range(12):
            caption = category_caption("oxford_flowers", "pink primrose", meta, flowers, f"r{k}")
            assert mentions(caption, "pink primrose") == 1 and mentions(caption, "canterbury bells") == 0, caption
            assert "group" not in caption and "(" not in caption
    # A bracketed note after the group name is not caption text; a list of kinds is a plain name.
    caption = category_caption("sun397", "abbey", "workplace (office building, factory, lab, etc.)", ("abbey", "bar"), "k")
    assert "workplace" in caption and "factory" not in caption and "(office" not in caption
    caption = category_caption("sun397", "bayou", "water, ice, snow", ("bayou", "bar"), "k")
    assert "water, ice, snow" in caption


def test_domain_phrasing_follows_the_coop_prompts():
    assert re.search(r"\bbanded texture\b", category_caption("dtd", "banded", "stripes", ("banded", "dotted"), "k"))
    ucf = category_caption("ucf101", "Apply Eye Makeup", "", ("Apply Eye Makeup", "Archery"), "k")
    assert "a person doing Apply Eye Makeup" in ucf or "A person doing Apply Eye Makeup" in ucf
    food = category_caption("food-101", "apple pie", "", ("apple pie", "baklava"), "k")
    assert not re.search(r"\ban? apple pie\b", food, flags=re.IGNORECASE)  # a dish, like CoOp's "a photo of {}"


def test_the_form_depends_on_seed_and_record_only_and_is_stable_across_processes():
    here = [category_caption("oxford_pets", "Pug", "dog", PETS, f"k{k}", seed=3) for k in range(20)]
    code = (
        "from builders.captions.template import category_caption as c;"
        "print('|'.join(c('oxford_pets', 'Pug', 'dog', ('Abyssinian', 'Bengal', 'Beagle', 'Pug'), f'k{k}', seed=3)"
        " for k in range(20)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert there.split("|") == here
    other_seed = [category_caption("oxford_pets", "Pug", "dog", PETS, f"k{k}", seed=4) for k in range(20)]
    assert other_seed != here


def test_stage_writes_category_captions_and_category_swaps_for_items_without_labels(tmp_path):
    taxonomy = Taxonomy("oxford_pets", PETS, {"Abyssinian": "cat", "Bengal": "cat", "Beagle": "dog", "Pug": "dog"})
    items = [
        SourceItem("oxford_pets", "test", c, PETS.index(c), taxonomy.meta_category(c), f"oxford_pets/images/{c}_1.jpg",
                   "oxford_pets", image_bytes=b"")
        for c in PETS
    ]
    labelled = SourceItem("oxford_pets", "test", "Pug", 3, "dog", "oxford_pets/images/Pug_2.jpg", "oxford_pets",
                          image_bytes=b"", extra={"attributes": "black"})
    result = annotate(items + [labelled], [b""] * 5, ["s"] * 5, taxonomy, CaptionOptions(captioner="template"), tmp_path)
    assert result.report["captioned_category_template"] == 4
    assert list(result.rejected) == [4] and "not {type: value}" in result.rejected[4]
    sibling = {"Abyssinian": "Bengal", "Bengal": "Abyssinian", "Beagle": "Pug", "Pug": "Beagle"}
    for item in items:
        assert item.attributes == []
        assert [(n["kind"], n["category"]) for n in item.negatives] == [("category", sibling[item.category])]
        assert mentions(item.negatives[0]["text"], item.category) == 0
