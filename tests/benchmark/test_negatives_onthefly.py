"""Negatives for DCAR's batches: from the `negatives` column or made on the fly; never the positive, even for
adversarial records; half category swaps with siblings, half attribute swaps; ids and kinds in the batch."""

from __future__ import annotations

import random

import pytest
import torch

from benchmark.data import SplitBatches
from benchmark.methods.base import resolve_run
from benchmark.negatives import NegativeSampler, category_swap

METAS = {"bellflower": ["ring bellflower", "dot bellflower", "bar bellflower"], "prism": ["three prism", "four prism"]}


def record(caption, category, meta, spans=(), column=()):
    attributes = []
    for name, value in spans:
        start = caption.index(value)
        attributes.append({"name": name, "value": value, "char_start": start, "char_end": start + len(value)})
    return {"caption": caption, "category": category, "meta": meta, "attributes": attributes,
            "negatives": [dict(zip(("text", "kind", "category"), row, strict=True)) for row in column]}


def sampler(records, m=4):
    return NegativeSampler([r["caption"] for r in records], [r["category"] for r in records],
                           [r["meta"] for r in records], [r["attributes"] for r in records],
                           [r["negatives"] for r in records], m)


def same_text(a, b):
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def draws(pool, index, times=40):
    return [pool.draw(index, random.Random(seed)) for seed in range(times)]


# ------------------------------------------------------------------ by hand
def test_category_swaps_are_whole_word_and_fix_the_article():
    assert category_swap("a three-sided prism near a three-sided prism", "three-sided prism", "eight-sided prism") == \
        "an eight-sided prism near an eight-sided prism"
    assert category_swap("Three prism, left", "three prism", "four prism") == "Four prism, left"
    # "pointed starflower" is not a word of "three-pointed starflower"; a name absent gives nothing.
    assert category_swap("a three-pointed starflower", "pointed starflower", "spiky starflower") is None
    assert category_swap("a photo of a leaf", "oak", "elm") is None
    assert category_swap("an oak_tree in a park", "oak tree", "Apple tree") == "an Apple tree in a park"


def test_on_the_fly_makes_half_sibling_swaps_and_half_attribute_swaps():
    records = [
        record("a small red ring bellflower on a dark background", "ring bellflower", "bellflower",
               [("size", "small"), ("colour", "red"), ("background", "dark")]),
        record("a large blue dot bellflower on a sandy background", "dot bellflower", "bellflower",
               [("size", "large"), ("colour", "blue"), ("background", "sandy")]),
        record("a green bar bellflower", "bar bellflower", "bellflower", [("colour", "green")]),
        record("a three prism", "three prism", "prism"),
        record("a four prism", "four prism", "prism"),
    ]
    pool = sampler(records)
    for negatives in draws(pool, 0):
        assert [n.kind for n in negatives] == ["category", "category", "attribute", "attribute"]
        for negative in negatives:
            assert not same_text(negative.text, records[0]["caption"])
            if negative.kind == "category":
                assert negative.category in ("dot bellflower", "bar bellflower")  # siblings, not prisms
                assert negative.text == records[0]["caption"].replace("ring bellflower", negative.category)
            else:
                assert negative.category == "ring bellflower"
                # Exactly one attribute changed, to another value of its name seen in the split.
                changed = [(a, b) for a, b in zip(records[0]["caption"].split(), negative.text.split(), strict=True) if a != b]
                assert len(changed) == 1
                assert changed[0][1] in {"small", "large", "red", "blue", "green", "dark", "sandy"} - {changed[0][0]}
        assert len({n.text for n in negatives}) == 4
    # m = 3: the category view takes the extra slot.
    assert [n.kind for n in sampler(records, m=3).draw(0, random.Random(0))] == ["category", "category", "attribute"]


def test_adversarial_records_never_give_the_positive_back():
    records = [
        # A sibling whose name equals the category's text (case and separators aside).
        record("a Wheaten terrier on a lawn", "wheaten terrier", "terrier", column=[]),
        record("a wheaten_terrier", "Wheaten_Terrier", "terrier"),
        # A sibling whose name contains the true name: the true name would survive the swap.
        record("a cocker spaniel in the snow", "cocker spaniel", "spaniel"),
        record("an english cocker spaniel", "english cocker spaniel", "spaniel"),
        # A caption without its category name, and a meta-category of one.
        record("a small dog on a red rug", "beagle", "hound", [("size", "small"), ("colour", "red")]),
        record("a large dog on a blue rug", "basset", "hound", [("size", "large"), ("colour", "blue")]),
        record("a lonely axolotl", "axolotl", "salamander"),
        # Column negatives with the released files' defects: the positive itself (in other case), a duplicate,
        # a swap in which the true class survives.
        record("a pug on a sofa", "pug", "toy", column=[
            ("A pug on a  sofa", "category", "boxer"), ("a boxer on a sofa", "category", "boxer"),
            ("a boxer on a sofa", "category", "boxer"), ("a pug on a sofa, not a boxer", "category", "boxer"),
            ("a pug on a bed", "attribute", "pug")]),
        record("a boxer", "boxer", "toy"),
    ]
    pool = sampler(records)
    for index, own in enumerate(records):
        for negatives in draws(pool, index, times=25):
            texts = [n.text for n in negatives]
            assert len({" ".join(t.lower().split()) for t in texts}) == len(texts)
            for negative in negatives:
                assert not same_text(negative.text, own["caption"]), (index, negative)
                if negative.kind == "category":
                    assert own["category"].replace("_", " ").lower() not in negative.text.lower().replace("_", " ")
    # The same-name category is never offered as a sibling (the domain's others stand in).
    assert "Wheaten_Terrier" not in pool.siblings["wheaten terrier"] and pool.siblings["wheaten terrier"]
    assert "wheaten terrier" not in pool.siblings["Wheaten_Terrier"]
    # The caption without its category's name gets attribute swaps only (small -> large, red -> blue).
    assert sorted(n.text for n in pool.draw(4, random.Random(0))) == ["a large dog on a red rug",
                                                                     "a small dog on a blue rug"]
    # A meta-category of one borrows the domain's other categories (as the builder does).
    assert "axolotl" not in pool.siblings["axolotl"] and len(pool.siblings["axolotl"]) == len(records) - 1
    assert all(n.kind == "category" for n in pool.draw(6, random.Random(0)))
    # Column first: of its five, only the sound category swap and the attribute swap survive.
    assert sorted(n.text for n in pool.draw(7, random.Random(0))) == ["a boxer on a sofa", "a pug on a bed"]


def test_column_negatives_are_preferred_and_filled_when_short():
    records = [
        record("a small ring bellflower", "ring bellflower", "bellflower", [("size", "small")], column=[
            ("a small dot bellflower", "category", "dot bellflower"), ("a large ring bellflower", "attribute",
                                                                       "ring bellflower")]),
        record("a large dot bellflower", "dot bellflower", "bellflower", [("size", "large")]),
        record("a bar bellflower", "bar bellflower", "bellflower"),
    ]
    negatives = sampler(records).draw(0, random.Random(0))
    texts = [n.text for n in negatives]
    assert "a small dot bellflower" in texts and "a large ring bellflower" in texts
    # One more category swap made on the fly; the attribute view has no other value to offer.
    assert "a small bar bellflower" in texts and len(texts) == 3


# ------------------------------------------------------------------ in the batch
def dcar(backbone, **overrides):
    spec = resolve_run("dcar", overrides)
    torch.manual_seed(0)
    return spec.method_cls(backbone, spec.config)


def test_training_batches_carry_tokenized_negatives_with_category_ids_and_kinds(tiny_backbone, make_toy_split):
    split = make_toy_split(METAS, per_category=2)
    method = dcar(tiny_backbone)
    batches = SplitBatches(split, method, training=True)
    torch.manual_seed(0)
    rows = [0, 2, 7, 9]  # bar and dot bellflower, ring bellflower, three prism
    batch = batches.batch(rows)
    ids_of = dict(zip(split["category"], split["category_id"], strict=True))
    assert batch["negative_mask"].shape == (4, 4) and batch["negative_mask"].all()
    flat = [text for row in batch["negative_texts"] for text in row]
    expected = method.tokenize(flat)
    assert torch.equal(batch["negative_input_ids"], expected["input_ids"])
    assert torch.equal(batch["negative_attention_mask"], expected["attention_mask"])
    for i, row in enumerate(rows):
        own = split[row]
        for c, text in enumerate(batch["negative_texts"][i]):
            assert not same_text(text, own["caption"])
            kind = int(batch["negative_kind"][i, c])
            named = [category for category in ids_of if category in text]
            if kind == 0:  # category swap: a sibling of the same meta-category, with that sibling's id
                (sibling,) = [category for category in named if category != own["category"]]
                assert split["meta_category"][split["category"].index(sibling)] == own["meta_category"]
                assert int(batch["negative_category_id"][i, c]) == ids_of[sibling]
            else:
                assert kind == 1 and named == [own["category"]]
                assert int(batch["negative_category_id"][i, c]) == own["category_id"]
        # Two sibling swaps when the meta-category has two siblings (bellflowers), one when it has one (prisms);
        # attribute swaps fill the rest.
        siblings = len(METAS[own["meta_category"]]) - 1
        assert [int(k) for k in batch["negative_kind"][i]] == [0] * min(2, siblings) + [1] * (4 - min(2, siblings))
    # Reproducible from torch's generator, different from batch to batch.
    torch.manual_seed(0)
    assert batches.batch(rows)["negative_texts"] == batch["negative_texts"]
    assert batches.batch(rows)["negative_texts"] != batch["negative_texts"]


def test_the_negatives_column_is_used_when_a_dataset_has_one(tiny_backbone, synthetic_fdrd):
    from benchmark.data import available_domains, load_split

    split = load_split(synthetic_fdrd, available_domains(synthetic_fdrd)[0], "train").select(range(6))
    method = dcar(tiny_backbone)
    torch.manual_seed(0)
    batch = SplitBatches(split, method, training=True).batch(list(range(6)))
    balanced = 0
    for i in range(6):
        column = split[i]["negatives"]
        kinds = sorted(negative["kind"] for negative in column)
        if kinds == ["attribute", "attribute", "category", "category"]:  # two of each: exactly the column
            balanced += 1
            assert set(batch["negative_texts"][i]) == {negative["text"] for negative in column}
    assert balanced > 0


def test_short_records_mark_empty_slots(tiny_backbone, make_toy_split):
    def strip(rows):
        for row in rows:
            row["attributes"] = []
            row["caption"] = "a thing"  # no category name, no attribute: nothing can be made

    split = make_toy_split(METAS, per_category=1, edit=strip)
    batch = SplitBatches(split, dcar(tiny_backbone), training=True).batch([0, 1])
    assert not batch["negative_mask"].any() and (batch["negative_kind"] == -1).all()
    assert (batch["negative_category_id"] == -1).all()


def test_evaluation_batches_and_ablations_carry_no_negatives(tiny_backbone, make_toy_split):
    split = make_toy_split(METAS, per_category=1)
    assert "negative_texts" not in SplitBatches(split, dcar(tiny_backbone)).batch([0, 1])
    assert "negative_texts" not in SplitBatches(split, dcar(tiny_backbone, lambda_cate=0.0), training=True).batch([0])


@pytest.mark.parametrize("m", [1, 2, 5])
def test_any_m(make_toy_split, m):
    split = make_toy_split(METAS, per_category=2)
    pool = NegativeSampler.from_dataset(split, m)
    for index in range(len(split)):
        negatives = pool.draw(index, random.Random(index))
        assert 0 < len(negatives) <= m
        assert sum(n.kind == "category" for n in negatives) >= min(m - m // 2, 1)
