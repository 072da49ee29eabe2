"""Retrieval metrics: exact, streaming recall@K over image and caption embeddings (torch or Triton)."""

from benchmark.metrics.recall import (
    DEFAULT_BLOCK_SIZE,
    RecallBackend,
    available_recall_backends,
    choose_backend,
    positive_ranks,
    recall_from_ranks,
    register_recall_backend,
    retrieval_recall,
)

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "RecallBackend",
    "available_recall_backends",
    "choose_backend",
    "positive_ranks",
    "recall_from_ranks",
    "register_recall_backend",
    "retrieval_recall",
]
