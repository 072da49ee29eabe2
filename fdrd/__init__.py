"""fdrd: build the FDRD fine-grained image-text retrieval dataset and benchmark CLIP prompt learners on it."""

__version__ = "0.1.0"
