"""Leaderboard plots as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state):
R@1 per domain per run, recall against K (AVG over domains), hard-negative accuracy by kind.
Each returns None when the leaderboard has nothing to draw for it.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.leaderboard import AVG, DIRECTION_NAMES, Leaderboard, Row

DPI = 96


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _measured(board: Leaderboard) -> list[str]:
    return [c.key for c in board.columns if c.kind == "measured"]


def _bars(axes, groups: list[str], rows: list[Row], runs: list[str]) -> None:
    """Grouped bars: one group per row, one bar per run, error bars from the 95% interval where known."""
    width = 0.8 / max(len(runs), 1)
    positions = np.arange(len(groups))
    for index, run in enumerate(runs):
        cells = [row.cells[run] for row in rows]
        heights = [c.mean if c.mean is not None else np.nan for c in cells]
        # An interval holds its mean up to float rounding (the input is checked); a bar length cannot be negative.
        low = [max(0.0, c.mean - c.interval[0]) if c.interval and c.mean is not None else 0.0 for c in cells]
        high = [max(0.0, c.interval[1] - c.mean) if c.interval and c.mean is not None else 0.0 for c in cells]
        errors = [low, high] if any(c.interval for c in cells) else None
        axes.bar(positions + (index - (len(runs) - 1) / 2) * width, heights, width, label=run, yerr=errors, capsize=2)
    axes.set_xticks(positions, groups, rotation=30, ha="right")
    axes.set_ylim(0, 100)


def recall_at_1_by_domain(board: Leaderboard) -> bytes | None:
    runs = _measured(board)
    if not runs:
        return None
    figure = Figure(figsize=(max(6.0, 1.1 * (len(board.domains) + 1) * max(1, len(runs)) ** 0.5), 6.5))
    for index, (direction, name) in enumerate(DIRECTION_NAMES.items()):
        axes = figure.add_subplot(2, 1, index + 1)
        rows = [r for r in board.rows if r.section == direction and r.k == 1]
        _bars(axes, [r.domain for r in rows], rows, runs)
        axes.set_ylabel("R@1 (%)")
        axes.set_title(f"R@1, {name} (bars: 95% interval)")
    figure.axes[0].legend(fontsize="small", ncol=min(len(runs), 4))
    figure.tight_layout()
    return _png(figure)


def recall_against_k(board: Leaderboard) -> bytes | None:
    runs = _measured(board)
    figure = Figure(figsize=(8.0, 3.5))
    drawn = False
    for index, (direction, name) in enumerate(DIRECTION_NAMES.items()):
        axes = figure.add_subplot(1, 2, index + 1)
        rows = [r for r in board.rows if r.section == direction and r.domain == AVG]
        for run in runs:
            points = [(r.k, r.cells[run].mean) for r in rows if r.cells[run].mean is not None]
            if points:
                axes.plot([k for k, _ in points], [v for _, v in points], marker="o", label=run)
                drawn = True
        axes.set_xticks([r.k for r in rows])
        axes.set_xlabel("K")
        axes.set_ylabel(f"AVG R@K (%), {name}")
        axes.set_ylim(0, 100)
    if not drawn:
        return None
    figure.axes[0].legend(fontsize="small")
    figure.tight_layout()
    return _png(figure)


def hard_negatives_by_kind(board: Leaderboard) -> bytes | None:
    rows = [r for r in board.hard_negative_rows if r.domain == AVG]
    runs = [c.key for c in board.hard_negative_columns]
    if not rows or not any(r.cells[run].mean is not None for r in rows for run in runs):
        return None
    figure = Figure(figsize=(max(5.0, 1.5 * len(rows) * max(1, len(runs)) ** 0.5), 3.5))
    axes = figure.add_subplot(1, 1, 1)
    _bars(axes, [str(r.kind) for r in rows], rows, runs)
    axes.set_ylabel("accuracy (%), AVG over domains")
    axes.set_title("Hard-negative accuracy by kind")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return _png(figure)


PLOTS = {
    "R@1 per domain": recall_at_1_by_domain,
    "Recall against K": recall_against_k,
    "Hard-negative accuracy by kind": hard_negatives_by_kind,
}
