"""Hard-negative accuracy by kind against a loop over images with planted ties, and through a method's
own text encoder on hand-made negatives."""

from __future__ import annotations

import pytest
import torch

from benchmark.evaluation import hard_negative_report
from benchmark.methods.base import get_method, resolve_config
from benchmark.metrics import hard_negatives
from benchmark.metrics.hard_negatives import flatten_negatives, hard_negative_accuracy

CPU = torch.device("cpu")


def loop_accuracy(images, positives, negatives, owners, kinds):
    """Per kind: among images with at least one negative of that kind, the percent whose positive scores
    strictly above every one of them (float64 dot products, one pair at a time)."""
    report = {}
    for kind in ("category", "attribute"):
        correct = counted = 0
        for i in range(images.shape[0]):
            own = [r for r in range(len(owners)) if owners[r] == i and kinds[r] == kind]
            if not own:
                continue
            counted += 1
            positive = float(images[i].double() @ positives[i].double())
            correct += all(positive > float(images[i].double() @ negatives[r].double()) for r in own)
        report[kind] = {"accuracy": 100.0 * correct / counted if counted else None, "images": counted}
    return report


def planted_case(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    count, width = 40, 12
    images = torch.randn(count, width, generator=generator)
    positives = torch.randn(count, width, generator=generator)
    negatives, owners, kinds = [], [], []
    for i in range(count):
        if i % 7 == 3:
            continue  # no negative at all: in no denominator
        for kind in ("category", "attribute"):
            if kind == "attribute" and i % 5 == 0:
                continue  # no attribute negative: out of that denominator only
            for _ in range(2):
                negatives.append(torch.randn(width, generator=generator))
                owners.append(i)
                kinds.append(kind)
    negatives.append(torch.randn(width, generator=generator))
    owners.append(1)
    kinds.append("paraphrase")  # a kind outside the schema: not reported, counts for nothing
    # Planted ties: a negative equal to the positive (scores tie whatever the rounding), and one that
    # differs only where the image is zero.
    images[2, 4] = 0.0
    negatives.append(positives[2].clone())
    owners.append(2)
    kinds.append("category")
    tied = positives[5].clone()
    images[5, 0] = 0.0
    tied[0] += 3.0
    negatives.append(tied)
    owners.append(5)
    kinds.append("attribute")
    # An easy image: its positive is its own direction and its negatives point away.
    images[6] = positives[6]
    for r, owner in enumerate(owners):
        if owner == 6:
            negatives[r] = -positives[6]
    return images, positives, torch.stack(negatives), owners, kinds


def test_matches_the_loop_with_planted_ties():
    images, positives, negatives, owners, kinds = planted_case()
    got = hard_negative_accuracy(images, positives, negatives, owners, kinds)
    expected = loop_accuracy(images, positives, negatives, owners, kinds)
    assert got == expected
    assert got["category"]["images"] == 40 - 6  # every image but the six with i % 7 == 3
    # Nor those with i % 5 == 0 (i = 10 is both), except image 5, whose only attribute negative is the planted tie.
    assert got["attribute"]["images"] == 40 - 6 - 7 + 1


def test_ties_count_against_the_positive():
    images, positives, _, _, _ = planted_case()
    alone = hard_negative_accuracy(images[:1], positives[:1], positives[:1].clone(), [0], ["category"])
    assert alone["category"] == {"accuracy": 0.0, "images": 1}
    assert alone["attribute"] == {"accuracy": None, "images": 0}
    beaten = hard_negative_accuracy(images[:1], positives[:1], -positives[:1], [0], ["attribute"])
    assert beaten["attribute"]["accuracy"] == (100.0 if float(images[0] @ positives[0]) > 0 else 0.0)


def test_chunking_does_not_change_the_answer(monkeypatch):
    images, positives, negatives, owners, kinds = planted_case(seed=3)
    whole = hard_negative_accuracy(images, positives, negatives, owners, kinds)
    monkeypatch.setattr(hard_negatives, "_CHUNK_ROWS", 7)
    assert hard_negative_accuracy(images, positives, negatives, owners, kinds) == whole


def test_no_negatives_at_all_gives_null_accuracy():
    images = torch.randn(3, 4)
    report = hard_negative_accuracy(images, images, torch.zeros(0, 4), [], [])
    assert report == {"category": {"accuracy": None, "images": 0}, "attribute": {"accuracy": None, "images": 0}}


def test_flatten_negatives_keeps_record_order_and_kinds():
    column = [
        [{"text": "a", "kind": "category", "category": "x"}],
        [],
        None,
        [{"text": "b", "kind": "attribute", "category": "y"}, {"text": "c", "kind": "category", "category": "z"}],
    ]
    assert flatten_negatives(column) == (["a", "b", "c"], [0, 3, 3], ["category", "attribute", "category"])


def test_bad_shapes_are_refused():
    images = torch.randn(2, 4)
    with pytest.raises(ValueError, match="do not match"):
        hard_negative_accuracy(images, torch.randn(3, 4), torch.randn(1, 4), [0], ["category"])
    with pytest.raises(ValueError, match="differ"):
        hard_negative_accuracy(images, images, torch.randn(2, 4), [0], ["category"])
    with pytest.raises(ValueError, match="outside"):
        hard_negative_accuracy(images, images, torch.randn(1, 4), [5], ["category"])


def test_negatives_go_through_the_methods_own_text_encoder(tiny_backbone):
    """A negative whose text is the caption itself encodes to the caption's embedding and is never beaten,
    whatever batch either falls in; the others are scored with the encoder that made the captions'."""
    coop_cls = get_method("coop")
    coop = coop_cls(tiny_backbone, resolve_config(coop_cls, {"n_ctx": 4}))
    captions = ["a red star on a dark background", "a small blue leaf", "a green striped shell"]
    column = [
        [{"text": captions[0], "kind": "category", "category": "x"}],
        [{"text": "a large yellow kite", "kind": "attribute", "category": "y"}],
        [{"text": "a green dotted shell", "kind": "attribute", "category": "z"}],
    ]
    with torch.inference_mode():
        tokens = coop.tokenize(captions + [row[0]["text"] for row in column])
        texts = coop.encode_texts(tokens["input_ids"], tokens["attention_mask"]).float()
    images = torch.nn.functional.normalize(torch.randn(3, texts.shape[1], generator=torch.Generator().manual_seed(1)), dim=-1)
    report = hard_negative_report(coop, captions, column, images, device=CPU, batch_size=2)
    expected = loop_accuracy(images, texts[:3], texts[3:], [0, 1, 2], ["category", "attribute", "attribute"])
    assert report["category"] == {"accuracy": 0.0, "images": 1}
    assert report["attribute"] == expected["attribute"]
