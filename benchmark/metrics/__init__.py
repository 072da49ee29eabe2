"""Retrieval metrics: exact, streaming recall@K over image and caption embeddings (torch or Triton).

The recall names below are loaded from benchmark/metrics/recall.py on first use: that module imports
torch (about two seconds), which the torch-free modules here (bootstrap.py, behind `fdrd leaderboard`)
must not pay for.
"""

from __future__ import annotations

from typing import Any

from benchmark.metrics.shards import RowShard

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "RecallBackend",
    "RowShard",
    "available_recall_backends",
    "choose_backend",
    "positive_rank_counts",
    "positive_ranks",
    "recall_from_ranks",
    "register_recall_backend",
    "retrieval_recall",
    "supports_shards",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from benchmark.metrics import recall

        return getattr(recall, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
