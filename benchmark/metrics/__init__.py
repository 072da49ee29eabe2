"""Retrieval metrics: exact, streaming recall@K over image and caption embeddings (torch or Triton)."""

from benchmark.metrics.recall import (
    DEFAULT_BLOCK_SIZE,
    RecallBackend,
    available_recall_backends,
    choose_backend,
    positive_rank_counts,
    positive_ranks,
    recall_from_ranks,
    register_recall_backend,
    retrieval_recall,
    supports_shards,
)
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
