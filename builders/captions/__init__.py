"""Captions, attribute spans and negatives for FDRD records (see stage.py for the build stage)."""
