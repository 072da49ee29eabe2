"""Hard-negative accuracy by kind: does an image prefer its own caption to each of its own negatives?

FDRD gives every caption negatives of two kinds (fdrd.schema.NEGATIVE_KINDS): "category" (a sibling
category swapped in) and "attribute" (one attribute value changed). For a kind, an image counts as
correct when its positive caption outscores EVERY negative of that kind listed for it; a tie counts
against the positive (a negative identical to the caption is never beaten). Images with no negative
of a kind are left out of that kind's denominator, and a kind no image has gets accuracy None.

"Outscores" is decided on the margin image . (positive - negative) > 0, computed per negative: the
same sign as the difference of the two scores, but a negative equal to the positive (or differing only
where the image is zero) gives exactly 0 whatever the rounding of two separate dot products would do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fdrd.schema import NEGATIVE_KINDS

# Rows of (image, positive - negative) products computed at once: bounds the temporary to ~128 MiB at D=512.
_CHUNK_ROWS = 65536


def flatten_negatives(column: Sequence[Sequence[Mapping[str, Any]] | None]) -> tuple[list[str], list[int], list[str]]:
    """A split's `negatives` column -> (texts, owner record index of each, kind of each), in record order."""
    texts, owners, kinds = [], [], []
    for index, negatives in enumerate(column):
        for negative in negatives or []:
            texts.append(negative["text"])
            owners.append(index)
            kinds.append(negative["kind"])
    return texts, owners, kinds


def hard_negative_accuracy(
    image_emb: torch.Tensor,
    positive_emb: torch.Tensor,
    negative_emb: torch.Tensor,
    owners: Sequence[int] | torch.Tensor,
    kinds: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """{kind: {"accuracy": percent or None, "images": images with at least one negative of that kind}}.

    image_emb and positive_emb are (N, D), row i the image and caption of record i; negative_emb is
    (R, D), row r a negative of record owners[r] of kind kinds[r]. Kinds outside NEGATIVE_KINDS are
    not reported.
    """
    count = image_emb.shape[0]
    if positive_emb.shape != image_emb.shape:
        raise ValueError(f"positive embeddings {tuple(positive_emb.shape)} do not match images {tuple(image_emb.shape)}")
    owners = torch.as_tensor(owners, dtype=torch.long).reshape(-1)
    if negative_emb.shape[0] != owners.numel() or len(kinds) != owners.numel():
        raise ValueError(f"{negative_emb.shape[0]} negatives, {owners.numel()} owners and {len(kinds)} kinds differ")
    if owners.numel() and (int(owners.min()) < 0 or int(owners.max()) >= count):
        raise ValueError(f"a negative's owner lies outside 0..{count - 1}")
    beaten = torch.zeros(owners.numel(), dtype=torch.bool)
    for start in range(0, owners.numel(), _CHUNK_ROWS):
        rows = owners[start : start + _CHUNK_ROWS]
        difference = positive_emb[rows].float() - negative_emb[start : start + _CHUNK_ROWS].float()
        margin = (image_emb[rows].float() * difference).sum(-1)
        beaten[start : start + _CHUNK_ROWS] = ~(margin > 0)  # NaN margins count against the positive too
    report = {}
    for kind in NEGATIVE_KINDS:
        of_kind = torch.tensor([k == kind for k in kinds], dtype=torch.bool)
        has = torch.zeros(count, dtype=torch.bool)
        has[owners[of_kind]] = True
        lost = torch.zeros(count, dtype=torch.bool)
        lost[owners[of_kind & beaten]] = True
        images = int(has.sum())
        correct = int((has & ~lost).sum())
        report[kind] = {"accuracy": 100.0 * correct / images if images else None, "images": images}
    return report
