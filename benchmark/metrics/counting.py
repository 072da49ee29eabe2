"""Counting the True entries of boolean score masks along rows or columns, fast on CPU.

Counting a boolean tile is as slow as the comparison that made it when torch widens every bool to an
integer. Reading eight bools at once as one int64 word adds eight counters in parallel (one per byte
lane); a lane holds at most 255, so at most this many words are summed before the lanes are split
apart. Little-endian only: byte k of a word is then column 8w + k.
"""

from __future__ import annotations

import sys

import torch

_LANE_LIMIT = 255
_PACKED_COUNTS = sys.byteorder == "little"


def count_true_per_row(mask: torch.Tensor) -> torch.Tensor:
    """`mask.sum(1)` for a contiguous 2-D bool tensor, eight entries per machine word."""
    rows, cols = mask.shape
    if not _PACKED_COUNTS or cols % 8 or not mask.is_contiguous() or mask.device.type != "cpu":
        return mask.sum(1, dtype=torch.int64)
    words = mask.view(torch.int64)
    counts = torch.zeros(rows, dtype=torch.int64, device=mask.device)
    for start in range(0, words.shape[1], _LANE_LIMIT):
        lanes = words[:, start : start + _LANE_LIMIT].sum(1)
        counts += lanes.view(torch.uint8).view(rows, 8).sum(1, dtype=torch.int64)
    return counts


def count_true_per_column(mask: torch.Tensor) -> torch.Tensor:
    """`mask.sum(0)` for a contiguous 2-D bool tensor, eight entries per machine word."""
    rows, cols = mask.shape
    if not _PACKED_COUNTS or cols % 8 or not mask.is_contiguous() or mask.device.type != "cpu":
        return mask.sum(0, dtype=torch.int64)
    words = mask.view(torch.int64)
    counts = torch.zeros(cols, dtype=torch.int64, device=mask.device)
    for start in range(0, rows, _LANE_LIMIT):
        lanes = words[start : start + _LANE_LIMIT].sum(0)
        counts += lanes.view(torch.uint8).to(torch.int64)
    return counts
