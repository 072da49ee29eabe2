"""Benchmark: train and score CLIP prompt learners on FDRD, write results files and leaderboards."""
